"""The delivery history: one row per attempt, and each engine's last counters.

The audit trail behind ``smtp-alerts spool history``: every attempt of every
message on every channel, with the step it reached, the reply and how long it
took, kept for a retention period. Beside it, the counters each engine saved
last (``smtp-alerts spool list`` shows them), kept as long.

The functions below run inside the caller's transaction or read.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "DEFAULT_HISTORY_RETENTION",
    "Attempt",
    "load_counters",
    "load_history",
    "record_attempt",
    "save_counters",
]

DEFAULT_HISTORY_RETENTION = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery attempt of one message on one channel, for the audit trail.

    Attributes:
        at: when it started, epoch seconds.
        message_id: the message's Message-ID.
        title: the message's title.
        channel: the channel's name.
        step: the last step it reached (``connect``, ``auth``, ``data``...).
        code: the SMTP reply code, when there was one.
        reply: the reply text or the error.
        duration: how long it took, in seconds.
        ok: whether the channel accepted the message.
    """

    at: float
    message_id: str
    title: str
    channel: str
    step: str
    code: int | None
    reply: str
    duration: float
    ok: bool


def record_attempt(conn: sqlite3.Connection, attempt: Attempt, *, keep_after: float) -> None:
    """Add an attempt, and delete the attempts from before ``keep_after``."""
    conn.execute(
        "INSERT INTO history (at, message_id, title, channel, step, code, reply,"
        " duration, ok) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            attempt.at,
            attempt.message_id,
            attempt.title,
            attempt.channel,
            attempt.step,
            attempt.code,
            attempt.reply,
            attempt.duration,
            attempt.ok,
        ),
    )
    conn.execute("DELETE FROM history WHERE at < ?", (keep_after,))


def load_history(conn: sqlite3.Connection, *, limit: int) -> list[Attempt]:
    """The latest ``limit`` attempts, newest first."""
    rows = conn.execute(
        "SELECT at, message_id, title, channel, step, code, reply, duration, ok"
        " FROM history ORDER BY at DESC, id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        Attempt(
            at=at,
            message_id=message_id,
            title=title,
            channel=channel,
            step=step,
            code=code,
            reply=reply,
            duration=duration,
            ok=bool(ok),
        )
        for at, message_id, title, channel, step, code, reply, duration, ok in rows
    ]


def save_counters(
    conn: sqlite3.Connection,
    owner: str,
    counters: Mapping[str, int],
    *,
    now: float,
    keep_after: float,
) -> None:
    """Keep ``owner``'s counters, and forget the engines that saved none since ``keep_after``."""
    conn.execute(
        "INSERT INTO counters (owner, updated, counters) VALUES (?, ?, ?)"
        " ON CONFLICT (owner) DO UPDATE SET updated = excluded.updated,"
        " counters = excluded.counters",
        (owner, now, json.dumps(dict(counters), sort_keys=True)),
    )
    # Engines long gone are of no interest after the history retention.
    conn.execute("DELETE FROM counters WHERE updated < ?", (keep_after,))


def load_counters(conn: sqlite3.Connection) -> list[tuple[str, float, dict[str, int]]]:
    """Every engine's last saved counters: (owner, when saved, counters), newest first."""
    rows = conn.execute(
        "SELECT owner, updated, counters FROM counters ORDER BY updated DESC"
    ).fetchall()
    return [(owner, updated, json.loads(text)) for owner, updated, text in rows]
