"""The durable store of undelivered digests, and the audit trail of delivery attempts.

A rendered digest is added to the spool before its first attempt and deleted only
when a channel accepted it, so a crash, a SIGKILL or a restart loses nothing: the
next engine on the same directory finds the entry and sends it, late but with its
original time (:attr:`SpoolEntry.created`).

One SQLite database in WAL mode (``spool.sqlite3`` in the spool directory) holds
two tables::

    entries   one row per undelivered message: its email bytes, its other fields
              as JSON, when it was first spooled, its attempts, when it is due, and
              which process (``owner``) is attempting it now, since when
    history   one row per delivery attempt: digest, channel, the step it reached,
              reply code and text, duration, success; pruned after a retention

Several processes may share one directory. A process claims entries atomically
(``BEGIN IMMEDIATE``) before attempting them, so no two processes send the same
entry. A claim names its owner as ``host:pid:start-time``; a claim whose owner is
a dead process on this host is taken over at once (the start time tells a reused
pid apart), one from another host after :data:`DEFAULT_LEASE` seconds.

The spool is bounded: past ``max_entries``, the oldest unclaimed entries are
replaced by one summary entry that names them, never dropped.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from types import TracebackType
from typing import Any

from smtp_alerts._delivery.serialize import MessageRow, message_from_row, message_to_row
from smtp_alerts._engine.render import _POLICY
from smtp_alerts._util.clock import SYSTEM_CLOCK, Clock
from smtp_alerts._util.humanize import format_time
from smtp_alerts.models import OutgoingMessage

__all__ = [
    "DEFAULT_HISTORY_RETENTION",
    "DEFAULT_LEASE",
    "DEFAULT_MAX_ENTRIES",
    "SPOOL_FILENAME",
    "Attempt",
    "Spool",
    "SpoolEntry",
    "after_fork_in_child",
    "after_fork_in_parent",
    "before_fork",
    "process_identity",
]

SPOOL_FILENAME = "spool.sqlite3"
DEFAULT_MAX_ENTRIES = 1000
DEFAULT_HISTORY_RETENTION = 7 * 86400.0
DEFAULT_LEASE = 15 * 60.0
"""Seconds after which a claim held by another host's process may be taken over:
its liveness cannot be checked from here."""
DEFAULT_CLAIM_LIMIT = 50
BUSY_TIMEOUT = 30.0
"""Seconds a write waits for another process's transaction before failing."""
UNREADABLE_RETRY_DELAY = 86400.0
"""An entry that cannot be read (damaged, or written by a newer version) is parked
this long instead of failing every claim."""
SCHEMA_VERSION = 1
DIRECTORY_MODE = 0o700  # the spool holds log messages and tracebacks: owner only
MAX_TO_RECIPIENTS = 100  # as in the renderer: more go undisclosed
SUMMARY_HEADER = "X-Smtp-Alerts-Merged"
"""Set on a default summary to how many digests it stands for, so merging it again counts them."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id    TEXT    NOT NULL UNIQUE,
    title         TEXT    NOT NULL,
    created       REAL    NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_attempt  REAL    NOT NULL,
    last_error    TEXT,
    owner         TEXT,
    claimed_at    REAL,
    size          INTEGER NOT NULL,
    meta          TEXT    NOT NULL,
    email         BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_next_attempt ON entries (next_attempt);
CREATE INDEX IF NOT EXISTS entries_owner ON entries (owner);
CREATE TABLE IF NOT EXISTS history (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            REAL    NOT NULL,
    message_id    TEXT    NOT NULL,
    title         TEXT    NOT NULL,
    channel       TEXT    NOT NULL,
    step          TEXT    NOT NULL,
    code          INTEGER,
    reply         TEXT    NOT NULL,
    duration      REAL    NOT NULL,
    ok            INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS history_at ON history (at);
CREATE TABLE IF NOT EXISTS counters (
    owner         TEXT    PRIMARY KEY,
    updated       REAL    NOT NULL,
    counters      TEXT    NOT NULL
);
"""


# SQLite is not fork-safe: a child forked while another thread is inside SQLite
# inherits its mutexes locked and hangs on its first call. Every SQLite call of
# ours holds this gate, and a fork waits for it, so no thread is inside SQLite
# at the moment of a fork (pre-fork servers fork while the engine runs).
_gate = threading.RLock()


def sqlite_gate() -> threading.RLock:
    """The process-wide lock held around every SQLite call (see the comment above)."""
    return _gate


# The process's fork hook (smtp_alerts._engine.process) calls these three, in
# its one order with the engines' own.
def before_fork() -> None:
    """Take the gate: no thread is inside SQLite while the process forks."""
    _gate.acquire()


def after_fork_in_parent() -> None:
    """Give the gate back in the parent."""
    _gate.release()


def after_fork_in_child() -> None:
    """A new gate in the child: the one taken before the fork belongs to the parent."""
    global _gate  # noqa: PLW0603 - the child needs a lock no vanished thread holds
    _gate = threading.RLock()


# os.kill(pid, 0) probes a pid on POSIX; on Windows it would terminate the process.
_CAN_PROBE_PIDS = os.name == "posix"


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
        owner: the process attempting it now, if any (``host:pid:start-time``).
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


# --- process identity ---------------------------------------------------------------------


def _process_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes().decode("latin-1")
    except OSError:
        return None
    # Field 2 (the command name) is in parentheses and may hold spaces and
    # parentheses itself: count fields from the last ")". Field 22 is the start time.
    fields = stat[stat.rfind(")") + 1 :].split()
    return fields[19] if len(fields) > 19 else None


def process_identity(pid: int | None = None) -> str:
    """The owner name of a process: ``host:pid:start-time``.

    The start time (empty where ``/proc`` is missing) tells a process apart from
    a later one that reuses its pid.

    Args:
        pid: the process; this one when omitted.

    Returns:
        The identity, as written in a claim.
    """
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_process_start_time(pid) or ''}"


def _local_process_alive(pid: int, start: str) -> bool:
    if pid <= 0:  # 0 and negative numbers name process groups, never one process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists but belongs to another user
    if not start:
        return True
    current = _process_start_time(pid)
    # Unreadable (hidepid): the pid exists, which is all we can tell.
    return current is None or current == start


# --- the default summary ------------------------------------------------------------------


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
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = first.sender
    many = len(first.recipients) > MAX_TO_RECIPIENTS
    msg["To"] = "undisclosed-recipients:;" if many else ", ".join(first.recipients)
    msg["Subject"] = title
    msg["Date"] = format_datetime(datetime.fromtimestamp(now, tz=timezone.utc))
    message_id = make_msgid("spool-summary", domain=domain)
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg[SUMMARY_HEADER] = str(count)
    msg.set_content(text, subtype="plain", charset="utf-8")
    return OutgoingMessage(
        message_id=message_id,
        email=msg,
        sender=first.sender,
        recipients=first.recipients,
        title=title,
        summary=text,
        digest=None,
    )


# --- the spool ----------------------------------------------------------------------------


def _create_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Create the tables, in the caller's transaction, unless a newer version did."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"{path} was written by a newer smtp-alerts "
            f"(schema {version}, this version knows {SCHEMA_VERSION})"
        )
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


class Spool:
    """The durable, bounded, multi-process store of undelivered messages.

    Safe to use from several threads: one connection, guarded by a lock. Safe to
    share between processes on one directory: claims are atomic.

    Args:
        directory: the spool directory; created (mode 0o700) when missing.
        clock: the time source, for due times, claims and history.
        max_entries: the bound; past it the oldest unclaimed entries are merged.
        history_retention: seconds an attempt stays in the history.
        owner: the name written in claims; this process's :func:`process_identity`
            by default. Two Spool objects with one owner share their claims.
        summarize: turns the messages to merge (oldest first) into one; a plain
            text summary listing their titles and times by default.
        lease: seconds after which another host's claim may be taken over.

    Raises:
        ValueError: ``max_entries`` is below 2, or the database was written by a
            newer version of the library.
        sqlite3.Error: the database cannot be opened.
    """

    def __init__(
        self,
        directory: Path,
        *,
        clock: Clock = SYSTEM_CLOCK,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        history_retention: float = DEFAULT_HISTORY_RETENTION,
        owner: str | None = None,
        summarize: Callable[[list[OutgoingMessage]], OutgoingMessage] | None = None,
        lease: float = DEFAULT_LEASE,
    ) -> None:
        if max_entries < 2:
            # Merging needs room for the summary and at least one other entry.
            raise ValueError(f"max_entries must be at least 2, not {max_entries}")
        self.directory = Path(directory)
        self.path = self.directory / SPOOL_FILENAME
        self._clock = clock
        self._max_entries = max_entries
        self._history_retention = history_retention
        self._fixed_owner = owner
        self._summarize = summarize
        self._lease = lease
        self._host = socket.gethostname()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.owner = owner if owner is not None else process_identity()
        self.directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        self._conn: sqlite3.Connection | None = self._connect()

    def __repr__(self) -> str:
        return f"Spool({str(self.directory)!r}, owner={self.owner!r})"

    # --- connection and transactions ------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        with _gate:
            return self._connect_gated()

    def _connect_gated(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE), so a
        # claim's SELECT and UPDATE run under one write lock.
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: in WAL mode, NORMAL may lose the last commits on power loss; an
            # entry that add() reported as stored must survive anything.
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                _create_schema(conn, self.path)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_fork(self) -> None:
        # A forked child inherits this object: it must not use the parent's
        # connection, nor its lock (possibly held by a thread the child lacks),
        # nor claim under the parent's name.
        if os.getpid() == self._pid:
            return
        self._pid = os.getpid()
        self._lock = threading.Lock()
        if self._fixed_owner is None:
            self.owner = process_identity()
        inherited, self._conn = self._conn, None
        if inherited is not None:
            self._conn = self._connect()
            # Closing it in the child releases nothing of the parent's: POSIX locks
            # belong to the process that took them.
            with _gate:
                inherited.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        self._check_fork()
        with _gate, self._lock:
            if self._conn is None:
                raise RuntimeError(f"{self!r} is closed")
            yield self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._read() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # Also when COMMIT itself failed (disk full): the next BEGIN must not
                # find a transaction still open.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    # --- claims ---------------------------------------------------------------------------

    def _claim_is_dead(
        self, owner: str, claimed_at: float | None, now: float, cache: dict[str, bool]
    ) -> bool:
        """Whether a claim may be taken over: its owner died, or its lease ran out."""
        if owner == self.owner:
            return False
        host, _, rest = owner.partition(":")
        pid_text, _, start = rest.partition(":")
        if host == self._host and pid_text.isdigit() and _CAN_PROBE_PIDS:
            if owner not in cache:
                cache[owner] = not _local_process_alive(int(pid_text), start)
            return cache[owner]
        # Another host's process (or a name we cannot parse): only time tells.
        return claimed_at is None or claimed_at + self._lease <= now

    def _claimable(
        self, owner: str | None, claimed_at: float | None, now: float, cache: dict[str, bool]
    ) -> bool:
        return owner is None or self._claim_is_dead(owner, claimed_at, now, cache)

    # --- adding ---------------------------------------------------------------------------

    def add(self, message: OutgoingMessage, *, claimed: bool = True) -> int:
        """Store a message, durably, before its first attempt.

        Idempotent on the Message-ID: adding a message already spooled stores
        nothing and returns the existing entry's id.

        Args:
            message: the rendered message.
            claimed: claim the entry for this owner (about to attempt it). An
                existing entry is claimed only when no live owner holds it.

        Returns:
            The entry's id.

        Raises:
            TypeError: the message's digest cannot be serialised losslessly.
        """
        row = message_to_row(message)
        meta = json.dumps(row.meta)  # ensure_ascii: lone surrogates from logs survive
        now = self._clock()
        owner = self.owner if claimed else None
        with self._write() as conn:
            existing = conn.execute(
                "SELECT id, owner, claimed_at FROM entries WHERE message_id = ?",
                (message.message_id,),
            ).fetchone()
            if existing is not None:
                entry_id, held_by, claimed_at = existing
                if claimed and self._claimable(held_by, claimed_at, now, {}):
                    conn.execute(
                        "UPDATE entries SET owner = ?, claimed_at = ? WHERE id = ?",
                        (owner, now, entry_id),
                    )
                return int(entry_id)
            cursor = conn.execute(
                "INSERT INTO entries (message_id, title, created, next_attempt, owner,"
                " claimed_at, size, meta, email) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    message.message_id,
                    message.title,
                    now,
                    now,
                    owner,
                    now if claimed else None,
                    len(row.email),
                    meta,
                    row.email,
                ),
            )
            entry_id = cursor.lastrowid
            assert entry_id is not None  # noqa: S101 - an INSERT always sets it
        # Apart from the insert: the message is stored whatever merging does.
        self._enforce_bound()
        return entry_id

    def _enforce_bound(self) -> None:
        with self._write() as conn:
            (count,) = conn.execute("SELECT COUNT(*) FROM entries").fetchone()
            if count <= self._max_entries:
                return
            # Removing n entries and adding one summary leaves count - n + 1.
            wanted = count - self._max_entries + 1
            now = self._clock()
            cache: dict[str, bool] = {}
            candidates = conn.execute(
                "SELECT id, created, next_attempt, owner, claimed_at FROM entries"
                " ORDER BY created, id"
            ).fetchall()
            rows: list[tuple[int, float, float, OutgoingMessage]] = []
            for entry_id, created, next_attempt, owner, claimed_at in candidates:
                if len(rows) == wanted:
                    break
                if not self._claimable(owner, claimed_at, now, cache):
                    continue  # being attempted: it may be delivered any moment
                meta, data = conn.execute(
                    "SELECT meta, email FROM entries WHERE id = ?", (entry_id,)
                ).fetchone()
                try:
                    message = message_from_row(json.loads(meta), data)
                except ValueError:
                    continue  # unreadable here; left alone for a version that can
                rows.append((entry_id, created, next_attempt, message))
            if len(rows) < 2:
                return  # nothing to merge yet: every old entry is being attempted
            conn.executemany("DELETE FROM entries WHERE id = ?", [(r[0],) for r in rows])
            summary, row = self._summary(conn, [(r[1], r[3]) for r in rows], now)
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

    def _summary(
        self, conn: sqlite3.Connection, merged: list[tuple[float, OutgoingMessage]], now: float
    ) -> tuple[OutgoingMessage, MessageRow]:
        """The summary of the merged messages (oldest first), ready to insert."""
        problem = None
        if self._summarize is not None:
            try:
                summary = self._summarize([message for _, message in merged])
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

    # --- claiming and outcomes ------------------------------------------------------------

    def claim_due(
        self, *, limit: int = DEFAULT_CLAIM_LIMIT, force: bool = False
    ) -> list[SpoolEntry]:
        """Claim the entries that are due and that no live owner holds.

        The claim is atomic: no other process or Spool object with another owner
        gets the same entry until this owner reports it :meth:`failed`, calls
        :meth:`release`, or dies.

        Args:
            limit: the most entries to claim.
            force: claim entries that are not yet due as well (``spool flush``).

        Returns:
            The claimed entries, earliest due first, with their messages loaded.
        """
        now = self._clock()
        cache: dict[str, bool] = {}
        with self._write() as conn:
            candidates = conn.execute(
                "SELECT id, owner, claimed_at FROM entries"
                " WHERE (owner IS NULL OR owner != ?) AND (? OR next_attempt <= ?)"
                " ORDER BY next_attempt, id",
                (self.owner, force, now),
            ).fetchall()
            claimed: list[int] = []
            for entry_id, owner, claimed_at in candidates:
                if len(claimed) == limit:
                    break
                if self._claimable(owner, claimed_at, now, cache):
                    claimed.append(entry_id)
            conn.executemany(
                "UPDATE entries SET owner = ?, claimed_at = ? WHERE id = ?",
                [(self.owner, now, entry_id) for entry_id in claimed],
            )
            rows = [
                conn.execute(
                    "SELECT id, message_id, title, created, attempts, next_attempt,"
                    " last_error, owner, size, meta, email FROM entries WHERE id = ?",
                    (entry_id,),
                ).fetchone()
                for entry_id in claimed
            ]
            entries: list[SpoolEntry] = []
            for *fields, meta, data in rows:
                try:
                    message = message_from_row(json.loads(meta), data)
                except ValueError as exc:
                    # Parked, not retried on every claim, and visible in `spool list`.
                    conn.execute(
                        "UPDATE entries SET owner = NULL, claimed_at = NULL,"
                        " last_error = ?, next_attempt = ? WHERE id = ?",
                        (f"unreadable: {exc}", now + UNREADABLE_RETRY_DELAY, fields[0]),
                    )
                    continue
                entries.append(_entry(fields, message))
        return entries

    def delivered(self, entry_id: int) -> None:
        """Delete an entry: a channel accepted its message.

        Args:
            entry_id: the entry's id.
        """
        with self._write() as conn:
            conn.execute("DELETE FROM entries WHERE id = ?", (entry_id,))

    def failed(self, entry_id: int, *, error: str, next_attempt: float) -> None:
        """Count a failed attempt, note its error, and release the claim.

        Does nothing when another owner took the entry over meanwhile.

        Args:
            entry_id: the entry's id.
            error: what went wrong, shown by ``spool list``.
            next_attempt: when to try again, epoch seconds.
        """
        with self._write() as conn:
            conn.execute(
                "UPDATE entries SET attempts = attempts + 1, last_error = ?, next_attempt = ?,"
                " owner = NULL, claimed_at = NULL WHERE id = ? AND (owner IS NULL OR owner = ?)",
                (error, next_attempt, entry_id, self.owner),
            )

    def release(self) -> None:
        """Release every claim this owner holds, e.g. on a clean shutdown."""
        with self._write() as conn:
            conn.execute(
                "UPDATE entries SET owner = NULL, claimed_at = NULL WHERE owner = ?",
                (self.owner,),
            )

    # --- history --------------------------------------------------------------------------

    def record_attempt(self, attempt: Attempt) -> None:
        """Add an attempt to the history, and prune what is past the retention.

        Args:
            attempt: the attempt.
        """
        with self._write() as conn:
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
            conn.execute(
                "DELETE FROM history WHERE at < ?", (self._clock() - self._history_retention,)
            )

    def save_counters(self, counters: Mapping[str, int]) -> None:
        """Keep this owner's counters, so ``smtp-alerts spool list`` can show them.

        Args:
            counters: name to value, e.g. ``{"accepted": 12, "sent.smtp.gmail.com:587": 2}``.
        """
        with self._write() as conn:
            conn.execute(
                "INSERT INTO counters (owner, updated, counters) VALUES (?, ?, ?)"
                " ON CONFLICT (owner) DO UPDATE SET updated = excluded.updated,"
                " counters = excluded.counters",
                (self.owner, self._clock(), json.dumps(dict(counters), sort_keys=True)),
            )
            # Engines long gone are of no interest after the history retention.
            conn.execute(
                "DELETE FROM counters WHERE updated < ?",
                (self._clock() - self._history_retention,),
            )

    def counters(self) -> list[tuple[str, float, dict[str, int]]]:
        """Every engine's last saved counters: (owner, when saved, counters), newest first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT owner, updated, counters FROM counters ORDER BY updated DESC"
            ).fetchall()
        return [(owner, updated, json.loads(text)) for owner, updated, text in rows]

    def history(self, *, limit: int = 100) -> list[Attempt]:
        """The latest attempts, newest first.

        Args:
            limit: the most attempts to return.

        Returns:
            The attempts.
        """
        with self._read() as conn:
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

    # --- inspection -----------------------------------------------------------------------

    def entries(self) -> list[SpoolEntry]:
        """Every entry, oldest first, without claiming them or loading their messages.

        Returns:
            The entries, with :attr:`SpoolEntry.message` None.
        """
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, message_id, title, created, attempts, next_attempt, last_error, owner,"
                " size FROM entries ORDER BY created, id"
            ).fetchall()
        return [_entry(row, None) for row in rows]

    def purge(self) -> int:
        """Delete every entry; the history stays.

        Returns:
            How many entries were deleted.
        """
        with self._write() as conn:
            return conn.execute("DELETE FROM entries").rowcount

    def next_due(self) -> float | None:
        """When the earliest entry that this owner could claim is due.

        Returns:
            Epoch seconds (possibly past), or None when no entry is claimable.
        """
        now = self._clock()
        cache: dict[str, bool] = {}
        with self._read() as conn:
            rows = conn.execute(
                "SELECT owner, claimed_at, next_attempt FROM entries"
                " WHERE owner IS NULL OR owner != ? ORDER BY next_attempt, id",
                (self.owner,),
            ).fetchall()
        for owner, claimed_at, next_attempt in rows:
            if self._claimable(owner, claimed_at, now, cache):
                return float(next_attempt)
        return None

    def __len__(self) -> int:
        with self._read() as conn:
            (count,) = conn.execute("SELECT COUNT(*) FROM entries").fetchone()
        return int(count)

    def close(self) -> None:
        """Close the database; idempotent. Claims stay (see :meth:`release`)."""
        self._check_fork()
        with _gate:
            with self._lock:
                conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _entry(fields: Any, message: OutgoingMessage | None) -> SpoolEntry:
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
