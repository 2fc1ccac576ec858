"""The loguru sink: loguru records become alerts, one problem per call site.

``smtp_alerts.integrations.loguru.install()`` adds a sink to ``loguru.logger``.
Each record at ``level`` or above reaches the engine as a log record with its
logger name (``record["name"]``), level, call site (``record["file"].path``,
line, function), exception (``record["exception"]``, traceback formatted once,
by us) and ``record["extra"]`` as the scrubbed context table.

Why the call site decides: loguru formats ``"login failed for {}"`` before any
sink runs and keeps no template in the record, so the formatted text of five
user names is five texts. Like text formatted before a ``logging`` call
(DESIGN section 4), the call site then names the problem: one problem per
line of code (and per exception type and innermost frame when there is one).
``logger.bind(alert_key=..., alert_group=...)`` overrides it as ``extra`` does
in ``logging``.

Why a filter and not the sink: loguru formats the exception (with variable
values when ``diagnose=True``) for every sink before calling it; a filter runs
before that. The record is taken in the filter, which then says no, so the
sink itself never runs and loguru formats nothing for it.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._common import require

require("loguru", package="loguru", extra="loguru")

from loguru import logger as _loguru_logger  # noqa: E402 - after the check that names the extra

from smtp_alerts import get_engine  # noqa: E402

if TYPE_CHECKING:
    from loguru import Message, Record

    from smtp_alerts import Engine

__all__ = ["install", "to_log_record", "uninstall"]

#: Keys of ``extra`` that steer the alert instead of being shown (as in ``logging``).
_STEERING = ("alert_key", "alert_group", "alert_context")

# id(engine) -> (the engine, weakly; loguru's handler id): one sink per engine.
_installed: dict[int, tuple[weakref.ref[Engine], int]] = {}
_lock = threading.Lock()


def install(engine: Engine | None = None, level: str | int = "ERROR") -> int:
    """Send loguru records at ``level`` and above to ``engine``; returns loguru's handler id.

    A second call for the same engine returns the first call's id (one sink
    per engine); :func:`uninstall` takes it off.

    Args:
        engine: the engine to report to; the process's default engine when omitted.
        level: the least severe loguru level (a name or a number).

    Raises:
        ConfigurationError: no engine given and the ``SMTP_ALERTS_*`` settings are wrong.
    """
    target = engine if engine is not None else get_engine()
    with _lock:
        existing = _installed.get(id(target))
        if existing is not None and existing[0]() is target:
            return existing[1]
        submit = target.submit_record

        def take(record: Record) -> bool:
            try:
                submit(to_log_record(record))
            except Exception:
                logging.getLogger("smtp_alerts.integrations").debug("loguru", exc_info=True)
            return False  # the sink itself never runs: nothing for loguru to format

        handler_id = _loguru_logger.add(
            _never_called,
            level=level,
            filter=take,
            format="{message}",
            backtrace=False,
            diagnose=False,  # never variable values in a traceback (secrets)
            catch=True,
        )
        _installed[id(target)] = (weakref.ref(target), handler_id)
        return handler_id


def uninstall(engine: Engine | None = None) -> None:
    """Take the sink :func:`install` added for ``engine`` (the default engine) off loguru."""
    target = engine if engine is not None else get_engine()
    with _lock:
        existing = _installed.pop(id(target), None)
    if existing is not None and existing[0]() is target:
        _loguru_logger.remove(existing[1])


def _never_called(message: Message) -> None:
    """The sink loguru requires; the filter takes every record first and returns False."""


def to_log_record(record: Record) -> logging.LogRecord:
    """A loguru record as a :class:`logging.LogRecord` keyed by its call site.

    The message is the formatted text, passed as the one argument of a fixed
    ``"%s"`` template: the template is what the engine keys on, so every
    record of one call site is one problem, and a repeat costs a look-up.
    """
    exception = record["exception"]
    exc_info = None
    if exception is not None and exception.type is not None:
        exc_info = (exception.type, exception.value, exception.traceback)
    log_record = logging.LogRecord(
        name=record["name"] or "loguru",
        level=record["level"].no,
        pathname=record["file"].path,
        lineno=record["line"],
        msg="%s",
        args=(record["message"],),
        exc_info=exc_info,  # type: ignore[arg-type]
        func=record["function"],
    )
    log_record.created = record["time"].timestamp()
    extra: Mapping[str, Any] = record["extra"]
    if extra:
        for name in ("alert_key", "alert_group"):
            if name in extra:
                setattr(log_record, name, extra[name])
        shown = {k: v for k, v in extra.items() if k not in _STEERING}
        given = extra.get("alert_context")
        if isinstance(given, Mapping):
            shown.update(given)
        if shown:
            log_record.alert_context = shown
    return log_record
