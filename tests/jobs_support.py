"""The engine of the job and heartbeat tests: in-memory channel, manual clock, temp spool."""

from __future__ import annotations

import time
from pathlib import Path

from smtp_alerts import Engine, Settings
from smtp_alerts._util.clock import SYSTEM_CLOCK, Clock, ManualClock
from smtp_alerts.models import Problem
from smtp_alerts.transports import MemoryTransport


class Harness:
    """An engine on an in-memory channel and a manual clock, its spool in ``spool_dir``."""

    def __init__(
        self, spool_dir: Path, *, clock: ManualClock | None = None, real_time: bool = False
    ) -> None:
        self.clock = clock if clock is not None else ManualClock()
        engine_clock: Clock = SYSTEM_CLOCK if real_time else self.clock
        self.transport = MemoryTransport()
        self.spool_dir = spool_dir
        self.engine = Engine(
            Settings(
                to=["oncall@example.com"],
                from_="alerts@example.com",
                group_wait="0s",
                group_interval="0s",
                spool_dir=spool_dir,
                shutdown_timeout="5s",
            ),
            transport=self.transport,
            clock=engine_clock,
        )

    def problems(self) -> list[Problem]:
        """Every problem row sent so far, after a flush."""
        assert self.engine.flush(timeout=10)
        return [
            problem
            for message in self.transport.sent
            if message.digest is not None
            for problem in message.digest.problems
        ]

    def messages(self) -> list[str]:
        """The sample message of every problem sent so far, in the order they happened."""
        problems = sorted(self.problems(), key=lambda problem: problem.alert.created)
        return [problem.alert.message for problem in problems]

    def wait_for_sent(self, timeout: float = 10.0) -> None:
        """Block until the channel took something (the engine loop works on its own)."""
        deadline = time.monotonic() + timeout
        while not self.transport.sent:
            assert time.monotonic() < deadline, "nothing was sent"
            time.sleep(0.01)
