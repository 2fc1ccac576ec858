"""The engine's worker threads: started with the engine, before shutdown can begin.

From Python 3.12 no thread may start once the interpreter is shutting down,
and a short script that logs one error and exits is shutting down while the
engine's thread is still loading: the workers it needs (blocking calls of its
loop: name lookups, the store's SQLite work) are started by :meth:`start`, in
the thread that starts the engine. Standard library only: the caller's thread
loads this module at the first alert.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["WorkerPool"]

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
