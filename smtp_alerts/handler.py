"""The logging handler: ``logging.Handler`` in front, the engine behind."""

from __future__ import annotations

import logging
import threading
from typing import Any

from ._facade import Engine, engine_for, get_engine

__all__ = ["AlertHandler"]


class AlertHandler(logging.Handler):
    """A logging handler that turns records into digest emails without blocking.

    ``emit`` only hands the record to the engine's intake: no I/O, no lock held,
    no formatting for a repeat of a known problem. It never raises into the
    caller; a failure goes to :meth:`logging.Handler.handleError`.

    With no arguments the handler reads its settings from the ``SMTP_ALERTS_*``
    environment variables and uses the process's default engine (shared with
    the check and crash hooks), so this works in ``dictConfig``::

        {"class": "smtp_alerts.AlertHandler", "level": "ERROR"}

    Args:
        level: the least severe level handled.
        engine: an engine to use instead of the default one.
        **settings_overrides: :class:`~smtp_alerts.Settings` fields (``to=...``,
            ``group_wait="30s"``...), over the environment's. The first handler
            given settings configures the process's engine, which
            :func:`~smtp_alerts.get_engine`, the crash hooks, checks and jobs
            share, and so do later handlers given the same settings; a
            handler given other settings (another team's addresses) gets an
            engine of its own.

    Raises:
        ConfigurationError: a setting is missing or wrong (names the variable).
    """

    def __init__(
        self,
        level: int | str = logging.ERROR,
        *,
        engine: Engine | None = None,
        **settings_overrides: Any,
    ) -> None:
        if engine is not None and settings_overrides:
            raise TypeError("pass either engine= or settings overrides, not both")
        if engine is None and settings_overrides:
            # pydantic loads here only: the default engine checks the
            # environment without it (smtp_alerts._environment).
            from .settings import Settings  # noqa: PLC0415

            engine, self._owns_engine = engine_for(Settings(**settings_overrides))
        elif engine is None:
            engine = get_engine()
            self._owns_engine = False
        else:
            self._owns_engine = False
        super().__init__(level)
        self.engine = engine
        self._submit = engine.submit_record
        self._close_lock = threading.Lock()
        self._closed = False

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter the record and hand it to the engine.

        Overridden to skip the handler lock of :meth:`logging.Handler.handle`:
        the intake is safe to use from any thread, and a lock would make every
        logging thread queue behind the others.
        """
        if self.filters:
            result: object = self.filter(record)  # a bool, or on 3.12+ maybe a new record
            if not result:
                return False
            if isinstance(result, logging.LogRecord):
                record = result
        try:
            self._submit(record)
        except Exception:  # noqa: BLE001 - logging's contract: never raise into the caller
            self.handleError(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Hand the record to the engine (what :meth:`handle` does after filtering)."""
        try:
            self._submit(record)
        except Exception:  # noqa: BLE001 - logging's contract: never raise into the caller
            self.handleError(record)

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Deliver everything accepted so far now, ignoring the batching windows.

        Args:
            timeout: the most seconds to wait; None waits for every attempt to end.

        Returns:
            Whether everything accepted so far was delivered.
        """
        return self.engine.flush(timeout)

    def close(self) -> None:
        """Flush (bounded by ``SHUTDOWN_TIMEOUT``) and detach; safe to call twice."""
        with self._close_lock:
            closed, self._closed = self._closed, True
        if not closed:
            if self._owns_engine:
                self.engine.close()
            elif self.engine.started:  # else nothing to flush, and no settings model to build
                self.engine.flush(self.engine.settings.shutdown_timeout)
        super().close()

    def __repr__(self) -> str:
        settings = self.engine.settings
        recipients = len(settings.to)
        return (
            f"<{type(self).__name__} {settings.host}:{settings.port} -> "
            f"{recipients} recipient{'s' if recipients != 1 else ''} "
            f"({logging.getLevelName(self.level)})>"
        )
