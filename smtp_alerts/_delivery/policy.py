"""What happens after a delivery failure: the classification table and circuit breakers.

One table, from what the server or the network did to what the delivery chain
does next (the README's "When delivery fails" shows the same table):

========================================  ==========  ========================================
what happened                             action      what follows
========================================  ==========  ========================================
timeout; refused or dropped connection;   RETRY       retry this channel with exponential
any other 4xx reply                                   backoff and jitter inside the attempt's
                                                      deadline, then the next channel
421 4.7.0 or 454 4.7.0 (slow down), at    BACK_OFF    Gmail's "too many connections, retry
greeting or login                                     after a short delay": retried like RETRY
                                                      inside the deadline; only when it
                                                      persists does the channel rest
                                                      ``BACK_OFF_PAUSE``, then the next channel
530 / 534 / 535, XOAUTH2 refused          AUTH        no blind retry (Gmail locks accounts
                                                      that storm): the next channel now; the
                                                      auth watcher rests the login after
                                                      repeated refusals (without a watcher,
                                                      the channel rests ``AUTH_PAUSE``)
550 5.4.5 (daily sending quota)           PARK        the channel is parked ``QUOTA_PARK``
                                                      (Gmail's rolling day); next channel
552 5.3.4 (message too big)               SHRINK      re-render smaller once, retry this
                                                      channel; a second 552 is NEXT
other 5xx; certificate or TLS failure;    NEXT        permanent for this channel: the next
no STARTTLS; every recipient refused                  channel now
========================================  ==========  ========================================

Whatever no channel takes stays in the spool and is retried later.

A :class:`CircuitBreaker` per channel keeps a failing channel from being
tried for every message: it opens after ``failure_threshold`` failures in a
row (or at once for a pause), lets one probe through after its cool-down
(half-open), and closes again on success; each failed probe doubles the
cool-down up to a cap.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .._util.clock import Clock
from .._util.smtp_reply import enhanced_status
from ..errors import AuthenticationError, DeliveryError, MessageTooLargeError, QuotaExceededError

__all__ = [
    "AUTH_PAUSE",
    "BACK_OFF_PAUSE",
    "QUOTA_PARK",
    "Action",
    "BreakerState",
    "CircuitBreaker",
    "Decision",
    "classify",
    "enhanced_code",
]

#: How long a channel rests when the server kept asking us to slow down (421/454).
BACK_OFF_PAUSE = 300.0
#: How long a channel rests after its credentials were refused.
AUTH_PAUSE = 900.0
#: How long a channel out of daily quota (550 5.4.5) is parked.
QUOTA_PARK = 86_400.0


class Action(enum.Enum):
    """What the delivery chain does after a failure."""

    RETRY = "retry"
    BACK_OFF = "back off"
    AUTH = "authentication"
    PARK = "park"
    SHRINK = "shrink"
    NEXT = "next channel"


@dataclass(frozen=True, slots=True)
class Decision:
    """The action for one failure, and how long the channel must rest, if at all."""

    action: Action
    pause: float | None = None


def classify(error: DeliveryError) -> Decision:
    """The row of the classification table that ``error`` falls into.

    Args:
        error: a failure from any transport.

    Returns:
        The :class:`Decision`.
    """
    code = error.code
    if isinstance(error, QuotaExceededError):
        return Decision(Action.PARK, QUOTA_PARK)
    if isinstance(error, MessageTooLargeError):
        return Decision(Action.SHRINK)
    if code in (421, 454) and enhanced_code(error) in ("", "4.7.0"):
        # Gmail's "try again later" / "too many login attempts" (a bare code
        # from another server means the same); other 421s are plain transient.
        return Decision(Action.BACK_OFF, BACK_OFF_PAUSE)
    if isinstance(error, AuthenticationError):
        return Decision(Action.AUTH, AUTH_PAUSE)
    if error.transient:
        return Decision(Action.RETRY)
    return Decision(Action.NEXT)


def enhanced_code(error: DeliveryError) -> str:
    """The enhanced status code of a reply (``5.7.8``), or ``""`` when it has none."""
    return enhanced_status(f"{error.reply} {error.message}")


@dataclass(frozen=True, slots=True)
class BreakerState:
    """A circuit breaker's state, for stats.

    Attributes:
        state: ``closed``, ``open`` or ``half-open``.
        failures: failures in a row.
        open_until: when an open breaker lets a probe through (epoch seconds).
    """

    state: str
    failures: int
    open_until: float | None


class CircuitBreaker:
    """Per-channel breaker: closed, open after repeated failures, half-open for one probe.

    Args:
        clock: the engine's clock.
        failure_threshold: failures in a row that open it.
        cool_down: the first open period, in seconds.
        max_cool_down: the longest open period; each failed probe doubles it up to this.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        failure_threshold: int = 3,
        cool_down: float = 60.0,
        max_cool_down: float = 3600.0,
    ) -> None:
        if failure_threshold < 1 or cool_down <= 0 or max_cool_down < cool_down:
            raise ValueError("need failure_threshold >= 1 and 0 < cool_down <= max_cool_down")
        self._clock = clock
        self._threshold = failure_threshold
        self._base = cool_down
        self._max = max_cool_down
        self._cool_down = cool_down
        self._failures = 0
        self._open_until: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        if self._open_until is None:
            return "closed"
        if self._probing or self._clock() >= self._open_until:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        """Whether the channel may be tried now (an open breaker lets one probe through)."""
        if self._open_until is None:
            return True
        if self._probing or self._clock() < self._open_until:
            return False
        self._probing = True  # this caller is the probe; others wait for its result
        return True

    def success(self) -> None:
        """The channel took a message: close."""
        self._failures = 0
        self._open_until = None
        self._probing = False
        self._cool_down = self._base

    def failure(self, *, pause: float | None = None) -> None:
        """The channel failed; ``pause`` opens the breaker at once for that long."""
        self._failures += 1
        now = self._clock()
        if pause is not None:
            self._open(now, max(pause, self._cool_down if self._probing else 0.0))
        elif self._probing:
            self._cool_down = min(self._max, self._cool_down * 2)
            self._open(now, self._cool_down)
        elif self._failures >= self._threshold:
            self._open(now, self._cool_down)

    def snapshot(self) -> BreakerState:
        """The state, for stats."""
        return BreakerState(self.state, self._failures, self._open_until)

    def _open(self, now: float, seconds: float) -> None:
        self._open_until = now + seconds
        self._probing = False

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state!r}, failures={self._failures})"
