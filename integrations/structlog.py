"""The structlog processor: events at a level and above become alerts keyed by logger and event.

``smtp_alerts.integrations.structlog.AlertProcessor()`` goes in the
processors chain, before the renderer (and before ``format_exc_info`` if the
traceback should be ours). In structlog the event string is the template
(``log.error("login failed", user_id=17)``), so an alert is keyed by the
logger name and the event (and the exception type, when there is one); the
other key-value pairs are the context table, scrubbed by the one scrubber
(``password=`` never reaches the email); ``exc_info`` (``True``, an exception
or a tuple) gives the traceback; the location is the first frame outside
structlog, logging and smtp_alerts.

Over the standard library (``structlog.stdlib.LoggerFactory``) the event is
then written as a ``logging`` record too, and a root ``AlertHandler`` would
count it again. The processor marks that record: a filter on the stdlib
logger (added once per logger) sets the engine's "reported" marker on the
next record that logger writes in this thread, which the intake skips.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping, MutableMapping
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from ._common import exception_key, require

require("structlog", package="structlog", extra="structlog")

from smtp_alerts import get_engine  # noqa: E402 - after the check that names the extra

if TYPE_CHECKING:
    from smtp_alerts import Engine

__all__ = ["AlertProcessor"]

REPORTED = "__smtp_alerts_reported__"
"""The intake's marker (``smtp_alerts._engine.intake.REPORTED``): a record that
carries it was reported already and is not counted again."""

_LEVELS = {
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
    "exception": logging.ERROR,
    "error": logging.ERROR,
    "err": logging.ERROR,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "msg": logging.INFO,
    "debug": logging.DEBUG,
}

#: Keys structlog's own processors add, not the caller's context.
_NOT_CONTEXT = frozenset(
    {
        "event",
        "level",
        "logger",
        "logger_name",
        "timestamp",
        "exc_info",
        "exception",
        "stack",
        "stack_info",
        "positional_args",
        "_record",
        "_from_structlog",
        "alert_key",
        "alert_group",
        "alert_context",
    }
)
_SKIPPED_MODULES = ("structlog", "logging", "smtp_alerts")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


class AlertProcessor:
    """A structlog processor that raises events at ``level`` and above as alerts.

    It returns the event dict unchanged (the renderer after it sees it all,
    as it was), and never raises.

    Args:
        engine: the engine to report to; the process's default engine when omitted.
        level: the least severe level (``"error"``, ``"warning"``... or a number).
    """

    def __init__(self, engine: Engine | None = None, level: str | int = "error") -> None:
        self._engine = engine
        self._level = level if isinstance(level, int) else _LEVELS[level.lower()]
        self._pending = threading.local()
        self._marker = _MarkReported(self._pending)

    def __call__(
        self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """Report the event if it is severe enough; hand the event dict on unchanged."""
        level = _LEVELS.get(method_name) or _level_of(event_dict.get("level"))
        if level < self._level:
            return event_dict
        try:
            engine = self._engine if self._engine is not None else get_engine()
            engine.submit_record(self._record(logger, level, event_dict))
            if isinstance(logger, logging.Logger) and logger.isEnabledFor(level):
                self._mark_next(logger)
        except Exception:
            logging.getLogger("smtp_alerts.integrations").debug("structlog", exc_info=True)
        return event_dict

    def _mark_next(self, logger: logging.Logger) -> None:
        """Have the stdlib record this call writes next carry the "reported" marker."""
        if self._marker not in logger.filters:
            logger.addFilter(self._marker)
        self._pending.logger = logger

    def _record(
        self, logger: object, level: int, event_dict: Mapping[str, Any]
    ) -> logging.LogRecord:
        name = _logger_name(logger, event_dict)
        frame = _app_frame()
        event = event_dict.get("event")
        template = event if isinstance(event, str) else str(event)
        args = event_dict.get("positional_args") or None
        exc_info = _exc_info(event_dict.get("exc_info"))
        record = logging.LogRecord(
            name=name or (frame.f_globals.get("__name__", "structlog") if frame else "structlog"),
            level=level,
            pathname=frame.f_code.co_filename if frame else "<structlog>",
            lineno=frame.f_lineno if frame else 0,
            msg=template,
            args=args,
            exc_info=exc_info,
            func=frame.f_code.co_name if frame else None,
        )
        exception_text = event_dict.get("exception")
        if exc_info is None and isinstance(exception_text, str):
            record.exc_text = exception_text  # format_exc_info ran first: its text
        where = f"{record.name}: {template}"
        key = event_dict.get("alert_key")
        record.alert_key = key if key is not None else _key(where, exc_info)
        if event_dict.get("alert_group") is not None:
            record.alert_group = event_dict["alert_group"]
        record.alert_context = _context(event_dict)
        return record


class _MarkReported(logging.Filter):
    """On a stdlib logger: marks the record of an event the processor has just reported."""

    def __init__(self, pending: threading.local) -> None:
        super().__init__()
        self._pending = pending

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(self._pending, "logger", None) is not None:
            self._pending.logger = None
            setattr(record, REPORTED, True)
        return True


def _key(where: str, exc_info: ExcInfo | None) -> str:
    return where if exc_info is None else exception_key(where, exc_info[1])


def _level_of(value: object) -> int:
    if isinstance(value, int):
        return value
    return _LEVELS.get(str(value).lower(), logging.NOTSET) if value is not None else 0


def _logger_name(logger: object, event_dict: Mapping[str, Any]) -> str | None:
    for key in ("logger", "logger_name"):
        value = event_dict.get(key)
        if isinstance(value, str) and value:
            return value
    name = getattr(logger, "name", None)
    return name if isinstance(name, str) and name else None


def _app_frame() -> FrameType | None:
    """The caller's frame: the first one outside structlog, logging and smtp_alerts."""
    frame: FrameType | None = sys._getframe(1)  # noqa: SLF001 - as structlog finds it too
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith(
        _SKIPPED_MODULES
    ):
        frame = frame.f_back
    return frame


def _exc_info(value: object) -> ExcInfo | None:
    """``exc_info`` as structlog takes it: True (the one being handled), an exception, a tuple."""
    if value is True:
        current = sys.exc_info()
        return current if current[1] is not None else None
    if isinstance(value, BaseException):
        return type(value), value, value.__traceback__
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException):
        return value
    return None


def _context(event_dict: Mapping[str, Any]) -> dict[str, object]:
    shown = {key: value for key, value in event_dict.items() if key not in _NOT_CONTEXT}
    given = event_dict.get("alert_context")
    if isinstance(given, Mapping):
        shown.update(given)
    return shown
