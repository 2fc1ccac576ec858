"""One undelivered message as the spool reports it: :class:`SpoolEntry`, and its row.

The ``entries`` table's columns, apart from the message's own bytes and fields
(``meta`` and ``email``, see :mod:`smtp_alerts._delivery.serialize`), are what
an entry says about a message's life in the spool: when it came, how often it
failed, when it is due, and who is attempting it now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smtp_alerts.models import OutgoingMessage

__all__ = ["ENTRY_COLUMNS", "SpoolEntry", "entry_from_row"]

ENTRY_COLUMNS = "id, message_id, title, created, attempts, next_attempt, last_error, owner, size"
"""The columns :func:`entry_from_row` reads, in its order."""


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One undelivered message in the spool.

    Attributes:
        id: the row id, for :meth:`Spool.delivered` and :meth:`Spool.failed`.
        message_id: the message's Message-ID, unique in the spool.
        title: the message's one-line title.
        created: when it was first spooled, epoch seconds.
        attempts: failed attempts so far.
        next_attempt: when it is due, epoch seconds.
        last_error: what the last failed attempt said, if any.
        owner: the process attempting it now, if any (``host:pid:start-time:nonce``).
        size: the email's size in bytes.
        message: the message, when it was loaded (:meth:`Spool.claim_due`).
    """

    id: int
    message_id: str
    title: str
    created: float
    attempts: int
    next_attempt: float
    last_error: str | None
    owner: str | None
    size: int
    message: OutgoingMessage | None = None


def entry_from_row(fields: Any, message: OutgoingMessage | None) -> SpoolEntry:
    """An entry from the values of :data:`ENTRY_COLUMNS`, with its message if loaded."""
    entry_id, message_id, title, created, attempts, next_attempt, last_error, owner, size = fields
    return SpoolEntry(
        id=entry_id,
        message_id=message_id,
        title=title,
        created=created,
        attempts=attempts,
        next_attempt=next_attempt,
        last_error=last_error,
        owner=owner,
        size=size,
        message=message,
    )
