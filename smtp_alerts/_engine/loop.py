"""The engine's event loop, with blocking helpers that keep working at exit.

asyncio runs blocking calls (``getaddrinfo`` for every connection to a host
name, ``asyncio.to_thread``) on a ``concurrent.futures`` executor. Once the
interpreter starts shutting down, those executors refuse new work and no new
thread may start, which is exactly when the last alerts of a crashing script
must go out. So the engine's loop runs them on a few worker threads started
together with the engine, which serve until the engine closes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from .workers import WorkerPool

__all__ = ["EngineLoop", "WorkerPool", "wait_event"]  # WorkerPool re-exported from .workers

T = TypeVar("T")

_Job = tuple["concurrent.futures.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class EngineLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose default executor is a :class:`WorkerPool`."""

    def __init__(self, pool: WorkerPool) -> None:
        super().__init__()
        self._pool = pool

    def run_in_executor(  # type: ignore[override]
        self, executor: concurrent.futures.Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        if executor is not None:
            return super().run_in_executor(executor, func, *args)
        return asyncio.wrap_future(self._pool.submit(func, *args), loop=self)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            super().close()
        self._pool.shutdown()


async def wait_event(event: asyncio.Event, timeout: float | None) -> None:
    """Wait until ``event`` is set, or at most ``timeout`` seconds (None: no limit).

    What ``asyncio.wait_for(event.wait(), timeout)`` does, without its task: a
    busy engine waits like this every few milliseconds, and each ``wait_for``
    made a task and, on a timeout, cancelled it and waited for that, two more
    turns of the loop. On a timeout the event is set, as a wake would set it
    (its waiters clear it and look at their work either way).
    """
    if timeout is None:
        await event.wait()
        return
    timer = asyncio.get_running_loop().call_later(timeout, event.set)
    try:
        await event.wait()
    finally:
        timer.cancel()
