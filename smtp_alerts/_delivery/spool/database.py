"""The spool's SQLite file: opening it, its schema, transactions, and life across forks.

One database in WAL mode (``spool.sqlite3`` in the spool directory) with three
tables: ``entries`` (the undelivered messages, see :mod:`.store`), ``history``
(the attempts, see :mod:`.history`) and ``counters`` (each engine's counters).
Writes are explicit ``BEGIN IMMEDIATE`` transactions, so a read and the update
that depends on it (a claim) run under one write lock across processes, and
``synchronous = FULL`` makes a committed write survive a power loss.

A :class:`Database` is safe to use from several threads (one connection behind
a lock) and survives a fork: the child opens a connection of its own.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .gate import sqlite_gate

__all__ = ["BUSY_TIMEOUT", "SCHEMA_VERSION", "Database"]

BUSY_TIMEOUT = 30.0
"""Seconds a write waits for another process's transaction before failing."""
SCHEMA_VERSION = 1

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


class Database:
    """One connection to the spool's database, shared by threads, renewed after a fork.

    Args:
        path: the database file; its directory must exist.

    Raises:
        ValueError: the database was written by a newer version of the library.
        sqlite3.Error: the database cannot be opened.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._conn: sqlite3.Connection | None = self._connect()

    def _connect(self) -> sqlite3.Connection:
        with sqlite_gate():
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
        # connection, nor its lock (possibly held by a thread the child lacks).
        if os.getpid() == self._pid:
            return
        self._pid = os.getpid()
        self._lock = threading.Lock()
        inherited, self._conn = self._conn, None
        if inherited is not None:
            self._conn = self._connect()
            # Closing it in the child releases nothing of the parent's: POSIX locks
            # belong to the process that took them.
            with sqlite_gate():
                inherited.close()

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """The connection, for reads, with the gate and the lock held.

        Raises:
            RuntimeError: the database is closed.
        """
        self._check_fork()
        with sqlite_gate(), self._lock:
            if self._conn is None:
                raise RuntimeError(f"the spool database {self.path} is closed")
            yield self._conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """The connection inside a ``BEGIN IMMEDIATE`` transaction, committed on success.

        Raises:
            RuntimeError: the database is closed.
        """
        with self.read() as conn:
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

    def close(self) -> None:
        """Close the connection; idempotent."""
        self._check_fork()
        with sqlite_gate():
            with self._lock:
                conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()
