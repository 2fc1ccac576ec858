"""Jobs: an alert when a unit of work fails or overruns.

A **job** wraps a unit of work (``engine.job("backup")``). One object serves as
a context manager, an async context manager and a decorator of sync and async
functions, in the style of sentry-python's ``monitor``::

    with engine.job("backup", max_duration="1h"):
        run_backup()

    @engine.job("report")
    async def build_report() -> None: ...

When the body raises an :class:`Exception`, an alert with the traceback goes
out and the exception propagates unchanged. When ``max_duration`` passes, an
alert goes out while the job is still running (a timer on the engine's loop)
and another when it finishes late. Each successful run is a beat of that
name (:mod:`smtp_alerts._sources.heartbeats`): with ``engine.heartbeat`` of the same
name, a job that stops running at all is noticed too. ``KeyboardInterrupt``,
``SystemExit`` and cancellation end a run without an alert and without a
beat: they are not failures of the job.

The ``max_duration`` timer counts real seconds on the engine's loop; the
end-of-run check uses the engine's clock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, cast, overload

from .._util.humanize import format_duration, format_time
from .._util.printable import printable
from .heartbeats import check_name, duration_field, heartbeat_monitor

if TYPE_CHECKING:
    from .._engine.sink import AlertSink

__all__ = ["Job"]

log = logging.getLogger("smtp_alerts.jobs")

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(eq=False)
class _Run:
    """One execution of a job."""

    started: float
    timer: concurrent.futures.Future[None] | None = None
    done: bool = False
    late_alerted: bool = False


# The runs entered with ``with job:`` and not yet exited, innermost last, per
# thread and per asyncio task: a Job object reused by several threads or tasks
# at once finds its own run on exit.
_ACTIVE: contextvars.ContextVar[tuple[tuple[Job, _Run], ...]] = contextvars.ContextVar(
    "smtp_alerts_active_jobs", default=()
)


class Job:
    """A monitored unit of work: a context manager, async context manager and decorator.

    Made by :meth:`Engine.job <smtp_alerts.Engine.job>`; see the module docstring.

    Args:
        engine: the engine that sends the alerts.
        name: the job's name, shown in alerts and used as its heartbeat name.
        max_duration: alert when a run takes longer (seconds or ``"30m"``);
            None for no limit.
        level: the :mod:`logging` level of the alerts.
        group: the notification group of the alerts.

    Raises:
        ValueError: an empty name or a malformed or zero ``max_duration``.
    """

    def __init__(
        self,
        engine: AlertSink,
        name: str,
        *,
        max_duration: float | str | None = None,
        level: int = logging.ERROR,
        group: str = "default",
    ) -> None:
        self.engine = engine
        self.name = check_name(name)
        self.max_duration = (
            None if max_duration is None else duration_field(max_duration, "max_duration")
        )
        if self.max_duration == 0:
            raise ValueError("max_duration must be more than 0 seconds (or None for no limit)")
        self.level = level
        self.group = group

    def __repr__(self) -> str:
        limit = "" if self.max_duration is None else f", max_duration={self.max_duration!r}"
        return f"Job({self.name!r}{limit})"

    # -- context manager ----------------------------------------------------------

    def __enter__(self) -> Job:
        run = self._begin()
        _ACTIVE.set((*_ACTIVE.get(), (self, run)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        active = _ACTIVE.get()
        for index in range(len(active) - 1, -1, -1):
            if active[index][0] is self:
                run = active[index][1]
                _ACTIVE.set(active[:index] + active[index + 1 :])
                self._end(run, exc)
                break
        return False  # the exception, if any, propagates unchanged

    async def __aenter__(self) -> Job:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)

    # -- decorator ------------------------------------------------------------------

    @overload
    def __call__(
        self, func: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, func: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, func: Callable[P, Any]) -> Callable[P, Any]:
        """Monitor every call of ``func`` (a sync or async function) as one run.

        Raises:
            TypeError: ``func`` is a generator function: its body runs after the
                call returns; wrap the loop in ``with job:`` instead.
        """
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"cannot monitor the generator function {func.__qualname__} as a job: its "
                "body runs after the call returns; use `with engine.job(...):` inside it"
            )
        if inspect.iscoroutinefunction(func):
            coroutine_function = cast("Callable[P, Awaitable[Any]]", func)

            @functools.wraps(func)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                run = self._begin()
                try:
                    result = await coroutine_function(*args, **kwargs)
                except BaseException as exc:
                    self._end(run, exc)
                    raise
                self._end(run, None)
                return result

            return run_async

        @functools.wraps(func)
        def run_sync(*args: P.args, **kwargs: P.kwargs) -> Any:
            run = self._begin()
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                self._end(run, exc)
                raise
            self._end(run, None)
            return result

        return run_sync

    # -- one run ----------------------------------------------------------------------

    def _begin(self) -> _Run:
        run = _Run(started=self.engine.clock())
        if self.max_duration is not None:
            # A closed engine runs no timer: the end-of-run check still applies.
            with contextlib.suppress(RuntimeError):
                run.timer = self.engine.run_coroutine(self._late_timer(run, self.max_duration))
        return run

    def _end(self, run: _Run, exc: BaseException | None) -> None:
        run.done = True
        timer = run.timer
        if timer is not None and not timer.done():
            timer.cancel()
        # Alerting must never replace the job's own exception or result.
        try:
            duration = max(0.0, self.engine.clock() - run.started)
            if isinstance(exc, Exception):
                self._alert_failure(exc, duration)
            elif exc is None:
                if self.max_duration is not None and duration > self.max_duration:
                    self._alert_overran(run, duration)
                heartbeat_monitor(self.engine).beat(self.name)
        except Exception:
            log.exception("could not report the end of job %r", self.name)

    async def _late_timer(self, run: _Run, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if not run.done:
            run.late_alerted = True
            assert self.max_duration is not None  # noqa: S101 - the timer exists only with one
            self.engine.alert(
                f"job {self.name!r} is still running after {format_duration(seconds)} "
                f"(max_duration {format_duration(self.max_duration)})",
                level=self.level,
                name=self.name,
                key=f"job:{self.name}:still-running",
                details=f"started at {format_time(run.started)}",
                group=self.group,
                source="job",
            )

    def _alert_failure(self, exc: Exception, duration: float) -> None:
        self.engine.alert(
            f"job {self.name!r} failed after {format_duration(duration)}: "
            f"{type(exc).__name__}: {printable(exc)}",
            level=self.level,
            name=self.name,
            key=f"job:{self.name}:failed",
            exc=exc,
            group=self.group,
            source="job",
        )

    def _alert_overran(self, run: _Run, duration: float) -> None:
        assert self.max_duration is not None  # noqa: S101 - checked by the caller
        earlier = " (a still-running alert went out earlier)" if run.late_alerted else ""
        self.engine.alert(
            f"job {self.name!r} took {format_duration(duration)}, longer than its "
            f"max_duration of {format_duration(self.max_duration)}{earlier}",
            level=self.level,
            name=self.name,
            key=f"job:{self.name}:overran",
            details=f"started at {format_time(run.started)}, "
            f"finished at {format_time(run.started + duration)}",
            group=self.group,
            source="job",
        )
