"""Lossless conversion of digests and rendered messages to JSON-able data.

The spool stores what it must deliver after a crash or a restart, possibly in a
newer version of the library, so everything written here carries a format
version (``"v"``) and every reader checks it.

* :func:`digest_to_dict` / :func:`digest_from_dict`: a :class:`Digest` with its
  problems and alerts as a JSON-able ``dict``. Fingerprints become nested lists
  and come back as nested tuples.
* :func:`message_to_row` / :func:`message_from_row`: an :class:`OutgoingMessage`
  as a :class:`MessageRow`, the email's exact bytes (serialised with the message's
  own policy) apart from a JSON-able ``dict`` of everything else, so a database
  keeps the bytes in a BLOB instead of inflating them by a third in base64.

Round trips are exact (the digest compares equal, the email's bytes are the
same, and so are the other fields) for every digest within
:data:`DIGEST_TEXT_MAX_CHARS` of log text; a larger one keeps its counts and
the text of its first problems, and says where text was cut. Conversion never
raises for what a digest may hold: a fingerprint part of a type JSON cannot
keep apart (an ``IntEnum``, a list) is stored as its base value or as a
string that names it, so that problem's identity changes but the digest is
kept; lone surrogates survive (``json.dumps`` escapes them).
"""

from __future__ import annotations

import email
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any, NamedTuple

from smtp_alerts._util.printable import clip_head, clip_tail, printable_repr
from smtp_alerts.models import EMAIL_POLICY, Alert, Digest, Fingerprint, OutgoingMessage, Problem

__all__ = [
    "DIGEST_TEXT_MAX_CHARS",
    "FORMAT_VERSION",
    "MessageRow",
    "alert_from_dict",
    "alert_to_dict",
    "digest_from_dict",
    "digest_to_dict",
    "message_from_row",
    "message_to_row",
]

FORMAT_VERSION = 1
"""The version written in every ``dict`` this module produces, under ``"v"``."""

DIGEST_TEXT_MAX_CHARS = 1_000_000
"""Most log text (messages, tracebacks, contexts) one stored digest keeps in full.

Capture bounds each problem (about 20 KB); this bounds a digest of thousands
of problems. The problems come most severe first, as the email lists them, so
the fifty rows an email shows keep their text; past the budget a problem keeps
a short message and no traceback (each cut says so), and every count."""

_OVER_BUDGET_MESSAGE_CHARS = 200

_SCALARS = (str, int, float, bool, type(None))
"""The exact types a fingerprint may hold besides tuples: JSON keeps each one apart."""


class MessageRow(NamedTuple):
    """An :class:`OutgoingMessage` ready to be stored.

    Attributes:
        meta: JSON-able fields: ``v``, ``message_id``, ``sender``, ``recipients``,
            ``title``, ``summary`` and ``digest`` (a :func:`digest_to_dict` or None).
        email: the complete email as bytes, exactly as it goes on the wire.
    """

    meta: dict[str, Any]
    email: bytes


# --- fingerprints -------------------------------------------------------------------------


def _encode_fingerprint(value: object) -> object:
    # Exact types come back exactly. A subclass (an IntEnum, a str subclass) comes
    # back as its base type, equal but with another repr, hence another
    # fingerprint_id; anything else as a string naming it. Capture makes neither,
    # but a digest must never be lost over its fingerprint.
    if isinstance(value, tuple):
        return [_encode_fingerprint(item) for item in value]
    if type(value) in _SCALARS:
        return value
    return _base_scalar(value)


def _base_scalar(value: object) -> object:
    # The base type's own conversion: no method of the subclass runs.
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    return f"<{type(value).__qualname__}: {printable_repr(value)}>"


def _decode_fingerprint(value: object) -> Any:
    # A fingerprint is hashable, so it never holds a list: every list was a tuple.
    if isinstance(value, list):
        return tuple(_decode_fingerprint(item) for item in value)
    return value


# --- digests ------------------------------------------------------------------------------


def _check_version(data: Mapping[str, Any], what: str) -> None:
    version = data.get("v")
    if type(version) is not int:  # a bool is no version either
        raise ValueError(f"not a serialised {what}: no format version")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"this {what} was written in format {version} by a newer smtp-alerts; "
            f"this version reads format {FORMAT_VERSION} and older"
        )


def _alert_to_dict(alert: Alert, *, full_text: bool = True) -> dict[str, Any]:
    message, traceback = alert.message, alert.traceback
    if not full_text:
        message = clip_head(message, _OVER_BUDGET_MESSAGE_CHARS)
        traceback = clip_tail(traceback, 0) if traceback else traceback
    return {
        "fingerprint": _encode_fingerprint(alert.fingerprint),
        "level": alert.level,
        "logger": alert.logger,
        "message": message,
        "created": alert.created,
        "source": alert.source,
        "location": alert.location,
        "exc_type": alert.exc_type,
        "traceback": traceback,
        "group": alert.group,
        "context": [list(item) for item in alert.context],
    }


def _text_size(alert: Alert) -> int:
    context = sum(len(key) + len(value) for key, value in alert.context)
    return len(alert.message) + len(alert.traceback or "") + context


def _alert_from_dict(data: Mapping[str, Any]) -> Alert:
    fingerprint: Fingerprint = _decode_fingerprint(data["fingerprint"])
    if not isinstance(fingerprint, tuple):
        raise TypeError(f"a fingerprint is a list, not {type(data['fingerprint']).__name__}")
    return Alert(
        fingerprint=fingerprint,
        level=data["level"],
        logger=data["logger"],
        message=data["message"],
        created=data["created"],
        source=data["source"],
        location=data["location"],
        exc_type=data["exc_type"],
        traceback=data["traceback"],
        group=data["group"],
        # Absent from rows written before contexts existed.
        context=tuple((str(key), str(value)) for key, value in data.get("context", ())),
    )


def alert_to_dict(alert: Alert) -> dict[str, Any]:
    """Convert one alert to JSON-able data (with the format version), losslessly."""
    data = _alert_to_dict(alert)
    data["v"] = FORMAT_VERSION
    return data


def alert_from_dict(data: Mapping[str, Any]) -> Alert:
    """The alert that :func:`alert_to_dict` made.

    Raises:
        ValueError: the data is from a newer format, or not an alert.
    """
    _check_version(data, "alert")
    return _alert_from_dict(data)


def _problem_to_dict(problem: Problem, *, full_text: bool = True) -> dict[str, Any]:
    last_message = problem.last_message
    if not full_text:
        last_message = clip_head(last_message, _OVER_BUDGET_MESSAGE_CHARS)
    return {
        "alert": _alert_to_dict(problem.alert, full_text=full_text),
        "count": problem.count,
        "total": problem.total,
        "first_seen": problem.first_seen,
        "last_seen": problem.last_seen,
        "is_new": problem.is_new,
        "timeline": list(problem.timeline),
        "last_message": last_message,
    }


def _problem_from_dict(data: Mapping[str, Any]) -> Problem:
    return Problem(
        alert=_alert_from_dict(data["alert"]),
        count=data["count"],
        total=data["total"],
        first_seen=data["first_seen"],
        last_seen=data["last_seen"],
        is_new=data["is_new"],
        # Both absent from rows written before timelines existed.
        timeline=tuple(int(count) for count in data.get("timeline", ())),
        last_message=str(data.get("last_message", "")),
    )


def _problems_to_list(problems: tuple[Problem, ...]) -> list[dict[str, Any]]:
    """The problems, in full while the digest's text budget lasts (DIGEST_TEXT_MAX_CHARS)."""
    out, used = [], 0
    for problem in problems:
        used += _text_size(problem.alert) + len(problem.last_message)
        out.append(_problem_to_dict(problem, full_text=used <= DIGEST_TEXT_MAX_CHARS))
    return out


def digest_to_dict(digest: Digest) -> dict[str, Any]:
    """Convert a digest to JSON-able data.

    Args:
        digest: the digest, with its problems and their alerts.

    Returns:
        A ``dict`` of JSON types only, with ``"v"`` set to :data:`FORMAT_VERSION`.

    """
    return {
        "v": FORMAT_VERSION,
        "group": digest.group,
        "incident_id": digest.incident_id,
        "sequence": digest.sequence,
        "problems": _problems_to_list(digest.problems),
        "created": digest.created,
        "reason": digest.reason,
        "dropped": digest.dropped,
        "notices": list(digest.notices),
        "thread_subject": digest.thread_subject,
        "timeline_start": digest.timeline_start,
        "timeline_step": digest.timeline_step,
    }


def digest_from_dict(data: Mapping[str, Any]) -> Digest:
    """Rebuild a digest from :func:`digest_to_dict`'s output.

    Args:
        data: the converted digest, e.g. as read back from JSON.

    Returns:
        A digest equal to the one converted.

    Raises:
        ValueError: ``data`` is not a serialised digest, is damaged, or was written
            by a newer format.
    """
    _check_version(data, "digest")
    try:
        return Digest(
            group=data["group"],
            incident_id=data["incident_id"],
            sequence=data["sequence"],
            problems=tuple(_problem_from_dict(problem) for problem in data["problems"]),
            created=data["created"],
            reason=data["reason"],
            dropped=data["dropped"],
            notices=tuple(data["notices"]),
            thread_subject=data["thread_subject"],
            # Absent from rows written before timelines existed: no timeline.
            timeline_start=float(data.get("timeline_start", 0.0)),
            timeline_step=float(data.get("timeline_step", 0.0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"damaged serialised digest: {exc!r}") from exc


# --- messages -----------------------------------------------------------------------------


def message_to_row(message: OutgoingMessage) -> MessageRow:
    """Split a rendered message into its email bytes and JSON-able fields.

    Args:
        message: the message to store.

    Returns:
        The row: :attr:`MessageRow.email` comes from ``message.email.as_bytes()``
        (the message's own policy, hence CRLF line ends as on the wire).
    """
    meta: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "message_id": message.message_id,
        "sender": message.sender,
        "recipients": list(message.recipients),
        "title": message.title,
        "summary": message.summary,
        "digest": digest_to_dict(message.digest) if message.digest is not None else None,
    }
    return MessageRow(meta=meta, email=message.email.as_bytes())


def message_from_row(meta: Mapping[str, Any], data: bytes) -> OutgoingMessage:
    """Rebuild a message from :func:`message_to_row`'s output.

    Args:
        meta: :attr:`MessageRow.meta`, e.g. as read back from JSON.
        data: :attr:`MessageRow.email`.

    Returns:
        The message; its email is parsed with the policy it was built with
        (:data:`~smtp_alerts.models.EMAIL_POLICY`), so it serialises back to
        the same bytes.

    Raises:
        ValueError: ``meta`` is not a serialised message, is damaged, or was
            written by a newer format.
    """
    _check_version(meta, "message")
    parsed = email.message_from_bytes(data, policy=EMAIL_POLICY)
    if not isinstance(parsed, EmailMessage):  # pragma: no cover - the policy decides
        raise TypeError(f"EMAIL_POLICY parsed a {type(parsed).__name__}")
    digest = meta.get("digest")
    try:
        return OutgoingMessage(
            message_id=meta["message_id"],
            email=parsed,
            sender=meta["sender"],
            recipients=tuple(meta["recipients"]),
            title=meta["title"],
            summary=meta["summary"],
            digest=digest_from_dict(digest) if digest is not None else None,
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"damaged serialised message: {exc!r}") from exc
