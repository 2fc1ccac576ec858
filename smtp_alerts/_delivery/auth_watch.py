"""The auth watcher: notices when a login stops working, and stops using it.

The most common way an alerting setup dies is silently: an app password
revoked, 2-Step Verification switched on, a token that lost its scope. Every
attempt then fails the same way, and retrying blindly makes it worse: Gmail
answers a storm of failed logins with ``454 4.7.0`` and locks the account.

:class:`AuthWatch` counts authentication failures per credential (a login,
``user@host``: the primary port and the alternate port share one) in a
sliding window. When ``threshold`` failures fall within ``window`` the
credential *trips*:

- it is not used again until a cool-down passes; then exactly one probe may
  try it (the engine probes with a bare login, no message at risk);
- a failed probe doubles the cool-down, up to :data:`AUTH_MAX_COOL_DOWN`;
- a successful login (probe or send) *recovers* it.

Tripping and recovering are reported as events (:class:`AuthTripped`,
:class:`AuthRecovered`) that the engine turns into a meta-alert and a
recovery notice. Like the windows and quotas, this is a plain class with an
injected clock: no I/O, no threads.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .._util.clock import Clock
from ..errors import AuthenticationError, DeliveryError
from .policy import BACK_OFF_PAUSE

__all__ = [
    "AUTH_COOL_DOWN",
    "AUTH_MAX_COOL_DOWN",
    "AuthEvent",
    "AuthRecovered",
    "AuthTripped",
    "AuthWatch",
    "CredentialState",
]

#: The first cool-down of a tripped credential, in seconds.
AUTH_COOL_DOWN = 600.0
#: The longest cool-down: a credential broken for days is still probed this often.
AUTH_MAX_COOL_DOWN = 6 * 3600.0

#: Steps that come after a successful login: a failure there proves the login worked.
_AFTER_LOGIN = frozenset({"mail", "rcpt", "data", "noop", "quit"})


@dataclass(frozen=True, slots=True)
class AuthTripped:
    """A credential reached the failure threshold and is no longer used.

    Attributes:
        credential: the login, ``user@host``.
        channel: the channel whose failure tripped it, e.g. ``smtp.gmail.com:587``.
        error: the last refusal (it carries no secret).
        failures: failures within the window.
        window: the window, in seconds.
        first_failure: when the first counted failure happened (epoch seconds).
        at: when it tripped.
        paused_until: when the first probe may try the credential again.
    """

    credential: str
    channel: str
    error: AuthenticationError
    failures: int
    window: float
    first_failure: float
    at: float
    paused_until: float


@dataclass(frozen=True, slots=True)
class AuthRecovered:
    """A tripped credential was accepted again.

    Attributes:
        credential: the login, ``user@host``.
        channel: the channel that logged in.
        tripped_at: when it had tripped (epoch seconds).
        at: when it was accepted again.
        failed_probes: probes refused in between.
    """

    credential: str
    channel: str
    tripped_at: float
    at: float
    failed_probes: int


AuthEvent = AuthTripped | AuthRecovered


@dataclass(slots=True)
class CredentialState:
    """What the watcher knows about one credential (for stats and the CLI).

    Attributes:
        failures: times of the failures still inside the window.
        tripped_at: when it tripped, or None while in use.
        paused_until: while tripped, when the next probe may go.
        cool_down: the current cool-down, in seconds.
        probing: a probe is under way.
        failed_probes: probes refused since it tripped.
        last_error: the last refusal.
    """

    failures: deque[float] = field(default_factory=deque)
    tripped_at: float | None = None
    paused_until: float | None = None
    cool_down: float = AUTH_COOL_DOWN
    probing: bool = False
    failed_probes: int = 0
    last_error: AuthenticationError | None = None


class AuthWatch:
    """Counts authentication failures per credential and trips at a threshold.

    Args:
        threshold: failures within ``window`` that trip a credential
            (``AUTH_FAILURE_THRESHOLD``).
        window: the sliding window, in seconds (``AUTH_FAILURE_WINDOW``).
        clock: the engine's clock.
        cool_down: the first cool-down of a tripped credential.
        max_cool_down: the longest cool-down.
    """

    def __init__(
        self,
        *,
        threshold: int,
        window: float,
        clock: Clock,
        cool_down: float = AUTH_COOL_DOWN,
        max_cool_down: float = AUTH_MAX_COOL_DOWN,
    ) -> None:
        if threshold < 1 or window <= 0 or not 0 < cool_down <= max_cool_down:
            raise ValueError("need threshold >= 1, window > 0 and 0 < cool_down <= max_cool_down")
        self.threshold = threshold
        self.window = window
        self._clock = clock
        self._base = cool_down
        self._max = max_cool_down
        self._states: dict[str, CredentialState] = {}
        self._events: list[AuthEvent] = []

    def __repr__(self) -> str:
        tripped = sorted(c for c, s in self._states.items() if s.tripped_at is not None)
        return f"AuthWatch(threshold={self.threshold}, window={self.window:g}, tripped={tripped})"

    # -- asked before an attempt ------------------------------------------------------

    def allow(self, credential: str) -> bool:
        """Whether ``credential`` may be tried now; a tripped one lets one probe through.

        A caller that was allowed must report the outcome with :meth:`settled`
        (or :meth:`release` when it did not try after all).
        """
        state = self._states.get(credential)
        if state is None or state.tripped_at is None:
            return True
        if state.probing or self._clock() < (state.paused_until or 0.0):
            return False
        state.probing = True  # this caller is the probe; others wait for its result
        return True

    def release(self, credential: str) -> None:
        """An allowed probe did not happen after all: let the next caller probe."""
        state = self._states.get(credential)
        if state is not None:
            state.probing = False

    def paused_until(self, credential: str) -> float | None:
        """While ``credential`` is tripped, when it may be probed; else None."""
        state = self._states.get(credential)
        return state.paused_until if state is not None and state.tripped_at is not None else None

    def is_tripped(self, credential: str) -> bool:
        """Whether ``credential`` is tripped (not used until a probe succeeds)."""
        state = self._states.get(credential)
        return state is not None and state.tripped_at is not None

    def due_probes(self) -> list[str]:
        """Tripped credentials whose cool-down has passed and that no probe is trying."""
        now = self._clock()
        return [
            credential
            for credential, state in self._states.items()
            if state.tripped_at is not None
            and not state.probing
            and now >= (state.paused_until or 0.0)
        ]

    def next_probe_at(self) -> float | None:
        """When the earliest tripped credential may be probed, or None."""
        times = [
            state.paused_until
            for state in self._states.values()
            if state.tripped_at is not None and not state.probing and state.paused_until
        ]
        return min(times, default=None)

    # -- told after an attempt ----------------------------------------------------------

    def settled(self, credential: str, channel: str, error: DeliveryError | None) -> None:
        """The outcome of one attempt through a channel that uses ``credential``.

        Args:
            credential: the login, ``user@host``.
            channel: the channel's name.
            error: None when it succeeded; an authentication failure counts; a
                failure after the login (MAIL, RCPT, DATA) proves the login
                worked; any other failure (network, TLS) says nothing about it.
        """
        if error is None or error.step in _AFTER_LOGIN:
            self._accepted(credential, channel)
        elif isinstance(error, AuthenticationError):
            self._refused(credential, channel, error)
        else:
            self.release(credential)

    def pop_events(self) -> list[AuthEvent]:
        """The events since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def states(self) -> dict[str, CredentialState]:
        """Every credential seen, with its state (a live view: do not modify)."""
        return dict(self._states)

    # -- internals ----------------------------------------------------------------------

    def _accepted(self, credential: str, channel: str) -> None:
        state = self._states.pop(credential, None)
        if state is not None and state.tripped_at is not None:
            self._events.append(
                AuthRecovered(
                    credential=credential,
                    channel=channel,
                    tripped_at=state.tripped_at,
                    at=self._clock(),
                    failed_probes=state.failed_probes,
                )
            )

    def _refused(self, credential: str, channel: str, error: AuthenticationError) -> None:
        now = self._clock()
        state = self._states.setdefault(credential, CredentialState(cool_down=self._base))
        state.last_error = error
        # Gmail's "too many login attempts" asks for a longer rest than ours.
        floor = BACK_OFF_PAUSE if error.code == 454 else 0.0
        if state.tripped_at is not None:  # a failed probe: rest twice as long
            state.probing = False
            state.failed_probes += 1
            state.cool_down = min(self._max, state.cool_down * 2)
            state.paused_until = now + max(state.cool_down, floor)
            return
        failures = state.failures
        failures.append(now)
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) < self.threshold:
            return
        state.tripped_at = now
        state.cool_down = self._base
        state.paused_until = now + max(state.cool_down, floor)
        self._events.append(
            AuthTripped(
                credential=credential,
                channel=channel,
                error=error,
                failures=len(failures),
                window=self.window,
                first_failure=failures[0],
                at=now,
                paused_until=state.paused_until,
            )
        )
