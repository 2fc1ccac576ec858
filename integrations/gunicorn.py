"""The gunicorn integration: a config module whose hooks report what gunicorn only logs.

``gunicorn -c python:smtp_alerts.integrations.gunicorn app:app`` loads this
module as the configuration; its server hooks are gunicorn settings. With a
configuration of your own, import them into it
(``from smtp_alerts.integrations.gunicorn import *``) and call them from any
hook of the same name you define.

Why hooks: ``gunicorn.error`` does not propagate to the root logger, so a
root ``AlertHandler`` never hears of a worker timeout, a worker killed by a
signal (``SIGKILL``: out of memory, most often) or an error handling a
request. What each hook does:

- ``on_starting`` (the arbiter) and ``post_fork`` (each worker): an
  ``AlertHandler`` on ``gunicorn.error`` at ERROR, with query strings cut
  from the request URIs it logs; the arbiter's engine is started, so it owns
  the shared store while gunicorn runs and sends what exiting workers hand
  over (one email per incident, however many workers saw it).
- ``worker_abort`` (a worker, on the arbiter's ``SIGABRT`` after
  ``--timeout``): an alert naming the timeout and where the worker was
  stuck, with every thread's stack. The arbiter's own ``WORKER TIMEOUT``
  line and that worker's "exited with code 1" are then not reported again;
  a worker too stuck to report (in C code) is killed by the arbiter and
  reported by it as "WORKER TIMEOUT (pid:...): hung past its abort".
- ``worker_int``, ``worker_exit`` (a worker) and ``on_exit`` (the arbiter):
  the engine is closed, so pending counts reach the store (a worker's
  siblings or the arbiter send them) or are sent by the last one out.
- ``child_exit`` (the arbiter): nothing to add: the arbiter has logged how
  the worker ended ("was sent SIGKILL! Perhaps out of memory?") on
  ``gunicorn.error``, where the handler reports it.
"""

from __future__ import annotations

import copy
import logging
import sys
import threading
import traceback
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._common import require, safe_url

require("gunicorn", package="gunicorn", extra="gunicorn")

from smtp_alerts import AlertHandler, get_engine  # noqa: E402 - after the check naming the extra

if TYPE_CHECKING:
    from smtp_alerts import Engine

__all__ = [
    "child_exit",
    "on_exit",
    "on_starting",
    "post_fork",
    "use_engine",
    "worker_abort",
    "worker_exit",
    "worker_int",
]

log = logging.getLogger("smtp_alerts.integrations")


class _Chosen:
    """The engine :func:`use_engine` chose (the default engine when None)."""

    engine: Engine | None = None


_ABORTED = "_smtp_alerts_aborted"  # set on a worker object by worker_abort
_ABORTED_EXIT = 0.5  # seconds an aborted worker waits for its hand-over at most
_KILLED = "Worker (pid:%s) was sent %s!"  # then " Perhaps out of memory?" for SIGKILL
_TIMEOUT = "WORKER TIMEOUT (pid:%s)"
_EXITED = "Worker (pid:%s) exited with code %s."
_REQUEST_ERROR = "Error handling request"  # then the method and URI, or the URI


def use_engine(engine: Engine | None) -> None:
    """Report to ``engine`` instead of the process's default engine (call it in the config)."""
    _Chosen.engine = engine


def _engine() -> Engine:
    return _Chosen.engine if _Chosen.engine is not None else get_engine()


class _ErrorLogHandler(AlertHandler):
    """An ``AlertHandler`` for ``gunicorn.error``: URIs without query strings, no double report.

    A timed-out worker reports its own timeout (:func:`worker_abort`, with
    where it was stuck), so the arbiter's line about it and the worker's exit
    code 1 that follows are not reported again.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__(logging.ERROR, engine=engine)
        self._aborted: set[object] = set()

    def handle(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if record.msg == _TIMEOUT and args:
            self._aborted.add(args[0])
            return False
        if record.msg == _EXITED and len(args) == 2 and args[0] in self._aborted:
            self._aborted.discard(args[0])
            if args[1] == 1:
                return False  # the exit of sys.exit(1) after its report
        if str(record.msg).startswith(_KILLED) and args and args[0] in self._aborted:
            self._aborted.discard(args[0])  # it hung past its abort: it may not have said so
            record = copy.copy(record)
            record.msg = "WORKER TIMEOUT (pid:%s): hung past its abort, sent %s"
        if record.exc_info and record.exc_info[0] is SystemExit:
            return False  # an aborted worker leaving the request it was stuck in: said already
        if isinstance(record.msg, str) and record.msg.startswith(_REQUEST_ERROR) and args:
            record = copy.copy(record)  # the other handlers keep the record as it was
            record.args = tuple(safe_url(a) if isinstance(a, str) else a for a in args)
        return super().handle(record)


def _watch_error_log() -> None:
    """Put the handler on ``gunicorn.error`` once per process (gunicorn's own stays)."""
    try:
        error_log = logging.getLogger("gunicorn.error")
        if not any(isinstance(h, _ErrorLogHandler) for h in error_log.handlers):
            error_log.addHandler(_ErrorLogHandler(_engine()))
    except Exception as exc:  # noqa: BLE001 - wrong settings must not stop gunicorn; said once
        log.warning("smtp-alerts: gunicorn.error is not watched: %s", exc)


def _close_engine(within: float | None = None) -> None:
    """Close the engine if it started: pending counts go to the store, or out if last.

    Args:
        within: the most seconds to wait, if less than ``SHUTDOWN_TIMEOUT``.
    """
    try:
        engine = _engine()
        if engine.started and not engine.closed:
            timeout = engine.settings.shutdown_timeout
            engine.close(timeout if within is None else min(timeout, within))
    except Exception:
        log.debug("gunicorn: closing the engine failed", exc_info=True)


# -- the hooks (gunicorn settings: each name and signature is gunicorn's) ---------------


def on_starting(server: Any) -> None:  # noqa: ARG001 - gunicorn calls it so
    """The arbiter starts: watch ``gunicorn.error`` and own the store while gunicorn runs."""
    _watch_error_log()
    try:
        engine = _engine()
        engine.start()
        # Wait until its thread is up (delivery built, store open) before any worker is
        # forked: a fork while that thread imports or holds a lock leaves the lock held
        # in the child for ever, and the worker's engine hangs at its first alert.
        engine.flush(engine.settings.shutdown_timeout)
    except Exception:
        log.debug("gunicorn: the arbiter's engine did not start", exc_info=True)


def post_fork(server: Any, worker: Any) -> None:  # noqa: ARG001 - gunicorn calls it so
    """A worker was forked: watch ``gunicorn.error`` in it too (inherited, or added now)."""
    _watch_error_log()


def worker_abort(worker: Any) -> None:
    """The arbiter aborted a worker past ``--timeout``: say so, and where it was stuck."""
    try:
        stuck = _interrupted_frame()
        where = (
            f"{stuck.f_code.co_filename}:{stuck.f_lineno} in {stuck.f_code.co_name}"
            if stuck is not None
            else "?"
        )
        setattr(worker, _ABORTED, True)
        timeout = getattr(getattr(worker, "cfg", None), "timeout", None)
        _engine().alert(
            f"gunicorn WORKER TIMEOUT: worker {worker.pid} took longer than {timeout}s "
            f"and was aborted, in {where}",
            # ERROR, not CRITICAL: a CRITICAL is sent at once, by this worker, which the
            # arbiter kills within a second; at ERROR it only hands it over.
            level=logging.ERROR,
            name="gunicorn.error",
            key=f"gunicorn WORKER TIMEOUT in {_function(stuck)}",
            details=_all_stacks(),
            context={"pid": worker.pid, "timeout": timeout, "where": where},
        )
        # Tell the arbiter this worker still runs Python: it kills an aborted worker it
        # hears nothing from on its next round, and would report it again as hung.
        worker.notify()
    except Exception:
        log.debug("gunicorn: the timeout could not be reported", exc_info=True)


def worker_int(worker: Any) -> None:  # noqa: ARG001 - gunicorn calls it so
    """A worker got SIGINT or SIGQUIT (a quick stop): hand its counts over now."""
    _close_engine()


def worker_exit(server: Any, worker: Any) -> None:  # noqa: ARG001 - gunicorn calls it so
    """A worker ends (graceful, aborted or recycled): hand its counts over before it is gone.

    An aborted worker has one ``--timeout`` (from its report, see
    :func:`worker_abort`) before the arbiter kills it: it only hands its
    counts over, briefly.
    """
    _close_engine(_ABORTED_EXIT if getattr(worker, _ABORTED, False) else None)


def child_exit(server: Any, worker: Any) -> None:
    """A worker was reaped; how it ended was logged on ``gunicorn.error`` (see the module)."""


def on_exit(server: Any) -> None:  # noqa: ARG001 - gunicorn calls it so
    """gunicorn stops: the arbiter, the last one out, sends what is pending."""
    _close_engine()


# -- where a worker was stuck -------------------------------------------------------------


def _interrupted_frame() -> FrameType | None:
    """The main thread's frame that ``SIGABRT`` interrupted (past gunicorn's and our frames)."""
    frame: FrameType | None = sys._getframe(1)  # noqa: SLF001 - the stack we are running on
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith(
        ("smtp_alerts", "gunicorn.workers.base")
    ):
        frame = frame.f_back
    return frame


def _function(frame: FrameType | None) -> str:
    if frame is None:
        return "?"
    return f"{frame.f_globals.get('__name__', '?')}.{frame.f_code.co_name}"


def _all_stacks() -> str:
    """Every thread's stack, the main thread first (a threaded worker serves in others)."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    main = threading.main_thread().ident
    frames = sorted(sys._current_frames().items(), key=lambda item: item[0] != main)  # noqa: SLF001
    return "\n".join(
        f"Thread {names.get(ident, ident)}:\n{''.join(traceback.format_stack(frame))}"
        for ident, frame in frames
    )
