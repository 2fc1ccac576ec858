"""Run checks on the engine's loop, each at its interval, and feed the monitor.

A :class:`CheckRunner` starts one task per check on the engine's loop (all
of them concurrent, none blocking the loop), runs each check every
``interval`` seconds give or take the jitter, and reports every result to a
:class:`~smtp_alerts.checks.CheckMonitor`, whose ticker it starts so that
reminders go out between results too::

    runner = CheckRunner(engine, [HttpCheck(name="website", url="https://example.com")])
    runner.start()
    ...
    runner.stop()

:meth:`CheckRunner.run_once` runs every check once and returns the outcomes:
for ``smtp-alerts watch --once`` (run from cron, the state file carries the
retries from one run to the next) and for tests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._check import Check, CheckResult
from ._monitor import CheckMonitor, monitor_for
from ._state import CheckStatus

if TYPE_CHECKING:
    from .._engine.sink import AlertSink

__all__ = ["DEFAULT_JITTER", "CheckOutcome", "CheckRunner"]

log = logging.getLogger("smtp_alerts.checks")

DEFAULT_JITTER = 0.1
"""Each wait between runs is the interval plus or minus this fraction of it, at random;
the first run waits up to this fraction, so checks started together spread out."""


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """One run of one check, and where it left the check.

    Attributes:
        check: the check.
        result: what the run found.
        status: the check's status after the result.
    """

    check: Check
    result: CheckResult
    status: CheckStatus


class CheckRunner:
    """Runs checks concurrently on the engine's loop and reports their results.

    Args:
        engine: the engine whose loop runs the checks and which sends the alerts.
        checks: the checks; their names must be unique.
        monitor: where results go; the engine's own monitor (shared with
            ``engine.report``) when omitted.
        jitter: the fraction of the interval each wait varies by (0 to 0.5).
        on_result: called on the loop with each outcome; its exceptions are logged.

    Raises:
        ValueError: two checks share a name, or the jitter is out of range.
    """

    def __init__(
        self,
        engine: AlertSink,
        checks: Iterable[Check],
        *,
        monitor: CheckMonitor | None = None,
        jitter: float = DEFAULT_JITTER,
        on_result: Callable[[CheckOutcome], None] | None = None,
    ) -> None:
        self._engine = engine
        self._checks = tuple(checks)
        names = [check.name for check in self._checks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"check names must be unique; repeated: {', '.join(duplicates)}")
        if not 0 <= jitter <= 0.5:
            raise ValueError(f"jitter must be from 0 to 0.5, got {jitter!r}")
        self._monitor = monitor if monitor is not None else monitor_for(engine)
        self._jitter = jitter
        self._on_result = on_result
        self._random = random.Random()  # noqa: S311 - spreading runs out, not secrecy
        self._future: concurrent.futures.Future[None] | None = None
        self._stopped = threading.Event()
        self._stopped.set()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<CheckRunner {len(self._checks)} checks {state}>"

    @property
    def engine(self) -> AlertSink:
        """The engine whose loop runs the checks."""
        return self._engine

    @property
    def checks(self) -> tuple[Check, ...]:
        """The checks this runner runs."""
        return self._checks

    @property
    def monitor(self) -> CheckMonitor:
        """The monitor the results go to."""
        return self._monitor

    @property
    def running(self) -> bool:
        """Whether the checks are running (between :meth:`start` and :meth:`stop`)."""
        return self._future is not None and not self._stopped.is_set()

    def start(self) -> None:
        """Start running every check at its interval; returns at once.

        Raises:
            RuntimeError: the engine is closed, or the runner already runs.
        """
        if self.running:
            raise RuntimeError("the check runner is already running")
        self._stopped.clear()
        try:
            self._future = self._engine.run_coroutine(self._run_forever())
            self._monitor.start()
        except RuntimeError:
            self._stopped.set()
            raise

    def stop(self, timeout: float | None = 5.0) -> bool:
        """Stop the checks (a running command is killed) and wait for them to end.

        Args:
            timeout: the most seconds to wait.

        Returns:
            Whether every check task ended within the timeout.
        """
        future, self._future = self._future, None
        if future is None:
            return True
        future.cancel()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._stopped.wait(timeout)
        # Called from a coroutine (perhaps on the engine's loop itself): waiting
        # here would hold up the very loop that must end the checks.
        return self._stopped.is_set()

    def run_once(self, timeout: float | None = None) -> list[CheckOutcome]:
        """Run every check once, concurrently, report the results and wait for them.

        Also looks for due reminders (:meth:`CheckMonitor.tick`).

        Args:
            timeout: the most seconds to wait; each check is bounded by its own
                timeout already, so None is safe.

        Returns:
            One outcome per check, in the checks' order.

        Raises:
            RuntimeError: the engine is closed, or this is called from a
                coroutine (await :meth:`run_once_async` there instead).
            TimeoutError: ``timeout`` passed first.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # a plain thread: waiting is fine
        else:
            raise RuntimeError("run_once() would block the event loop: await run_once_async()")
        future = self._engine.run_coroutine(self.run_once_async())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"the checks did not finish within {timeout} s") from None

    async def run_once_async(self) -> list[CheckOutcome]:
        """:meth:`run_once` for a coroutine on the engine's loop."""
        outcomes = await asyncio.gather(*(self._run(check) for check in self._checks))
        self._monitor.tick()
        return list(outcomes)

    async def _run_forever(self) -> None:
        tasks = [asyncio.ensure_future(self._every(check)) for check in self._checks]
        try:
            # asyncio.wait, not gather: cancelling a gather waits for every
            # child, and a child can swallow its cancellation (asyncio.wait_for
            # before Python 3.12 does when the awaited call ends at that moment).
            await asyncio.wait(tasks)
        finally:
            try:
                while pending := [task for task in tasks if not task.done()]:
                    for task in pending:
                        task.cancel()  # again, until it takes
                    await asyncio.wait(pending, timeout=0.05)
            finally:
                self._stopped.set()

    async def _every(self, check: Check) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self._random.uniform(0, check.interval * self._jitter))
        while True:
            started = loop.time()
            try:
                await self._run(check)
            except Exception:
                log.exception("check %r: its result could not be reported", check.name)
            spread = self._random.uniform(-self._jitter, self._jitter)
            await asyncio.sleep(max(0.0, started + check.interval * (1 + spread) - loop.time()))

    async def _run(self, check: Check) -> CheckOutcome:
        result = await check.run()
        status = self._monitor.report(check.name, result.ok, result.detail, check.policy)
        outcome = CheckOutcome(check, result, status)
        if self._on_result is not None:
            try:
                self._on_result(outcome)
            except Exception:
                log.exception("the check runner's on_result callback failed")
        return outcome
