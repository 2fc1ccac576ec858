"""What happens when the spool is full: the oldest entries are merged, never dropped.

Past ``max_entries``, the oldest entries that no live owner is attempting are
replaced by one summary entry that names them. The summary comes from the
configured summarizer (the engine renders one email listing them), or, when
there is none or it fails, from :func:`_default_summary`: a plain-text message
listing each merged digest's title and when it was first spooled. A summary
merged again is flattened into the new one (see :data:`SUMMARY_HEADER`), so one
list always names every digest it stands for.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from smtp_alerts._delivery.serialize import MessageRow, message_from_row, message_to_row
from smtp_alerts._util.humanize import format_time
from smtp_alerts.models import EMAIL_POLICY, OutgoingMessage

from .claims import Claimant, LivenessCache

__all__ = ["SUMMARY_HEADER", "Summarizer", "merge_oldest"]

MAX_TO_RECIPIENTS = 100  # as in the renderer: more go undisclosed
SUMMARY_HEADER = "X-Smtp-Alerts-Merged"
"""Set on a default summary to how many digests it stands for, so merging it again counts them."""

Summarizer = Callable[[list[OutgoingMessage]], OutgoingMessage]
"""Turns the messages to merge, oldest first, into one."""

_Merged = tuple[int, float, float, OutgoingMessage]
"""An entry taken into a summary: id, created, next attempt, message."""


def merge_oldest(
    conn: sqlite3.Connection,
    claimant: Claimant,
    *,
    max_entries: int,
    summarize: Summarizer | None,
    now: float,
) -> None:
    """Bring the spool back to ``max_entries``: merge the oldest unclaimed entries into one.

    Runs inside the caller's transaction. Does nothing while fewer than two
    entries could be merged (the others are all being attempted).
    """
    (count,) = conn.execute("SELECT COUNT(*) FROM entries").fetchone()
    if count <= max_entries:
        return
    # Removing n entries and adding one summary leaves count - n + 1.
    rows = _oldest_unclaimed(conn, claimant, count - max_entries + 1, now)
    if len(rows) < 2:
        return  # nothing to merge yet: every old entry is being attempted
    conn.executemany("DELETE FROM entries WHERE id = ?", [(r[0],) for r in rows])
    summary, row = _summary(conn, summarize, [(r[1], r[3]) for r in rows], now)
    conn.execute(
        "INSERT INTO entries (message_id, title, created, next_attempt, size, meta,"
        " email) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            summary.message_id,
            summary.title,
            min(created for _, created, _, _ in rows),  # the oldest's time
            min(next_attempt for _, _, next_attempt, _ in rows),
            len(row.email),
            json.dumps(row.meta),
            row.email,
        ),
    )


def _oldest_unclaimed(
    conn: sqlite3.Connection, claimant: Claimant, wanted: int, now: float
) -> list[_Merged]:
    """Up to ``wanted`` of the oldest entries that may be merged, with their messages."""
    cache: LivenessCache = {}
    candidates = conn.execute(
        "SELECT id, created, next_attempt, owner, claimed_at FROM entries ORDER BY created, id"
    ).fetchall()
    rows: list[_Merged] = []
    for entry_id, created, next_attempt, owner, claimed_at in candidates:
        if len(rows) == wanted:
            break
        if not claimant.may_take(owner, claimed_at, now, cache):
            continue  # being attempted: it may be delivered any moment
        meta, data = conn.execute(
            "SELECT meta, email FROM entries WHERE id = ?", (entry_id,)
        ).fetchone()
        try:
            message = message_from_row(json.loads(meta), data)
        except ValueError:
            continue  # unreadable here; left alone for a version that can
        rows.append((entry_id, created, next_attempt, message))
    return rows


def _summary(
    conn: sqlite3.Connection,
    summarize: Summarizer | None,
    merged: list[tuple[float, OutgoingMessage]],
    now: float,
) -> tuple[OutgoingMessage, MessageRow]:
    """The summary of the merged messages (oldest first), ready to insert."""
    problem = None
    if summarize is not None:
        try:
            summary = summarize([message for _, message in merged])
            row = message_to_row(summary)
        except Exception as exc:  # noqa: BLE001 - a broken summarizer must not lose the entries
            problem = f"{type(exc).__name__}: {exc}"
        else:
            clash = conn.execute(
                "SELECT 1 FROM entries WHERE message_id = ?", (summary.message_id,)
            ).fetchone()
            if clash is None:
                return summary, row
            problem = f"its Message-ID {summary.message_id} is already in the spool"
    summary = _default_summary(merged, now, problem)
    return summary, message_to_row(summary)


def _merged_count(message: OutgoingMessage) -> int:
    """How many digests a message stands for: more than one for an earlier summary."""
    value = message.email.get(SUMMARY_HEADER, "")
    return int(value) if value.isdigit() else 1


def _default_summary(
    merged: list[tuple[float, OutgoingMessage]], now: float, problem: str | None = None
) -> OutgoingMessage:
    """A plain-text message listing merged messages; used when no summarizer is given."""
    first = merged[0][1]
    items: list[str] = []
    count = 0
    for created, message in merged:
        if _merged_count(message) > 1:
            # An earlier summary: list what it listed, so one flat list names them all.
            items += [line for line in message.summary.splitlines() if line.startswith("- ")]
        else:
            items.append(f"- {format_time(created)}  {' '.join(message.title.split())}")
        count += _merged_count(message)
    title = f"{count} undelivered alert digests merged"
    lines = [
        f"The alert spool was full: these {count} digests could not be delivered in time",
        "and were merged into this message. Times are when each was first spooled.",
        "",
    ]
    if problem:
        lines += [f"(The configured summarizer failed: {problem})", ""]
    text = "\n".join([*lines, *items]) + "\n"
    domain = first.sender.rpartition("@")[2] or "smtp-alerts.invalid"
    message_id = make_msgid("spool-summary", domain=domain)
    return OutgoingMessage(
        message_id=message_id,
        email=_summary_email(first, title, text, now=now, message_id=message_id, count=count),
        sender=first.sender,
        recipients=first.recipients,
        title=title,
        summary=text,
        digest=None,
    )


def _summary_email(
    first: OutgoingMessage, title: str, text: str, *, now: float, message_id: str, count: int
) -> EmailMessage:
    """The default summary's email, to the first merged message's recipients."""
    msg = EmailMessage(policy=EMAIL_POLICY)
    msg["From"] = first.sender
    many = len(first.recipients) > MAX_TO_RECIPIENTS
    msg["To"] = "undisclosed-recipients:;" if many else ", ".join(first.recipients)
    msg["Subject"] = title
    msg["Date"] = format_datetime(datetime.fromtimestamp(now, tz=timezone.utc))
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg[SUMMARY_HEADER] = str(count)
    msg.set_content(text, subtype="plain", charset="utf-8")
    return msg
