"""Fingerprinting and capture of log records, in the caller's thread.

Two costs, kept apart on purpose:

- :func:`record_key` runs for every record. It builds a tuple from fields the
  record already has (no formatting, no traceback rendering) so the engine can
  recognise a repeat of a known problem and only count it.
- :func:`capture_record` runs once per new problem. It formats the message and
  the traceback while the record's arguments and frames are still as they were,
  and computes the canonical fingerprint of docs/architecture.md: logger name,
  level, call site, message template, exception type and innermost frame.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Hashable
from types import TracebackType

from ..models import Alert, Fingerprint

__all__ = [
    "capture_record",
    "exception_type_name",
    "format_exception",
    "innermost_frame",
    "mask_variable_parts",
    "message_template",
    "record_fingerprint",
    "record_key",
]

# A message logged pre-formatted (an f-string, ``"..." % x`` at the call site)
# has no template of its own; masking the parts that change between
# occurrences (numbers, hex ids) recovers one, so "user 17 failed" and
# "user 42 failed" are one problem, not a flood of distinct ones.
_VARIABLE_PARTS = re.compile(r"0x[0-9a-fA-F]+|\b[0-9a-fA-F]{8,}\b|\d+")
_MAX_TEMPLATE = 500


def record_key(record: logging.LogRecord) -> Hashable:
    """A cheap key that is equal for repeats of the same problem at the same call site.

    Args:
        record: the log record.

    Returns:
        A hashable tuple. Not stable across processes; see :func:`capture_record`
        for the canonical fingerprint.
    """
    msg = record.msg
    if msg.__class__ is not str:
        msg = _non_str_template(msg)
    exc_info = record.exc_info
    if exc_info and exc_info[0] is not None:
        tb = exc_info[2]
        if tb is None:
            return (record.name, record.levelno, record.pathname, record.lineno, msg, exc_info[0])
        while tb.tb_next is not None:
            tb = tb.tb_next
        return (
            record.name,
            record.levelno,
            record.pathname,
            record.lineno,
            msg,
            exc_info[0],
            tb.tb_frame.f_code.co_filename,
            tb.tb_lineno,
        )
    return (record.name, record.levelno, record.pathname, record.lineno, msg)


def _non_str_template(msg: object) -> str:
    # A dict or an exception passed as the message: its type is the stable part.
    return f"<{type(msg).__qualname__}>"


def message_template(record: logging.LogRecord) -> tuple[str, bool]:
    """The record's message template, and whether it had to be inferred.

    Returns:
        ``(template, inferred)``: ``record.msg`` when the record has arguments
        (or is not a string), else the message with numbers and hex ids masked.
    """
    msg = record.msg
    if msg.__class__ is not str:
        return _non_str_template(msg), False
    template = str(msg)[:_MAX_TEMPLATE]
    if record.args:
        return template, False
    masked = mask_variable_parts(template)
    return masked, masked != template


def mask_variable_parts(text: str) -> str:
    """``text`` with numbers and hex ids replaced by ``#``, capped in length."""
    return _VARIABLE_PARTS.sub("#", text[:_MAX_TEMPLATE])


def exception_type_name(exc_type: type[BaseException]) -> str:
    """``KeyError`` for builtins, ``package.module.Error`` for the rest."""
    module = exc_type.__module__
    if module in ("builtins", "__main__"):
        return exc_type.__qualname__
    return f"{module}.{exc_type.__qualname__}"


def innermost_frame(tb: TracebackType | None) -> tuple[str, int] | None:
    """The file and line where the exception was raised, if there is a traceback."""
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename, tb.tb_lineno


def record_fingerprint(record: logging.LogRecord) -> tuple[Fingerprint, bool]:
    """The canonical fingerprint of a record's problem (docs/architecture.md).

    Cheap enough for the slow path (no message or traceback formatting): logger
    name, level, call site, message template, and for an exception its type and
    innermost frame. Stable across processes.

    Returns:
        ``(fingerprint, inferred)``: ``inferred`` is True when the template was
        inferred from a pre-formatted message, so the record's own
        :func:`record_key` is not worth remembering.
    """
    template, inferred = message_template(record)
    parts: list[Hashable] = [record.name, record.levelno, record.pathname, record.lineno, template]
    exc_info = record.exc_info
    if exc_info is not None and exc_info[0] is not None:
        parts += [exception_type_name(exc_info[0]), innermost_frame(exc_info[2])]
    return tuple(parts), inferred


def capture_record(
    record: logging.LogRecord, fingerprint: Fingerprint, *, group: str = "default"
) -> Alert:
    """Capture everything a digest shows about a record's problem.

    Args:
        record: the log record of a new problem.
        fingerprint: its canonical fingerprint, from :func:`record_fingerprint`.
        group: the notification group it belongs to.

    Returns:
        The captured :class:`~smtp_alerts.models.Alert`.
    """
    exc_type_name = None
    tb_text = None
    exc_info = record.exc_info
    if exc_info is not None and exc_info[0] is not None:
        exc_type_name = exception_type_name(exc_info[0])
        tb_text = format_exception(exc_info[0], exc_info[1], exc_info[2])
    elif record.exc_text:
        tb_text = record.exc_text
    if record.stack_info:
        tb_text = f"{tb_text}\n{record.stack_info}" if tb_text else record.stack_info
    return Alert(
        fingerprint=fingerprint,
        level=record.levelno,
        logger=record.name,
        message=_format_message(record),
        created=record.created,
        source="log",
        location=f"{record.pathname}:{record.lineno} in {record.funcName}",
        exc_type=exc_type_name,
        traceback=tb_text,
        group=group,
    )


def _format_message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception as exc:  # noqa: BLE001 - a bad format string must still alert
        return f"{record.msg!r} % {record.args!r} (message formatting failed: {exc!r})"


def format_exception(
    exc_type: type[BaseException], exc: BaseException | None, tb: TracebackType | None
) -> str:
    """The formatted traceback; never raises, even for an exception with a broken __str__."""
    try:
        return "".join(traceback.format_exception(exc_type, exc, tb)).rstrip("\n")
    except Exception as error:  # noqa: BLE001 - a broken __str__ must not lose the alert
        return f"{exc_type.__name__} (traceback formatting failed: {error!r})"
