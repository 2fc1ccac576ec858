"""The default store: incidents, windows, quotas and members in the spool's SQLite file.

Beside the outbox (the spool's ``entries``) in ``spool.sqlite3``, so that
claiming a due window, forming its digest from the store's counts, rendering it
and putting it in the outbox happen in ONE ``BEGIN IMMEDIATE`` transaction:
either all of it is on disk or none of it. Transactions are short (a push is a
few upserts; a claim renders only what is due) and the file is in WAL mode.

Tables::

    store_windows   one row per group with an open incident: its id, when it
                    opened, digests sent (the fencing sequence), the last one's
                    time, the earliest pending new critical, dropped records
                    waiting, the first digest's subject (the thread root),
                    and its timeline's step and interval indexes (see
                    :mod:`.timeline`)
    store_problems  one row per (group, fingerprint): the sample, pending and
                    total counts, first and last seen, the digest that first
                    showed it, occurrences per interval (JSON, at most
                    ``MAX_BUCKETS``) and a later occurrence's message
    store_sends     when each email of the store was formed (the shared quotas)
    store_members   the engines using the store, and whether each is leaving
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from smtp_alerts._delivery.serialize import alert_from_dict, alert_to_dict, digest_from_dict
from smtp_alerts._delivery.spool import Spool
from smtp_alerts._delivery.spool.liveness import hold, lock_says_alive
from smtp_alerts._util.clock import Clock
from smtp_alerts.models import Alert, Digest, Problem

from . import timeline
from .base import Claimed, Quota, Renderer
from .others import NEVER_FOLDED, OTHER_TAG, PROBLEMS_PER_INCIDENT, is_other, other_row
from .timeline import Buckets
from .windows import REASON_FLUSH, Windows, reason, severity_order

__all__ = ["SqliteStore", "row_key", "sample_alert", "sample_json"]

log = logging.getLogger("smtp_alerts.store")

Counts = tuple[int, ...]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_windows (
    grp            TEXT PRIMARY KEY,
    incident_id    TEXT NOT NULL,
    opened_at      REAL NOT NULL,
    sequence       INTEGER NOT NULL DEFAULT 0,
    last_notified  REAL,
    critical_at    REAL,
    dropped        INTEGER NOT NULL DEFAULT 0,
    thread_subject TEXT,
    t_step         INTEGER NOT NULL DEFAULT 60,
    t_low          INTEGER,
    t_high         INTEGER
);
CREATE TABLE IF NOT EXISTS store_problems (
    grp         TEXT NOT NULL,
    fp          TEXT NOT NULL,
    sample      TEXT NOT NULL,
    pending     INTEGER NOT NULL,
    total       INTEGER NOT NULL,
    first_seen  REAL NOT NULL,
    last_seen   REAL NOT NULL,
    shown_in    INTEGER NOT NULL DEFAULT 0,
    timeline    TEXT NOT NULL DEFAULT '{}',
    last_message TEXT NOT NULL DEFAULT '',
    t_index     INTEGER,
    t_count     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (grp, fp)
);
CREATE TABLE IF NOT EXISTS store_sends (at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS store_held (since REAL NOT NULL);
CREATE TABLE IF NOT EXISTS store_members (
    owner    TEXT PRIMARY KEY,
    leaving  INTEGER NOT NULL DEFAULT 0
);
"""

_HOUR, _DAY = 3600.0, 86400.0

_ADDED_COLUMNS = (
    ("store_windows", "t_step", "INTEGER NOT NULL DEFAULT 60"),
    ("store_windows", "t_low", "INTEGER"),
    ("store_windows", "t_high", "INTEGER"),
    ("store_problems", "timeline", "TEXT NOT NULL DEFAULT '{}'"),
    ("store_problems", "last_message", "TEXT NOT NULL DEFAULT ''"),
    ("store_problems", "t_index", "INTEGER"),
    ("store_problems", "t_count", "INTEGER NOT NULL DEFAULT 0"),
)
"""Columns a store made by an earlier release lacks: added when it is opened."""

_OTHER_KEYS = json.dumps([OTHER_TAG])[:-1] + ","
"""How the row key of every other-problems row (its fingerprint's JSON) begins."""

_EXISTING = "SELECT json_group_array(fp) FROM store_problems WHERE grp = ?"

# One statement for all of a delta's rows: each sqlite3 call releases the GIL,
# and a thread that gives it up a thousand times in a push waits behind a
# logging thread for up to a switch interval (5 ms) each time: a first push of
# a thousand problems took seconds, and the intake overflowed meanwhile.
# A row is [fp, sample, count, first seen, last seen, index, n] or, rarely,
# [fp, sample, count, first seen, last seen, null, 0, message, counts]; its
# sample is '' when the store has the row (kept: an other-problems row from an
# engine replaces it); its message a later occurrence's. Its counts per interval
# are {index: count} at the incident's step, added to the row's (a JSON map);
# nearly every push brings one interval's count, the latest, so that one comes
# as (index, n) and the row keeps its latest interval in two columns: a push
# within it adds two integers, and only one that moves on writes the interval
# before into the map.
_UPSERT = (
    "INSERT INTO store_problems (grp, fp, sample, pending, total, first_seen, last_seen,"
    " shown_in, timeline, last_message, t_index, t_count) SELECT ?,"
    " json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),"
    " json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'),"
    " 0, COALESCE(json_extract(value, '$[8]'), '{}'), COALESCE(json_extract(value, '$[7]'), ''),"
    " json_extract(value, '$[5]'), json_extract(value, '$[6]') FROM json_each(?) WHERE true"
    " ON CONFLICT (grp, fp) DO UPDATE SET pending = pending + excluded.pending,"
    " total = total + excluded.total, first_seen = MIN(first_seen, excluded.first_seen),"
    " last_seen = MAX(last_seen, excluded.last_seen),"
    " sample = CASE excluded.sample WHEN '' THEN sample ELSE excluded.sample END,"
    " last_message = CASE WHEN excluded.last_message = '' THEN last_message"
    " WHEN excluded.last_message = json_extract(sample, '$.message') THEN last_message"
    " ELSE excluded.last_message END,"
    " t_index = CASE WHEN excluded.t_index IS NULL THEN t_index"
    " WHEN t_index IS NULL OR excluded.t_index > t_index THEN excluded.t_index ELSE t_index END,"
    " t_count = CASE WHEN excluded.t_index IS NULL THEN t_count"
    " WHEN t_index IS NULL OR excluded.t_index > t_index THEN excluded.t_count"
    " WHEN excluded.t_index = t_index THEN t_count + excluded.t_count ELSE t_count END,"
    " timeline = CASE WHEN excluded.t_index > t_index THEN json_set(timeline,"
    " '$.\"' || t_index || '\"', COALESCE(json_extract(timeline, '$.\"' || t_index || '\"'), 0)"
    " + t_count) WHEN excluded.t_index < t_index THEN json_set(timeline,"
    " '$.\"' || excluded.t_index || '\"', COALESCE(json_extract(timeline,"
    " '$.\"' || excluded.t_index || '\"'), 0) + excluded.t_count)"
    " WHEN excluded.timeline = '{}' THEN timeline ELSE (SELECT"
    " json_group_object(key, n) FROM (SELECT key, SUM(value) AS n FROM (SELECT key, value"
    " FROM json_each(timeline) UNION ALL SELECT key, value FROM json_each(excluded.timeline))"
    " GROUP BY key)) END"
)

# Coarsening re-keys every row of an incident (rare: a few times in its life).
_REKEY = (
    "UPDATE store_problems SET timeline = (SELECT json_group_object(k, n) FROM"
    " (SELECT CAST(key AS INTEGER) * ? / ? AS k, SUM(value) AS n FROM json_each(timeline)"
    " GROUP BY k)), t_index = t_index * ? / ? WHERE grp = ?"
)


_Frame = tuple[int, int | None, int]
"""An incident's timeline: its step, and its first and last interval (None: no counts)."""


def _frame(conn: sqlite3.Connection, group: str) -> _Frame:
    step, low, high = conn.execute(
        "SELECT t_step, t_low, t_high FROM store_windows WHERE grp = ?", (group,)
    ).fetchone()
    return int(step), low, int(high or 0)


def _reframe(conn: sqlite3.Connection, group: str, old: _Frame, new: _Frame) -> None:
    """Keep the incident's new frame; re-key its rows' counts when its step grew."""
    if new[0] != old[0]:
        conn.execute(_REKEY, (old[0], new[0], old[0], new[0], group))
    if new != old:
        conn.execute(
            "UPDATE store_windows SET t_step = ?, t_low = ?, t_high = ? WHERE grp = ?",
            (*new, group),
        )


def _fit(conn: sqlite3.Connection, group: str, delta: Digest) -> Callable[[Counts], Buckets]:
    """Widen the incident's timeline to the delta's; how to re-key the delta's counts to it."""
    step = int(delta.timeline_step)
    width = max((len(problem.timeline) for problem in delta.problems), default=0)
    if step < 1 or width == 0:
        return lambda _counts: {}
    first = timeline.index_of(delta.timeline_start, step)
    old = _frame(conn, group)
    new = timeline.widen(old, first, first + width - 1, step)
    _reframe(conn, group, old, new)
    into = new[0]

    def at(counts: Counts) -> Buckets:
        out: Buckets = {}
        for offset, count in enumerate(counts):
            if count:
                key = ((first + offset) * step) // into
                out[key] = out.get(key, 0) + count
        return out

    return at


def row_key(alert: Alert) -> str:
    """The fingerprint as a row key: JSON (tuples as arrays), cheap for every push."""
    try:
        return json.dumps(alert.fingerprint)
    except (TypeError, ValueError):
        return repr(alert.fingerprint)


def sample_json(alert: Alert) -> str:
    """The sample as JSON, in the spool's lossless format (new rows only)."""
    return json.dumps(alert_to_dict(alert))


def _dense(counts: str, latest: int | None, n: int, low: int, high: int) -> Counts:
    """A row's counts per interval, from its map and its latest interval's count."""
    buckets = {int(k): int(c) for k, c in json.loads(counts).items()}
    if latest is not None:
        buckets[latest] = buckets.get(latest, 0) + n
    return timeline.dense(buckets, low, high)


def _payload(row: list[Any]) -> list[Any]:
    """A row to push, its counts as (index, n) when they are one interval's (nearly always)."""
    buckets: Buckets = row[5]
    if len(buckets) == 1 and not row[6]:
        ((index, count),) = buckets.items()
        return [*row[:5], index, count]
    return [*row[:5], None, 0, row[6], buckets]


def sample_alert(sample: str) -> Alert:
    data = json.loads(sample)
    if "problems" in data:  # written by 0.x releases: a digest of one problem
        return digest_from_dict(data).problems[0].alert
    return alert_from_dict(data)


class SqliteStore:
    """The store in the spool's SQLite file, shared by every engine on ``SPOOL_DIR``.

    Args:
        spool: the open spool (the outbox); the store uses its file and transactions.
        windows: the window durations of this engine's settings.
        clock: the store's clock: it alone decides which windows are due.
    """

    polls_remotely = False
    """Due times change only through this file: an idle engine may read before it claims."""

    def __init__(self, spool: Spool, windows: Windows, *, clock: Clock) -> None:
        self._spool = spool
        self._windows = windows
        self._clock = clock
        with spool.transaction() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            for table, column, kind in _ADDED_COLUMNS:
                names = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                if column not in names:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            conn.execute("INSERT OR REPLACE INTO store_members VALUES (?, 0)", (spool.owner,))
        hold(spool.directory, spool.owner)

    # -- pushing -------------------------------------------------------------------------

    def push(self, deltas: Sequence[Digest]) -> None:
        """Add each delta's counts to its group's incident (opening one), in one transaction.

        An incident keeps at most :data:`~smtp_alerts._store.others.PROBLEMS_PER_INCIDENT`
        problems one by one, whatever the number of engines pushing to it: past
        that, a new problem is counted in its logger's other-problems row.
        """
        now = self._clock()
        with self._spool.transaction() as conn:
            for delta in deltas:
                if not delta.problems and not delta.dropped:
                    continue
                group = delta.group
                opened = min((p.first_seen for p in delta.problems), default=now)
                self._open(conn, group, opened, now)
                self._add(conn, group, delta)
                if delta.dropped:
                    conn.execute(
                        "UPDATE store_windows SET dropped = dropped + ? WHERE grp = ?",
                        (delta.dropped, group),
                    )

    def _open(self, conn: sqlite3.Connection, group: str, opened: float, now: float) -> None:
        """Make sure ``group`` has an open incident: a quiet notified one closes first."""
        row = conn.execute(
            "SELECT last_notified FROM store_windows WHERE grp = ?", (group,)
        ).fetchone()
        if row is not None:
            pending = self._has_pending(conn, group)
            if not self._windows.closable(last_notified=row[0], pending=pending, at=now):
                return
            conn.execute("DELETE FROM store_problems WHERE grp = ?", (group,))
            conn.execute("DELETE FROM store_windows WHERE grp = ?", (group,))
        conn.execute(
            "INSERT INTO store_windows (grp, incident_id, opened_at) VALUES (?, ?, ?)",
            (group, secrets.token_hex(8), min(opened, now)),
        )

    def _add(self, conn: sqlite3.Connection, group: str, delta: Digest) -> None:
        """Add the problems' counts to their rows in a few statements, whatever their number.

        A problem the store has not seen joins the incident while it keeps
        fewer than :data:`~smtp_alerts._store.others.PROBLEMS_PER_INCIDENT`
        problems one by one; past that it is counted in its logger's
        other-problems row. An engine's own other-problems row replaces the
        stored sample (it says how many problems it holds); one the store
        folds here keeps its first.
        """
        problems = delta.problems
        at = _fit(conn, group, delta)
        (found,) = conn.execute(_EXISTING, (group,)).fetchone()
        existing = set(json.loads(found))
        kept = sum(1 for key in existing if not key.startswith(_OTHER_KEYS))
        rows: dict[str, list[Any]] = {}
        critical: list[tuple[float, str]] = []
        for problem in problems:
            alert = problem.alert
            fp = row_key(alert)
            other = is_other(alert.fingerprint)
            replaces = other  # an engine's word on its other-problems row
            if fp not in existing and fp not in rows and not other:
                if kept >= PROBLEMS_PER_INCIDENT and alert.source not in NEVER_FOLDED:
                    alert = other_row(alert)
                    fp, replaces = row_key(alert), False
                else:
                    kept += 1
            row = rows.get(fp)
            later = problem.last_message if alert is problem.alert else ""
            if row is None:
                fresh = fp not in existing
                sample = sample_json(alert) if fresh or replaces else ""
                if fresh and later == alert.message:
                    later = ""
                counts = at(problem.timeline)
                rows[fp] = [fp, sample, problem.count, problem.first_seen, problem.last_seen]
                rows[fp] += [counts, later]
            else:
                row[2] += problem.count
                row[3] = min(row[3], problem.first_seen)
                row[4] = max(row[4], problem.last_seen)
                timeline.add(row[5], at(problem.timeline))
                row[6] = later or row[6]
                if replaces:
                    row[1] = sample_json(alert)
            if alert.level >= logging.CRITICAL or alert.source == "crash":
                critical.append((problem.first_seen, fp))
        if rows:
            conn.execute(_UPSERT, (group, json.dumps([_payload(row) for row in rows.values()])))
        for first_seen, fp in critical:  # rare: one statement each
            conn.execute(
                "UPDATE store_windows SET critical_at = MIN(COALESCE(critical_at, ?), ?)"
                " WHERE grp = ? AND EXISTS (SELECT 1 FROM store_problems"
                " WHERE grp = ? AND fp = ? AND shown_in = 0)",
                (first_seen, first_seen, group, group, fp),
            )

    # -- deciding and claiming -----------------------------------------------------------

    def next_due(self) -> float | None:
        """When the earliest window with something pending is due, or None."""
        with self._spool.reading() as conn:
            times = [at for _, at in self._windows_due(conn)]
        return min(times, default=None)

    def claim_due(
        self, render: Renderer, quota: Quota, *, force: bool = False
    ) -> tuple[list[Claimed], float | None]:
        """Form, render and put in the outbox what is due, in one transaction.

        Returns:
            The digests claimed, and when the quotas reopen if they held one back.
        """
        claimed: list[Claimed] = []
        with self._spool.transaction() as conn:
            now = self._clock()
            for group, at in sorted(self._windows_due(conn), key=lambda item: item[1]):
                if not force and at > now:
                    continue
                # One savepoint per digest: a render that fails undoes its
                # forming and its quota slot, and the others still go.
                conn.execute("SAVEPOINT digest")
                notices = self._take_send(conn, quota, now)
                if notices is None:
                    conn.execute("RELEASE digest")
                    return claimed, self._reopens_at(conn, quota, now)
                digest = replace(self._form(conn, group, now, flush=at > now), notices=notices)
                try:
                    message = render(digest)
                except Exception:
                    log.exception("rendering a digest failed; its counts stay in the store")
                    conn.execute("ROLLBACK TO digest")
                    conn.execute("RELEASE digest")
                    continue
                if digest.sequence == 1:
                    conn.execute(
                        "UPDATE store_windows SET thread_subject = ? WHERE grp = ?",
                        (message.title, group),
                    )
                claimed.append(Claimed(self._spool.add_in(conn, message), message))
                conn.execute("RELEASE digest")
        return claimed, None

    def _windows_due(self, conn: sqlite3.Connection) -> list[tuple[str, float]]:
        rows = conn.execute(
            "SELECT w.grp, w.opened_at, w.last_notified, w.critical_at, w.dropped,"
            " COALESCE(SUM(p.pending > 0 AND p.shown_in = 0), 0),"
            " COALESCE(SUM(p.pending > 0), 0)"
            " FROM store_windows w LEFT JOIN store_problems p ON p.grp = w.grp GROUP BY w.grp"
        ).fetchall()
        due = []
        for group, opened, notified, critical, dropped, news, pending in rows:
            if pending or dropped:
                at = self._windows.due_at(
                    opened_at=opened,
                    last_notified=notified,
                    news=bool(news or dropped),
                    critical_at=critical,
                )
                due.append((group, at))
        return due

    def _take_send(
        self, conn: sqlite3.Connection, quota: Quota, now: float
    ) -> tuple[str, ...] | None:
        """Count one email against the store's quotas: None when they refuse it now.

        Returns:
            The notices for its digest: one when it takes a window's last slot.
        """
        hour, day, hour_first, day_first = conn.execute(
            "SELECT COALESCE(SUM(at > ?), 0), COUNT(*), MIN(CASE WHEN at > ? THEN at END),"
            " MIN(at) FROM store_sends WHERE at > ?",
            (now - _HOUR, now - _HOUR, now - _DAY),
        ).fetchone()
        if hour >= quota.per_hour or day >= quota.per_day:
            conn.execute(
                "INSERT INTO store_held SELECT ? WHERE NOT EXISTS (SELECT 1 FROM store_held)",
                (now,),
            )
            return None
        conn.execute("DELETE FROM store_sends WHERE at <= ?", (now - _DAY,))
        conn.execute("INSERT INTO store_sends VALUES (?)", (now,))
        notices: tuple[str, ...] = ()
        held = conn.execute("SELECT MIN(since) FROM store_held").fetchone()[0]
        if held is not None:
            conn.execute("DELETE FROM store_held")
            notices = (quota.delayed(held, now),)
        if day + 1 >= quota.per_day:
            notices += (quota.notice(quota.per_day, "day", (day_first or now) + _DAY, now),)
        elif hour + 1 >= quota.per_hour:
            notices += (quota.notice(quota.per_hour, "hour", (hour_first or now) + _HOUR, now),)
        return notices

    @staticmethod
    def _reopens_at(conn: sqlite3.Connection, quota: Quota, now: float) -> float:
        """When the quotas allow the next email (the send that frees a slot ages out)."""
        hour = [
            at
            for (at,) in conn.execute(
                "SELECT at FROM store_sends WHERE at > ? ORDER BY at DESC", (now - _HOUR,)
            )
        ]
        day = [
            at
            for (at,) in conn.execute(
                "SELECT at FROM store_sends WHERE at > ? ORDER BY at DESC", (now - _DAY,)
            )
        ]
        reopens = [now]
        if len(hour) >= quota.per_hour:
            reopens.append(hour[quota.per_hour - 1] + _HOUR)
        if len(day) >= quota.per_day:
            reopens.append(day[quota.per_day - 1] + _DAY)
        return max(reopens)

    def _form(self, conn: sqlite3.Connection, group: str, now: float, *, flush: bool) -> Digest:
        incident_id, sequence, critical_at, dropped, subject = conn.execute(
            "SELECT incident_id, sequence, critical_at, dropped, thread_subject"
            " FROM store_windows WHERE grp = ?",
            (group,),
        ).fetchone()
        rows = conn.execute(
            "SELECT sample, pending, total, first_seen, last_seen, shown_in, timeline,"
            " t_index, t_count, last_message FROM store_problems WHERE grp = ? AND pending > 0",
            (group,),
        ).fetchall()
        old = _frame(conn, group)
        step, low, high = timeline.until(old, now)  # up to the digest's time
        _reframe(conn, group, old, (step, low, high))
        problems = sorted(
            (
                Problem(sample_alert(s), n, t, f, la, shown == 0, _dense(b, i, c, low, high), later)
                for s, n, t, f, la, shown, b, i, c, later in rows
            ),
            key=severity_order,
        )
        sequence += 1
        news = any(p.is_new for p in problems) or bool(dropped)
        why = reason(critical=critical_at is not None, sequence=sequence, news=news)
        # Fenced by the sequence read above: a Redis store does the same with WATCH.
        conn.execute(
            "UPDATE store_problems SET shown_in = CASE shown_in WHEN 0 THEN ? ELSE shown_in END,"
            " pending = 0 WHERE grp = ? AND pending > 0",
            (sequence, group),
        )
        conn.execute(
            "UPDATE store_windows SET sequence = ?, last_notified = ?, critical_at = NULL,"
            " dropped = 0 WHERE grp = ? AND sequence = ?",
            (sequence, now, group, sequence - 1),
        )
        return Digest(
            group=group,
            incident_id=incident_id,
            sequence=sequence,
            problems=tuple(problems),
            created=now,
            reason=REASON_FLUSH if flush else why,
            dropped=int(dropped),
            thread_subject=subject,
            timeline_start=float(low * step),
            timeline_step=float(step),
        )

    @staticmethod
    def _has_pending(conn: sqlite3.Connection, group: str) -> bool:
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM store_problems WHERE grp = ? AND pending > 0)"
            " OR EXISTS (SELECT 1 FROM store_windows WHERE grp = ? AND dropped > 0)",
            (group, group),
        ).fetchone()
        return bool(row[0])

    # -- members -------------------------------------------------------------------------

    def _siblings(self, conn: sqlite3.Connection) -> bool:
        rows = conn.execute(
            "SELECT owner FROM store_members WHERE owner != ? AND leaving = 0",
            (self._spool.owner,),
        ).fetchall()
        alive = False
        for (owner,) in rows:
            if lock_says_alive(self._spool.directory, owner):
                alive = True
            else:  # dead, or never locked: forget it
                conn.execute("DELETE FROM store_members WHERE owner = ?", (owner,))
        return alive

    def leave(self) -> bool:
        """Leave, and say whether a sibling stays; atomic, so exactly one last engine sees none."""
        with self._spool.transaction() as conn:
            conn.execute(
                "UPDATE store_members SET leaving = 1 WHERE owner = ?", (self._spool.owner,)
            )
            return self._siblings(conn)
