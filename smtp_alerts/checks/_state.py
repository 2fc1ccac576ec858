"""The per-check state machine: results in, notification events out, no I/O.

A :class:`CheckMachine` takes one check's results (``ok`` or not, with a
detail) and the passing of time (:meth:`CheckMachine.tick`), and says what a
person should be told, as :class:`CheckEvent` values. Sending them is the
monitor's job (:mod:`smtp_alerts.checks._monitor`); the time comes from an
injected clock, so the whole life of a check is tested with plain calls.

States (as in Uptime Kuma and Nagios)::

    UNKNOWN ──ok──▶ UP ──fail──▶ PENDING ──fail x retries──▶ DOWN
       │             ▲             │                          │
       └──fail──▶ PENDING          └──ok──▶ UP    ok x recovery┘──▶ UP

- ``retries`` failures in a row are tolerated: the next one makes the check
  DOWN (``retries=2``: DOWN on the third failure). Until then it is PENDING.
- A DOWN check needs ``recovery`` successes in a row to be UP again, so one
  lucky probe during an outage does not end it. A PENDING check (never
  confirmed down) is UP again on its first success.
- Events: ``DOWN`` when it goes down; a ``REMINDER`` every
  ``resend_interval`` while it stays down, at most ``max_reminders``; then
  ``RECOVERED`` with the downtime (from the first failure to the first success).
- Flapping: a *flip* is a change between health (UP) and trouble (PENDING or
  DOWN). ``flap_threshold`` flips within ``flap_window`` give one
  ``FLAPPING`` event; from then on the check is quiet (no DOWN, reminder or
  RECOVERED) until it has not flipped for a whole ``flap_window``, which gives
  one ``STABLE`` event with its state then. A check stable while DOWN counts
  as announced: its reminders and RECOVERED follow as usual.

The machine's state is a handful of numbers (:meth:`CheckMachine.to_dict`),
so it survives a restart through a small JSON file.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, fields
from typing import Any

from .._util.clock import SYSTEM_CLOCK, Clock

__all__ = [
    "DEFAULT_FLAP_THRESHOLD",
    "DEFAULT_FLAP_WINDOW",
    "DEFAULT_MAX_REMINDERS",
    "DEFAULT_RECOVERY",
    "DEFAULT_RESEND_INTERVAL",
    "DEFAULT_RETRIES",
    "CheckEvent",
    "CheckMachine",
    "CheckPolicy",
    "CheckState",
    "CheckStatus",
    "EventKind",
    "require_name",
]

DEFAULT_RETRIES = 2
"""Failures in a row tolerated before DOWN: a check is DOWN on its third failure."""

DEFAULT_RECOVERY = 2
"""Successes in a row a DOWN check needs to be UP again."""

DEFAULT_RESEND_INTERVAL = 3600.0
"""Seconds between reminders while a check stays DOWN (one hour)."""

DEFAULT_MAX_REMINDERS = 3
"""Most reminders per outage; after them, only RECOVERED."""

DEFAULT_FLAP_THRESHOLD = 6
"""Flips within the window that make a check flapping (three blips or outages)."""

DEFAULT_FLAP_WINDOW = 1800.0
"""The window flips are counted in, and how long a flapping check must be calm (30 minutes)."""

_STATE_VERSION = 1


class CheckState(str, enum.Enum):
    """Where a check stands."""

    UNKNOWN = "UNKNOWN"
    """No result yet."""
    UP = "UP"
    """Healthy."""
    PENDING = "PENDING"
    """Failing, but fewer than ``retries + 1`` times in a row: not yet DOWN."""
    DOWN = "DOWN"
    """Failing, confirmed."""

    def __str__(self) -> str:
        return self.value


class EventKind(str, enum.Enum):
    """What a :class:`CheckEvent` tells."""

    DOWN = "down"
    REMINDER = "reminder"
    RECOVERED = "recovered"
    FLAPPING = "flapping"
    STABLE = "stable"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class CheckPolicy:
    """How a check's results turn into notifications.

    Attributes:
        retries: failures in a row tolerated before DOWN (DOWN on failure
            ``retries + 1``); 0 makes the first failure DOWN.
        recovery: successes in a row a DOWN check needs to be UP (at least 1).
        resend_interval: seconds between reminders while DOWN; 0 sends none.
        max_reminders: most reminders per outage.
        flap_threshold: flips within ``flap_window`` that make the check
            flapping; 0 turns flap detection off (else at least 2).
        flap_window: seconds flips are counted over, and how long a flapping
            check must not flip to be stable again.

    Raises:
        ValueError: a value out of range (the message names the field).
    """

    retries: int = DEFAULT_RETRIES
    recovery: int = DEFAULT_RECOVERY
    resend_interval: float = DEFAULT_RESEND_INTERVAL
    max_reminders: int = DEFAULT_MAX_REMINDERS
    flap_threshold: int = DEFAULT_FLAP_THRESHOLD
    flap_window: float = DEFAULT_FLAP_WINDOW

    def __post_init__(self) -> None:
        # Typed `object`: callers without a type checker pass strings too.
        limits: tuple[tuple[str, object, int], ...] = (
            ("retries", self.retries, 0),
            ("recovery", self.recovery, 1),
            ("resend_interval", self.resend_interval, 0),
            ("max_reminders", self.max_reminders, 0),
            ("flap_threshold", self.flap_threshold, 0),
        )
        for name, value, least in limits:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < least:
                raise ValueError(f"CheckPolicy.{name} must be a number >= {least}, got {value!r}")
        if self.flap_threshold == 1:
            raise ValueError("CheckPolicy.flap_threshold must be 0 (off) or at least 2, got 1")
        if not self.flap_window > 0:
            raise ValueError(
                f"CheckPolicy.flap_window must be > 0 seconds, got {self.flap_window!r}"
            )

    def __repr__(self) -> str:
        # Only what differs from the defaults: CheckPolicy(retries=5) says it all.
        changed = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) != f.default
        ]
        return f"CheckPolicy({', '.join(changed)})"


@dataclass(frozen=True, slots=True)
class CheckEvent:
    """Something to tell a person about a check.

    Attributes:
        kind: DOWN, REMINDER, RECOVERED, FLAPPING or STABLE.
        name: the check's name.
        state: the check's state after the event.
        at: when it happened, epoch seconds.
        detail: the latest failure's detail (DOWN, REMINDER, a DOWN check's
            STABLE), else the latest result's.
        outage: the outage's number for this check (1, 2...); for FLAPPING and
            STABLE the flapping episode's number.
        since: when the outage began (its first failure), if the check is or was down.
        downtime: RECOVERED only: seconds from the first failure to the first success.
        reminder: REMINDER only: its number, from 1.
        flips: FLAPPING only: flips within the window.
    """

    kind: EventKind
    name: str
    state: CheckState
    at: float
    detail: str = ""
    outage: int = 0
    since: float | None = None
    downtime: float | None = None
    reminder: int = 0
    flips: int = 0


@dataclass(frozen=True, slots=True)
class CheckStatus:
    """A snapshot of one check, for display.

    Attributes:
        name: the check's name.
        state: its state.
        changed_at: when the state last changed, epoch seconds (None: never).
        failures: failures in a row so far.
        successes: successes in a row so far (capped at ``recovery``).
        down_since: when the current outage began, if DOWN.
        flapping: whether alerts are paused because it flaps.
        reminders: reminders sent in the current outage.
        detail: the latest result's detail.
    """

    name: str
    state: CheckState
    changed_at: float | None
    failures: int
    successes: int
    down_since: float | None
    flapping: bool
    reminders: int
    detail: str


class CheckMachine:
    """One check's state, driven by its results and the clock.

    Not thread-safe: the monitor serialises the calls.

    Args:
        name: the check's name (copied into the events).
        policy: retries, recovery, reminders and flapping.
        clock: returns the current time in epoch seconds.
    """

    def __init__(
        self, name: str, policy: CheckPolicy | None = None, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.name = name
        self.policy = policy if policy is not None else CheckPolicy()
        self._clock = clock
        self.state = CheckState.UNKNOWN
        self.changed_at: float | None = None
        self.fail_streak = 0
        self.ok_streak = 0
        self.failing_since: float | None = None  # first failure of the current streak
        self.ok_since: float | None = None  # first success of the current streak
        self.down_since: float | None = None  # the current outage's first failure
        self.outage = 0  # outages so far; numbers the events of each
        self.announced = False  # a DOWN (or a DOWN check's STABLE) was told for this outage
        self.reminders = 0
        self.last_notice: float | None = None  # the outage's latest DOWN, STABLE or REMINDER
        self.flips: deque[float] = deque()
        self.flapping = False
        self.flap_episode = 0
        self.detail = ""  # the latest result's
        self.failure_detail = ""  # the latest failure's

    def __repr__(self) -> str:
        flapping = ", flapping" if self.flapping else ""
        return f"<CheckMachine {self.name!r} {self.state}{flapping}>"

    # -- input ------------------------------------------------------------------

    def record(self, ok: bool, detail: str = "", *, at: float | None = None) -> list[CheckEvent]:  # noqa: FBT001 - a result is a bool, as in report(name, ok)
        """Take one result.

        Args:
            ok: whether the check passed.
            detail: what it saw, in a line (status, latency, error).
            at: when the result was taken; the clock's time when omitted.

        Returns:
            The events to tell, oldest first (often none).
        """
        now = self._clock() if at is None else at
        self.detail = detail
        before = self.state
        if ok:
            self.fail_streak = 0
            self.failing_since = None
            if self.ok_streak == 0:
                self.ok_since = now
            self.ok_streak = min(self.ok_streak + 1, self.policy.recovery)
            after = before
            if before in (CheckState.UNKNOWN, CheckState.PENDING) or (
                before is CheckState.DOWN and self.ok_streak >= self.policy.recovery
            ):
                after = CheckState.UP
        else:
            self.failure_detail = detail
            self.ok_streak = 0
            self.ok_since = None
            if self.fail_streak == 0:
                self.failing_since = now
            self.fail_streak = min(self.fail_streak + 1, self.policy.retries + 1)
            after = before
            if before is not CheckState.DOWN:
                down = self.fail_streak > self.policy.retries
                after = CheckState.DOWN if down else CheckState.PENDING
        events: list[CheckEvent] = []
        if after is not before:
            events += self._change(before, after, now)
        events += self.tick(at=now)
        return events

    def tick(self, *, at: float | None = None) -> list[CheckEvent]:
        """Let time pass: a due reminder, or the end of a flapping episode.

        Args:
            at: the time now; the clock's when omitted.

        Returns:
            The events to tell (often none).
        """
        now = self._clock() if at is None else at
        events: list[CheckEvent] = []
        if self.flapping and self._calm_at() <= now:
            events.append(self._stable(now))
        reminder_at = self._reminder_at()
        if reminder_at is not None and now >= reminder_at:
            self.reminders += 1
            self.last_notice = now
            events.append(
                self._event(
                    EventKind.REMINDER, now, detail=self.failure_detail, reminder=self.reminders
                )
            )
        return events

    def next_due(self) -> float | None:
        """When :meth:`tick` may next have something to say, or None."""
        candidates = [self._reminder_at(), self._calm_at() if self.flapping else None]
        due = [at for at in candidates if at is not None]
        return min(due) if due else None

    def status(self) -> CheckStatus:
        """A snapshot of the check for display."""
        return CheckStatus(
            name=self.name,
            state=self.state,
            changed_at=self.changed_at,
            failures=self.fail_streak,
            successes=self.ok_streak,
            down_since=self.down_since,
            flapping=self.flapping,
            reminders=self.reminders,
            detail=self.detail,
        )

    # -- persistence --------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The state as JSON-ready values.

        Neither the policy nor the latest detail is part of it: a check that
        stays UP then writes nothing, whatever its latency.
        """
        return {
            "version": _STATE_VERSION,
            "state": self.state.value,
            "changed_at": self.changed_at,
            "fail_streak": self.fail_streak,
            "ok_streak": self.ok_streak,
            "failing_since": self.failing_since,
            "ok_since": self.ok_since,
            "down_since": self.down_since,
            "outage": self.outage,
            "announced": self.announced,
            "reminders": self.reminders,
            "last_notice": self.last_notice,
            "flips": list(self.flips),
            "flapping": self.flapping,
            "flap_episode": self.flap_episode,
            "failure_detail": self.failure_detail,
        }

    @classmethod
    def from_dict(
        cls,
        name: str,
        data: object,
        policy: CheckPolicy | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> CheckMachine:
        """Rebuild a machine from :meth:`to_dict`'s values.

        Args:
            name: the check's name.
            data: what :meth:`to_dict` returned (read back from JSON).
            policy: the policy to continue with.
            clock: the clock.

        Returns:
            The machine, as it was.

        Raises:
            ValueError: the data is not a state this version wrote.
        """
        if not isinstance(data, dict) or data.get("version") != _STATE_VERSION:
            raise ValueError(f"check {name!r}: not a state this version of smtp-alerts wrote")
        machine = cls(name, policy, clock=clock)
        try:
            machine.state = CheckState(data["state"])
            machine.changed_at = _time(data["changed_at"])
            machine.fail_streak = _count(data["fail_streak"])
            machine.ok_streak = _count(data["ok_streak"])
            machine.failing_since = _time(data["failing_since"])
            machine.ok_since = _time(data["ok_since"])
            machine.down_since = _time(data["down_since"])
            machine.outage = _count(data["outage"])
            machine.announced = bool(data["announced"])
            machine.reminders = _count(data["reminders"])
            machine.last_notice = _time(data["last_notice"])
            machine.flips = deque(float(flip) for flip in data["flips"])
            machine.flapping = bool(data["flapping"])
            machine.flap_episode = _count(data["flap_episode"])
            machine.failure_detail = str(data["failure_detail"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"check {name!r}: malformed state ({exc!r})") from exc
        return machine

    # -- internals ----------------------------------------------------------------

    def _change(self, before: CheckState, after: CheckState, now: float) -> list[CheckEvent]:
        self.state = after
        self.changed_at = now
        if after is CheckState.DOWN:
            self.outage += 1
            self.down_since = self.failing_since if self.failing_since is not None else now
            self.reminders = 0
        flipped = before is not CheckState.UNKNOWN and (
            (before is CheckState.UP) != (after is CheckState.UP)
        )
        events: list[CheckEvent] = []
        if flipped and self._flip(now):
            events.append(self._flapping_event(now))
        if after is CheckState.DOWN:
            if self.flapping:
                self.announced = False
            else:
                self.announced = True
                self.last_notice = now
                events.append(self._event(EventKind.DOWN, now, detail=self.failure_detail))
        elif after is CheckState.UP and before is CheckState.DOWN:
            since = self.down_since if self.down_since is not None else now
            back = self.ok_since if self.ok_since is not None else now
            if self.announced and not self.flapping:
                events.append(
                    self._event(EventKind.RECOVERED, now, downtime=max(0.0, back - since))
                )
            self.announced = False
            self.down_since = None
            self.last_notice = None
        return events

    def _flip(self, now: float) -> bool:
        """Count a flip; whether it starts a flapping episode."""
        threshold, window = self.policy.flap_threshold, self.policy.flap_window
        flips = self.flips
        flips.append(now)
        while flips and flips[0] <= now - window:
            flips.popleft()
        # Bounded: only the latest `threshold` flips can matter.
        while len(flips) > max(threshold, 1):
            flips.popleft()
        if threshold and not self.flapping and len(flips) >= threshold:
            self.flapping = True
            self.flap_episode += 1
            return True
        return False

    def _calm_at(self) -> float:
        """When a flapping check counts as stable, if it does not flip before."""
        last = self.flips[-1] if self.flips else self.changed_at or 0.0
        return last + self.policy.flap_window

    def _stable(self, now: float) -> CheckEvent:
        self.flapping = False
        self.flips.clear()
        if self.state is CheckState.DOWN:
            # The STABLE note says it is down: reminders and RECOVERED follow from it.
            self.announced = True
            self.last_notice = now
            self.reminders = 0
        else:
            self.announced = False
        detail = self.failure_detail if self.state is CheckState.DOWN else self.detail
        return self._event(EventKind.STABLE, now, detail=detail, outage=self.flap_episode)

    def _flapping_event(self, now: float) -> CheckEvent:
        return self._event(
            EventKind.FLAPPING,
            now,
            detail=self.detail,
            outage=self.flap_episode,
            flips=len(self.flips),
        )

    def _reminder_at(self) -> float | None:
        policy = self.policy
        if (
            self.state is not CheckState.DOWN
            or self.flapping
            or not self.announced
            or self.last_notice is None
            or policy.resend_interval <= 0
            or self.reminders >= policy.max_reminders
            or self.ok_streak > 0  # recovering: it will be UP, or fail and remind then
        ):
            return None
        return self.last_notice + policy.resend_interval

    def _event(
        self,
        kind: EventKind,
        now: float,
        *,
        detail: str | None = None,
        outage: int | None = None,
        downtime: float | None = None,
        reminder: int = 0,
        flips: int = 0,
    ) -> CheckEvent:
        return CheckEvent(
            kind=kind,
            name=self.name,
            state=self.state,
            at=now,
            detail=self.detail if detail is None else detail,
            outage=self.outage if outage is None else outage,
            since=self.down_since,
            downtime=downtime,
            reminder=reminder,
            flips=flips,
        )


def require_name(name: object) -> str:
    """``name`` if it is a usable check name.

    Raises:
        ValueError: not a string, or only spaces.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a check needs a non-empty name, got {name!r}")
    return name


def _time(value: Any) -> float | None:
    return None if value is None else float(value)


def _count(value: Any) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"a count cannot be negative: {number}")
    return number
