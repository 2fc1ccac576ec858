"""The Celery integration: a task's final failure becomes one alert, however many workers saw it.

``smtp_alerts.integrations.celery.install(app)`` connects to Celery's signals:

- ``task_failure``: a task failed for good. Celery sends it only for the
  final failure (a retried attempt sends ``task_retry``; ``Retry``,
  ``Ignore`` and ``Reject`` send none), in the pool child that ran the task,
  or in the main process for a child lost mid-task (``WorkerLostError``) or a
  hard time limit. Exceptions the task declares expected (``Task.throws``)
  are not alerts. The alert is keyed by the task name and the exception
  type; its context is the task's name, id, retries, hostname and queue; its
  arguments only with ``include_args=True`` (scrubbed).
- ``after_setup_logger``: Celery's worker empties the root logger's handlers
  when it sets up logging (``worker_hijack_root_logger``), so an
  ``AlertHandler`` attached at import would hear nothing; the handlers seen at
  :func:`install` are put back. A handler attached later is left alone. The
  record Celery logs for a failure it reported is not counted twice
  (:meth:`Engine.alert` marks the exception).
- ``worker_ready``: the worker's main process starts its engine, so it is a
  live owner of the shared store for as long as the worker runs: children
  that end hand their counts over to it, and it sends when a window is due
  (and at its own exit, the last one out).
- ``worker_process_shutdown``: billiard's pool children end with
  ``os._exit``, which runs no ``atexit`` hook, at worker stop and when
  recycled (``max_tasks_per_child``); the child's engine is closed there, so
  its counts reach the shared store before the process is gone. With every
  process on one ``SPOOL_DIR`` the pool sends one email per incident.

It never connects to ``setup_logging``: a receiver there makes Celery skip
its own logging configuration.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from ._common import exception_key, report, require

require("celery", package="celery", extra="celery")

from celery import signals  # noqa: E402 - after the check that names the extra

from smtp_alerts import AlertHandler, get_engine  # noqa: E402

if TYPE_CHECKING:
    from celery import Celery, Task

    from smtp_alerts import Engine

__all__ = ["CeleryIntegration", "install"]

log = logging.getLogger("smtp_alerts.integrations")


class CeleryIntegration:
    """What :func:`install` connected for one Celery app; :meth:`uninstall` disconnects it.

    Args:
        app: the Celery app whose tasks are watched.
        engine: the engine to report to; the process's default engine when omitted.
        include_args: show the task's arguments (scrubbed) in the context.
    """

    def __init__(self, app: Celery, engine: Engine | None, *, include_args: bool) -> None:
        self.app = app
        self._engine = engine
        self.include_args = include_args
        # The AlertHandlers on the root logger now, before Celery may remove them.
        self._root_handlers = [
            h for h in logging.getLogger().handlers if isinstance(h, AlertHandler)
        ]
        self._lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        """The engine alerts go to (the default one is looked up when needed)."""
        return self._engine if self._engine is not None else get_engine()

    def connect(self) -> None:
        """Connect the signal receivers (weak=False: the integration owns them)."""
        signals.task_failure.connect(self.on_task_failure, weak=False)
        signals.after_setup_logger.connect(self.on_setup_logger, weak=False)
        signals.worker_process_shutdown.connect(self.on_process_shutdown, weak=False)
        signals.worker_ready.connect(self.on_worker_ready, weak=False)

    def uninstall(self) -> None:
        """Disconnect every receiver."""
        signals.task_failure.disconnect(self.on_task_failure)
        signals.after_setup_logger.disconnect(self.on_setup_logger)
        signals.worker_process_shutdown.disconnect(self.on_process_shutdown)
        signals.worker_ready.disconnect(self.on_worker_ready)

    # -- receivers: each never raises (a failing receiver is logged by Celery) --------

    def on_task_failure(
        self,
        sender: Task | None = None,
        task_id: str | None = None,
        exception: BaseException | None = None,
        args: Any = None,
        kwargs: Any = None,
        **_: Any,
    ) -> None:
        """A task failed for good: report it once, keyed by its name and exception type."""
        if sender is None or exception is None or getattr(sender, "app", None) is not self.app:
            return
        throws = getattr(sender, "throws", ())
        if throws and isinstance(exception, throws):
            return  # declared as expected by the task: Celery logs it at INFO
        name = str(getattr(sender, "name", "?"))
        context = self._context(sender, task_id, args, kwargs)
        report(
            self.engine,
            exception,
            message=f"Task {name} failed: {type(exception).__name__}: {exception}",
            key=exception_key(f"celery {name}", exception),
            name=name,
            context=context,
        )

    def _context(self, task: Task, task_id: str | None, args: Any, kwargs: Any) -> dict[str, Any]:
        context: dict[str, Any] = {"task": task.name, "id": task_id}
        try:
            request = task.request
            if getattr(request, "id", None) == task_id:  # in the child that ran it
                context["retries"] = request.retries
                context["hostname"] = request.hostname
                delivery = request.delivery_info or {}
                context["queue"] = delivery.get("routing_key") or delivery.get("queue")
        except Exception:
            log.debug("celery request unreadable", exc_info=True)
        if self.include_args:
            context["args"] = args
            context["kwargs"] = kwargs if isinstance(kwargs, dict) else {}
        return {key: value for key, value in context.items() if value is not None}

    def on_setup_logger(self, logger: logging.Logger | None = None, **_: Any) -> None:
        """Celery set up logging (and may have emptied the root): put our handlers back."""
        target = logger if logger is not None else logging.getLogger()
        with self._lock:
            for handler in self._root_handlers:
                if handler not in target.handlers:
                    target.addHandler(handler)

    def on_worker_ready(self, **_: Any) -> None:
        """The worker's main process is up: own the store for its lifetime (see the module)."""
        try:
            engine = self.engine
            engine.start()
            # Wait until its thread is up before a recycled child is forked: a fork while
            # that thread imports or holds a lock leaves it held in the child for ever.
            engine.flush(engine.settings.shutdown_timeout)
        except Exception as exc:  # noqa: BLE001 - wrong settings must not stop the worker
            log.warning("smtp-alerts: failed tasks cannot be reported: %s", exc)

    def on_process_shutdown(self, **_: Any) -> None:
        """A pool child ends (``os._exit`` follows): hand its counts over to the store now."""
        try:
            engine = self.engine  # the default one costs no thread until its first alert
            if engine.started and not engine.closed:
                engine.close(engine.settings.shutdown_timeout)
        except Exception:
            log.debug("celery child shutdown", exc_info=True)


def install(
    app: Celery, engine: Engine | None = None, *, include_args: bool = False
) -> CeleryIntegration:
    """Report ``app``'s failed tasks (the final failure, not each retry) to ``engine``.

    Call it where the app is made (the module ``celery -A`` imports), so the
    worker's main process and every pool child have it.

    Args:
        app: the Celery app.
        engine: the engine to report to; the process's default engine when omitted.
        include_args: show the task's arguments in the email (scrubbed of secrets); off
            by default, as arguments often carry personal data.

    Returns:
        The integration, with ``uninstall()``.
    """
    integration = CeleryIntegration(app, engine, include_args=include_args)
    integration.connect()
    return integration
