"""Time as the engine sees it: one injectable callable returning epoch seconds.

Windows, quotas and state machines take a ``Clock`` instead of calling
:func:`time.time` so tests move time forward by hand instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""A callable returning the current time as seconds since the epoch."""

SYSTEM_CLOCK: Clock = time.time


class ManualClock:
    """A clock that moves only when told to; for tests.

    Args:
        start: the initial time, in seconds since the epoch.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += seconds

    def __repr__(self) -> str:
        return f"ManualClock(now={self.now!r})"
