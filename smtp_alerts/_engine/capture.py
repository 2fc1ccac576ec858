"""Fingerprinting and capture of log records, in the caller's thread.

Two costs, kept apart on purpose:

- :func:`record_key` runs for every record. It builds a tuple from fields the
  record already has (no formatting, no traceback rendering) so the engine can
  recognise a repeat of a known problem and only count it.
- :func:`capture_record` runs once per new problem. It formats the message
  while the record's arguments are still as they were, and snapshots the
  exception (its text and its frames' names and lines, but not their source
  lines) into a :class:`PendingAlert`, whose traceback the engine's thread
  formats later (:meth:`PendingAlert.finish`): no source file is read in the
  caller's thread. The canonical fingerprint of docs/architecture.md: logger
  name, level, call site, message template, exception type and innermost frame.
  What it keeps is safe text, bounded in size (see :data:`MESSAGE_MAX_CHARS`):
  odd input (a failing ``__str__``, lone surrogates, an ``IntEnum`` level)
  degrades the one field it is in and never fails the capture.

A record's ``extra`` may carry ``alert_group`` (its own incident),
``alert_key`` (replaces the fingerprint) and ``alert_context`` (a mapping
shown in the email, scrubbed of secrets by :func:`scrub_context`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Hashable
from dataclasses import replace
from types import TracebackType
from typing import SupportsInt, cast

from .._util.printable import clip_tail, escape_surrogates, printable, printable_repr
from .._util.scrub import CONTEXT_MAX_ITEMS, CONTEXT_VALUE_MAX_CHARS, scrub_context
from .._util.source_paths import portable_path
from ..models import Alert, Fingerprint
from .snapshot import Snapshot, exception_type_name, format_snapshot, snapshot

__all__ = [
    "CONTEXT_MAX_ITEMS",
    "CONTEXT_VALUE_MAX_CHARS",
    "DEFAULT_GROUP",
    "MESSAGE_MAX_CHARS",
    "TEMPLATE_MAX_CHARS",
    "TRACEBACK_MAX_CHARS",
    "Light",
    "PendingAlert",
    "capture_failed",
    "capture_light",
    "capture_record",
    "clip_traceback",
    "exception_type_name",
    "innermost_frame",
    "mask_variable_parts",
    "message_template",
    "record_fingerprint",
    "record_identity",
    "record_key",
    "record_site",
    "scrub_context",
    "shape_matches",
    "snapshot",
    "template_shape",
]

DEFAULT_GROUP = "default"
"""The group of an alert that names none."""

# What a problem keeps is bounded at capture, before anything is stored: the
# aggregator holds up to 10,000 samples and the spool keeps them, so a 10 MB
# message must cost kilobytes, not megabytes. The bounds are twice what the
# loosest email shows (2,000 message characters, 8,192 of a traceback), so
# the email never misses text it would have shown, and other channels and a
# later, looser renderer still have some room.
MESSAGE_MAX_CHARS = 4_096
"""Longest message kept per problem; the start is kept, the rest is counted."""

LIGHT_MESSAGE_MAX_CHARS = 500
"""Longest message kept of a problem captured when its incident is full."""

TRACEBACK_MAX_CHARS = 16_384
"""Longest traceback (or details) kept per problem; the end is kept, where the
exception and the innermost frames are."""

# A message logged pre-formatted (an f-string, ``"..." % x`` at the call site)
# has no template of its own; masking the parts that change between
# occurrences (numbers, hex ids) recovers one, so "user 17 failed" and
# "user 42 failed" are one problem, not a flood of distinct ones.
# The lookahead changes no match (every branch starts with a hex digit); it
# lets the regex skip most positions at once: a third of the cost per text.
_VARIABLE_PARTS = re.compile(r"(?=[0-9a-fA-F])(?:0x[0-9a-fA-F]+|\b[0-9a-fA-F]{8,}\b|\d+)")
TEMPLATE_MAX_CHARS = 500
"""Longest message template kept in a fingerprint."""


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
    key: Hashable
    if exc_info and exc_info[0] is not None:
        tb = exc_info[2]
        if tb is None:
            key = (record.name, record.levelno, record.pathname, record.lineno, msg, exc_info[0])
        else:
            while tb.tb_next is not None:
                tb = tb.tb_next
            key = (
                record.name,
                record.levelno,
                record.pathname,
                record.lineno,
                msg,
                exc_info[0],
                tb.tb_frame.f_code.co_filename,
                tb.tb_lineno,
            )
    else:
        key = (record.name, record.levelno, record.pathname, record.lineno, msg)
    # A group or a key makes another problem of the same call site; records
    # without them (nearly all) pay two attribute look-ups and no more.
    group = getattr(record, "alert_group", None)
    alert_key = getattr(record, "alert_key", None)
    if group is not None or alert_key is not None:
        return (key, _hashable(group), _hashable(alert_key))
    return key


def record_site(raw_key: Hashable) -> Hashable:
    """The call site of a :func:`record_key`: the same key without the message.

    Records logged with their text formatted before the call (an f-string)
    have a new record key each time; their call site is the cheap key under
    which the intake remembers the shapes of text that site logs.
    """
    key = cast("tuple[Hashable, ...]", raw_key)
    inner = key[0]
    if inner.__class__ is tuple:  # (key, group, alert_key): see record_key
        inner_key = cast("tuple[Hashable, ...]", inner)
        return (inner_key[:4] + inner_key[5:], *key[1:])
    return key[:4] + key[5:]


def template_shape(template: str) -> tuple[str, ...]:
    """The fixed pieces of a masked template, around its ``#`` variable parts."""
    return tuple(template.split("#"))


def shape_matches(text: str, pieces: tuple[str, ...]) -> bool:
    """Whether ``text`` has the fixed ``pieces`` of a template in order, around its variable parts.

    The intake's cheap test that an f-string's text has the shape of one
    already masked at the same call site (each ``#`` stands for one or more
    characters), so the masking regex runs once per shape, not per record.
    ``text`` is compared as far as templates go (:data:`TEMPLATE_MAX_CHARS`).
    """
    if len(text) > TEMPLATE_MAX_CHARS:
        text = text[:TEMPLATE_MAX_CHARS]
    first = pieces[0]
    if len(pieces) == 1:
        return text == first
    last = pieces[-1]
    if not (text.startswith(first) and text.endswith(last)):
        return False
    position = len(first)
    end = len(text) - len(last)
    for piece in pieces[1:-1]:
        found = text.find(piece, position + 1, end - 1) if piece else position + 1
        if found < 0:
            return False
        position = found + len(piece)
    return end - position >= 1


def _hashable(value: object) -> Hashable:
    return value if value is None or value.__class__ is str else printable(value, 200)


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
    template = str(msg)[:TEMPLATE_MAX_CHARS]
    if record.args:
        return template, False
    masked = mask_variable_parts(template)
    return masked, masked != template


def mask_variable_parts(text: str) -> str:
    """``text`` with numbers and hex ids replaced by ``#``, capped in length."""
    return _VARIABLE_PARTS.sub("#", text[:TEMPLATE_MAX_CHARS])


def innermost_frame(tb: TracebackType | None) -> tuple[str, int] | None:
    """The file (as :func:`~smtp_alerts._util.source_paths.portable_path` has it) and
    line where the exception was raised, if there is a traceback."""
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return portable_path(tb.tb_frame.f_code.co_filename), tb.tb_lineno


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
    fingerprint, inferred, _ = record_identity(record)
    return fingerprint, inferred


def record_identity(record: logging.LogRecord) -> tuple[Fingerprint, bool, str]:
    """:func:`record_fingerprint`, and the record's group (:func:`record_group`) with it.

    The intake's way to a new problem: each part is read once, and the
    common case (plain ASCII text, int levels) costs no call per part.
    """
    group = record_group(record)
    alert_key = getattr(record, "alert_key", None)
    if alert_key is not None:
        return key_fingerprint(printable(alert_key, 500), group), False, group
    msg = record.msg
    if msg.__class__ is str and record.args:  # a template and its arguments: most records
        template, inferred = msg[:TEMPLATE_MAX_CHARS], False
    else:
        template, inferred = message_template(record)
    name, level, line = record.name, record.levelno, record.lineno
    fingerprint: Fingerprint = (
        name if name.__class__ is str and name.isascii() else printable(name),
        level if level.__class__ is int else _level(level),
        _call_site_path(record.pathname),
        line if line.__class__ is int else _level(line),
        template if template.isascii() else escape_surrogates(template),
    )
    exc_info = record.exc_info
    if exc_info is not None and exc_info[0] is not None:
        fingerprint += (exception_type_name(exc_info[0]), innermost_frame(exc_info[2]))
    if group != DEFAULT_GROUP:
        fingerprint += ("group", group)  # a group is its own incident, so its own problem
    return fingerprint, inferred, group


_CALL_SITE_PATHS: dict[str, str] = {}


def _call_site_path(pathname: object) -> str:
    """A record's path as a fingerprint has it (portable and printable), cached per path."""
    if type(pathname) is not str:
        return printable(pathname)
    shown = _CALL_SITE_PATHS.get(pathname)
    if shown is None:
        if len(_CALL_SITE_PATHS) >= 10_000:
            _CALL_SITE_PATHS.clear()
        shown = _CALL_SITE_PATHS[pathname] = printable(portable_path(pathname))
    return shown


def _portable(pathname: object) -> object:
    return portable_path(pathname) if type(pathname) is str else pathname


def key_fingerprint(key: str, group: str) -> Fingerprint:
    """The fingerprint of an alert with an explicit key: the key (and group) alone."""
    return ("key", key) if group == DEFAULT_GROUP else ("key", key, "group", group)


def record_group(record: logging.LogRecord) -> str:
    """The group a record names in ``extra={"alert_group": ...}``, or the default one."""
    group = getattr(record, "alert_group", None)
    return DEFAULT_GROUP if group is None else printable(group, 200) or DEFAULT_GROUP


def _level(value: object) -> int:
    # An IntEnum level is an int with another repr: the fingerprint (and the
    # spool, which keeps exact types) wants the plain number.
    if type(value) is int:
        return value
    try:
        return int(cast("SupportsInt", value))
    except Exception:  # noqa: BLE001 - odd input degrades, never fails
        return 0


class PendingAlert:
    """A new problem captured in the caller's thread, its traceback still to be formatted.

    The caller's thread keeps what cannot wait (the exception's text and its
    frames' names and line numbers, as they were); reading source lines and
    formatting the traceback is left to the engine's thread (:meth:`finish`).

    Attributes:
        alert: the capture, without its traceback.
        error: the exception's snapshot, or None.
        stack: the record's ``stack_info``, already text, shown after the traceback.
        details: text shown before the traceback (``engine.alert(details=...)``).
    """

    __slots__ = ("alert", "details", "error", "stack")

    def __init__(
        self,
        alert: Alert,
        error: Snapshot | None,
        stack: str | None,
        details: str | None = None,
    ) -> None:
        self.alert = alert
        self.error = error
        self.stack = stack
        self.details = details

    def finish(self) -> Alert:
        """The alert with its traceback formatted (source lines read now); never raises."""
        text = None if self.error is None else _format(self.error, self.alert.exc_type)
        if self.details:
            text = f"{self.details}\n\n{text}" if text else self.details
        if self.stack:
            text = f"{text}\n{self.stack}" if text else self.stack
        return replace(self.alert, traceback=clip_traceback(text))


def _format(error: Snapshot, type_name: str | None) -> str:
    try:
        return format_snapshot(error)
    except Exception as failure:  # noqa: BLE001 - a traceback must not lose the alert
        return f"{type_name} (traceback formatting failed: {printable_repr(failure)})"


def capture_record(
    record: logging.LogRecord, fingerprint: Fingerprint, group: str | None = None
) -> Alert | PendingAlert:
    """Capture everything a digest shows about a record's problem.

    Every text is safe (see :mod:`smtp_alerts._util.printable`) and clipped.

    Args:
        record: the log record of a new problem.
        fingerprint: its canonical fingerprint, from :func:`record_fingerprint`.
        group: its group (:func:`record_group`), when read already.

    Returns:
        The captured :class:`~smtp_alerts.models.Alert`, or a :class:`PendingAlert`
        when it has a traceback or stack to format on the engine's thread.
    """
    exc_type_name = None
    error = None
    text = None
    exc_info = record.exc_info
    if exc_info is not None and exc_info[0] is not None:
        exc_type_name = exception_type_name(exc_info[0])
        error = snapshot(exc_info[0], exc_info[1], exc_info[2])
    elif record.exc_text:
        text = printable(record.exc_text)
    stack = printable(record.stack_info) if record.stack_info else None
    if error is None and stack is not None:
        text = f"{text}\n{stack}" if text else stack
    alert = Alert(
        fingerprint=fingerprint,
        level=_level(record.levelno),
        logger=printable(record.name, 500),
        message=format_message(record),
        created=record.created,
        source="log",
        # Where the call is, as a reader finds it in the project (a path
        # relative to the package or project root, as in the fingerprint).
        location=printable(
            f"{_portable(record.pathname)}:{record.lineno} in {record.funcName}", 1_000
        ),
        exc_type=exc_type_name,
        traceback=clip_traceback(text),
        group=record_group(record) if group is None else group,
        context=scrub_context(getattr(record, "alert_context", None)),
    )
    return alert if error is None else PendingAlert(alert, error, stack)


Light = tuple[Fingerprint, int, str, str, float, str, "str | None"]
"""A new problem captured lightly, as a plain tuple (cheaper than an :class:`Alert`):
fingerprint, level, logger, message, created, group and exception type."""


def capture_light(record: logging.LogRecord, fingerprint: Fingerprint, group: str) -> Light:
    """A new problem's capture when its incident is full: what its other-problems row shows.

    Its message's start, its logger, level and time; no traceback, location
    or context (the row shows a few examples, nothing more). ``group`` is
    the record's (:func:`record_group`), read with its fingerprint.
    """
    exc_info = record.exc_info
    return (
        fingerprint,
        _level(record.levelno),
        printable(record.name, 500),
        format_message(record, LIGHT_MESSAGE_MAX_CHARS),
        record.created,
        group,
        exception_type_name(exc_info[0]) if exc_info and exc_info[0] is not None else None,
    )


def capture_failed(record: logging.LogRecord, error: BaseException) -> Alert:
    """The alert for a record whose capture failed anyway: what little is safe to say.

    The last line of defence of "capture never raises": a bug of ours or an
    input nobody foresaw still makes an alert, under its logger and level.
    """
    logger = printable(getattr(record, "name", "?"), 500)
    return Alert(
        fingerprint=("capture-failed", logger, _level(getattr(record, "levelno", 0))),
        level=_level(getattr(record, "levelno", logging.ERROR)),
        logger=logger,
        message=f"<a record could not be captured: {printable_repr(error)}>",
        created=float(getattr(record, "created", 0.0) or 0.0),
        source="log",
        group=DEFAULT_GROUP,
    )


def format_message(record: logging.LogRecord, limit: int = MESSAGE_MAX_CHARS) -> str:
    """The record's message, clipped; a failing format or argument degrades and says so."""
    try:
        message = record.getMessage()
    except Exception as exc:  # noqa: BLE001 - a bad format string or argument must still alert
        args = record.args if isinstance(record.args, tuple) else (record.args,)
        shown = ", ".join(printable_repr(arg) for arg in args[:20])
        return printable(
            f"{printable(record.msg)} (message formatting failed: {printable_repr(exc)}; "
            f"arguments: {shown})",
            limit,
        )
    if message.__class__ is not str:  # pragma: no cover - getMessage returns str(msg)
        message = printable(message)
    return printable(message, limit)


def clip_traceback(text: str | None) -> str | None:
    """A traceback or details text, made safe and clipped to its end."""
    if text is None:
        return None
    return escape_surrogates(clip_tail(text, TRACEBACK_MAX_CHARS))
