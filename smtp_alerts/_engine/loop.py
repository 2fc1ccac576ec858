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
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["EngineLoop", "WorkerPool"]

T = TypeVar("T")

_Job = tuple["concurrent.futures.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class WorkerPool:
    """A fixed set of daemon threads, started up front, that run blocking calls.

    Args:
        size: how many threads; a hung call (a stuck DNS lookup) holds one.
        name: the threads' name prefix.
    """

    def __init__(self, *, size: int = 4, name: str = "smtp-alerts-worker") -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., T], /, *args: Any) -> concurrent.futures.Future[T]:
        """Run ``fn(*args)`` on a worker thread; its future holds the result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((future, fn, args))
        return future

    def shutdown(self) -> None:
        """Let the threads finish once the jobs already queued are done."""
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting coroutine
                future.set_exception(exc)


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
