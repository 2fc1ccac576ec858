"""Crash notification: an uncaught exception becomes an alert before the process ends.

:func:`install_crash_hooks` chains three hooks, each calling the one it
replaced, so tracebacks still print and other tools' hooks still run:

- ``sys.excepthook``: the main thread's uncaught exception (and so an
  exception that escapes ``asyncio.run``). The alert is sent before the
  process exits: the hook flushes the engine, bounded by ``SHUTDOWN_TIMEOUT``.
- ``threading.excepthook``: an exception that ends another thread. The alert
  is queued; the engine's exit hook delivers it when the process ends.
- asyncio: a task that died with an exception nobody retrieved, or a callback
  that raised. A loop's exception handler is per loop, and ``asyncio.run``
  makes its loop after this function runs, so two ways are used:

  * called inside a running loop (at the top of ``async def main()``, as
    sentry-python asks for its asyncio integration), the loop's own exception
    handler is chained (:func:`install_asyncio_handler` does this for any loop);
  * in every case, a handler on the ``asyncio`` logger catches what asyncio's
    *default* exception handler logs with a traceback, on any loop in any
    thread (uvloop's too). It needs no event-loop policy (deprecated from
    Python 3.14) and changes nothing about what asyncio prints. It misses a
    loop whose custom handler does not call the default one: chain that loop
    with :func:`install_asyncio_handler`.

A crash is an alert at ``CRITICAL`` from the source ``crash``, so it skips
``GROUP_WAIT``. ``KeyboardInterrupt`` and ``SystemExit`` are not crashes.

SIGTERM (how systemd, Docker and Kubernetes stop a process) ends a Python
process without running ``atexit``, so alerts still waiting for their group
window would be lost. When SIGTERM has its default action and this runs in
the main thread, a handler is installed that delivers pending alerts (bounded
by ``SHUTDOWN_TIMEOUT``), restores the default action and sends SIGTERM again,
so the process ends exactly as it would have.

Nothing is installed in an interactive session (``python -i``, the REPL),
where an exception is not a crash, unless ``force=True``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import weakref
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from .._engine import process
from .._util.printable import printable, printable_repr

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._engine.sink import AlertSink

    _ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], Any]
    _ThreadingHook = Callable[[threading.ExceptHookArgs], Any]
    _LoopHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]

__all__ = [
    "CrashHooks",
    "install_asyncio_handler",
    "install_crash_hooks",
    "report_crash",
]

log = logging.getLogger("smtp_alerts.crash")

# Set while a chained loop handler calls the handler it replaced: asyncio's
# default one then logs the same exception, which the logger hook must skip.
_IN_LOOP_HANDLER = threading.local()
_active: CrashHooks | None = None
_active_lock = threading.Lock()


def _program() -> str:
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    return Path(argv0).name if argv0 and argv0 != "-c" else "python"


def _is_interactive() -> bool:
    return bool(sys.flags.interactive) or hasattr(sys, "ps1")


def report_crash(exc: BaseException, *, engine: AlertSink, where: str | None = None) -> bool:
    """Raise the CRITICAL ``crash`` alert for ``exc``; never blocks, never raises.

    Args:
        exc: the exception, with its traceback.
        engine: the engine to report to.
        where: where it happened (``"thread 'worker'"``); the current thread when omitted.

    Returns:
        Whether the alert was accepted.
    """
    if where is None:
        where = f"thread {threading.current_thread().name!r}"
    try:
        return engine.alert(
            f"uncaught {type(exc).__name__} in {where}: {printable(exc)}",
            level=logging.CRITICAL,
            name=_program(),
            exc=exc,
            source="crash",
        )
    except Exception as error:  # noqa: BLE001 - a crash report must never raise in a hook
        with contextlib.suppress(Exception):
            print(
                f"smtp-alerts: could not report the crash: {printable_repr(error)}",
                file=sys.stderr,
            )
        return False


class CrashHooks:
    """The crash hooks installed by :func:`install_crash_hooks`; :meth:`uninstall` removes them.

    Also a context manager that uninstalls on exit (handy in tests).

    Attributes:
        engine: the engine the crashes are reported to.
        installed: whether the hooks are in place (False in an interactive
            session without ``force``, and after :meth:`uninstall`).
        sigterm: whether the SIGTERM handler was installed.
    """

    def __init__(self, engine: AlertSink | None) -> None:
        self.engine = engine
        self.installed = False
        self.sigterm = False
        self._previous_excepthook: _ExceptHook = sys.__excepthook__
        self._previous_threading_hook: _ThreadingHook = threading.__excepthook__
        self._log_hook: _AsyncioLogHook | None = None
        self._loops: list[
            tuple[weakref.ref[asyncio.AbstractEventLoop], _LoopHandler, _LoopHandler | None]
        ] = []

    def __repr__(self) -> str:
        state = "installed" if self.installed else "not installed"
        return f"<CrashHooks {state}{', SIGTERM' if self.sigterm else ''}>"

    def __enter__(self) -> CrashHooks:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.uninstall()

    # -- installing -------------------------------------------------------------------

    def _install(self, *, sigterm: bool) -> None:
        self._previous_excepthook = sys.excepthook
        sys.excepthook = self._excepthook
        self._previous_threading_hook = threading.excepthook
        threading.excepthook = self._threading_hook
        self._log_hook = _AsyncioLogHook(self)
        logging.getLogger("asyncio").addHandler(self._log_hook)
        self.installed = True
        if sigterm:
            self.sigterm = _install_sigterm(self)
        with contextlib.suppress(RuntimeError):  # no running loop: the logger hook covers it
            self.install_asyncio_handler(asyncio.get_running_loop())

    def install_asyncio_handler(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Chain this loop's exception handler: failed tasks and callbacks become alerts.

        Args:
            loop: the loop; the running loop when omitted.

        Raises:
            RuntimeError: no loop given and none running.
        """
        if loop is None:
            loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()
        if any(previous is ours for _, ours, _ in self._loops):
            return  # already chained on this loop

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            self._loop_exception(loop, context, previous)

        loop.set_exception_handler(handler)
        self._loops.append((weakref.ref(loop), handler, previous))

    def uninstall(self) -> None:
        """Put back the hooks that were there before; safe to call twice.

        A hook that someone replaced after ours is left alone, and ours stops
        reporting (it only passes on to the one it replaced).
        """
        global _active  # noqa: PLW0603 - one set of process-wide hooks
        if not self.installed:
            return
        self.installed = False
        if sys.excepthook == self._excepthook:
            sys.excepthook = self._previous_excepthook
        if threading.excepthook == self._threading_hook:
            threading.excepthook = self._previous_threading_hook
        if self._log_hook is not None:
            logging.getLogger("asyncio").removeHandler(self._log_hook)
        for loop_ref, handler, previous in self._loops:
            loop = loop_ref()
            if loop is not None and loop.get_exception_handler() is handler:
                loop.set_exception_handler(previous)
        self._loops.clear()
        if self.sigterm:
            with contextlib.suppress(ValueError):  # not the main thread: leave it
                if signal.getsignal(signal.SIGTERM) == self._on_sigterm:
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
            self.sigterm = False
        with _active_lock:
            if _active is self:
                _active = None

    # -- the hooks ------------------------------------------------------------------

    def _excepthook(
        self,
        exc_type: type[BaseException],
        exc: BaseException,
        tb: TracebackType | None,
    ) -> None:
        reported = self.installed and not issubclass(exc_type, KeyboardInterrupt)
        if reported:
            if exc.__traceback__ is None and tb is not None:
                exc = exc.with_traceback(tb)
            self._report(exc, _where_thread())
        try:
            self._previous_excepthook(exc_type, exc, tb)
        finally:
            if reported:
                # The interpreter exits next: deliver now, bounded.
                self._flush()

    def _threading_hook(self, args: threading.ExceptHookArgs) -> None:
        exc = args.exc_value
        thread = args.thread
        if (
            self.installed
            and exc is not None
            and not isinstance(exc, (SystemExit, KeyboardInterrupt))
            and not (thread is not None and thread.name.startswith("smtp-alerts-"))
        ):
            where = f"thread {thread.name!r}" if thread is not None else "a thread"
            self._report(exc, where)
        self._previous_threading_hook(args)

    def _loop_exception(
        self,
        loop: asyncio.AbstractEventLoop,
        context: dict[str, Any],
        previous: _LoopHandler | None,
    ) -> None:
        exc = context.get("exception")
        if self.installed and isinstance(exc, Exception):
            self._report(exc, _where_asyncio(context))
        _IN_LOOP_HANDLER.active = True
        try:
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)
        finally:
            _IN_LOOP_HANDLER.active = False

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:  # noqa: ARG002 - signal API
        if self.installed:
            _deliver_pending()
        # End as the default action would, so the exit status says "killed by SIGTERM".
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        os._exit(128 + signal.SIGTERM)  # only if the signal did not end us (it does)

    def _report(self, exc: BaseException, where: str) -> None:
        if self.engine is not None:  # always set while installed
            report_crash(exc, engine=self.engine, where=where)

    def _flush(self) -> None:
        engine = self.engine
        if engine is None:
            return
        with contextlib.suppress(Exception):
            engine.flush(timeout=engine.settings.shutdown_timeout)


class _AsyncioLogHook(logging.Handler):
    """Turns what asyncio's default exception handler logs with a traceback into a crash."""

    def __init__(self, hooks: CrashHooks) -> None:
        # Every level: it stands in for the last-resort handler (see handle).
        super().__init__()
        self._hooks = hooks

    def handle(self, record: logging.LogRecord) -> bool:
        # With no handler configured, logging prints through its "last resort"
        # handler; ours being there would silence that, so stand in for it.
        last_resort = logging.lastResort
        if (
            last_resort is not None
            and record.levelno >= last_resort.level
            and not _other_handlers(logging.getLogger(record.name), self)
        ):
            last_resort.handle(record)
        return super().handle(record)

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(_IN_LOOP_HANDLER, "active", False) or not self._hooks.installed:
            return  # a chained loop handler reported it already
        if threading.current_thread().name.startswith("smtp-alerts-"):
            return  # our own loop: never alert about ourselves
        exc = record.exc_info[1] if record.exc_info else None
        engine = self._hooks.engine
        if record.levelno >= logging.ERROR and isinstance(exc, Exception) and engine is not None:
            try:
                first_line = printable(record.getMessage(), 200).partition("\n")[0]
            except Exception:  # noqa: BLE001 - odd text must not cost the crash report
                first_line = printable(record.msg, 200).partition("\n")[0]
            report_crash(exc, engine=engine, where=f"asyncio ({first_line})")


def _other_handlers(logger: logging.Logger, ours: logging.Handler) -> bool:
    """Whether a record of ``logger`` reaches a handler besides ``ours`` (as logging looks)."""
    current: logging.Logger | None = logger
    while current is not None:
        if any(handler is not ours for handler in current.handlers):
            return True
        current = current.parent if current.propagate else None
    return False


def _where_thread() -> str:
    thread = threading.current_thread()
    if thread is threading.main_thread():
        return "the main thread"
    return f"thread {thread.name!r}"


def _where_asyncio(context: dict[str, Any]) -> str:
    task = context.get("task") or context.get("future")
    if isinstance(task, asyncio.Task):
        return f"asyncio task {task.get_name()!r}"
    message = str(context.get("message", "")).partition("\n")[0]
    return f"asyncio ({message})" if message else "asyncio"


def _install_sigterm(hooks: CrashHooks) -> bool:
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        if signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
            return False  # the program handles SIGTERM itself: its handler wins
        signal.signal(signal.SIGTERM, hooks._on_sigterm)  # noqa: SLF001 - our own class
    except (ValueError, OSError):
        return False
    return True


def _deliver_pending() -> None:
    """Close every engine (delivering what waits), bounded by their SHUTDOWN_TIMEOUT.

    On a helper thread: the signal may have interrupted the main thread
    while it held an engine's lock, and waiting for that lock here would
    never end; the helper's wait is bounded instead.
    """
    longest = process.longest_shutdown()
    if longest is None:
        return  # no engine started: nothing can be pending
    # The same path as a normal exit.
    helper = threading.Thread(target=process.close_all, name="smtp-alerts-sigterm", daemon=True)
    with contextlib.suppress(RuntimeError):  # no new thread at interpreter shutdown
        helper.start()
        helper.join(longest + 1.0)


def install_crash_hooks(
    engine: AlertSink | None,
    *,
    default_engine: Callable[[], AlertSink],
    force: bool = False,
    sigterm: bool = True,
) -> CrashHooks:
    """Email uncaught exceptions (main thread, other threads, asyncio) before the process ends.

    What ``smtp_alerts.install_crash_hooks()`` does, given the default engine
    by the layer that can make it. A second call returns the hooks already
    installed. See the module docstring for what is hooked and how.

    Args:
        engine: the engine to report to; ``default_engine()`` when None.
        default_engine: the process's default engine; called only when the
            hooks go in (an interactive session loads no settings).
        force: install even in an interactive session.
        sigterm: deliver pending alerts on SIGTERM (only when SIGTERM has its
            default action and this is the main thread).

    Returns:
        The hooks, with ``uninstall()``.

    Raises:
        ConfigurationError: no engine given and the settings are missing or wrong.
    """
    global _active  # noqa: PLW0603 - one set of process-wide hooks
    with _active_lock:
        if _active is not None and _active.installed:
            return _active
    if _is_interactive() and not force:
        return CrashHooks(engine)
    if engine is None:
        engine = default_engine()
    hooks = CrashHooks(engine)
    with _active_lock:
        if _active is not None and _active.installed:
            return _active
        hooks._install(sigterm=sigterm)  # noqa: SLF001 - our own class
        _active = hooks
    return hooks


def install_asyncio_handler(
    loop: asyncio.AbstractEventLoop | None = None,
    *,
    engine: AlertSink | None = None,
    default_engine: Callable[[], AlertSink],
) -> CrashHooks:
    """Chain a loop's exception handler so failed tasks and callbacks become crash alerts.

    Installs the crash hooks first if they are not yet (see :func:`install_crash_hooks`).

    Args:
        loop: the loop; the running loop when omitted.
        engine: the engine, when the hooks are not installed yet.
        default_engine: the process's default engine, when ``engine`` is None.

    Returns:
        The crash hooks.

    Raises:
        RuntimeError: no loop given and none running.
    """
    hooks = install_crash_hooks(engine, default_engine=default_engine)
    if hooks.installed:
        hooks.install_asyncio_handler(loop)
    return hooks
