"""The spool's SQLite file: opening it, its schema, transactions, and life across forks.

One database in WAL mode (``spool.sqlite3`` in the spool directory) with three
tables: ``entries`` (the undelivered messages, see :mod:`.store`), ``history``
(the attempts, see :mod:`.history`) and ``counters`` (each engine's counters).
Writes are explicit ``BEGIN IMMEDIATE`` transactions, so a read and the update
that depends on it (a claim) run under one write lock across processes, and
``synchronous = FULL`` makes a committed write survive a power loss.

A :class:`Database` is safe to use from several threads (one connection behind
a lock) and survives a fork: the child opens a connection of its own.

It also survives losing its file. Before each use it checks that the path
still names the file it has open: when the file or its whole directory was
deleted, it re-creates them and copies what it still holds (its connection
keeps the deleted file readable) into the new file; when another process
replaced the file, it opens the new one. A file that SQLite finds corrupt is
moved aside as ``spool.sqlite3.corrupt-<time>`` and a new one is created.
Each of these is told in one line (to stderr by default) and kept in
:attr:`Database.recovered`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..._util.stderr import warn
from .gate import sqlite_gate

__all__ = ["BUSY_TIMEOUT", "SCHEMA_VERSION", "Database"]

BUSY_TIMEOUT = 30.0
"""Seconds a write waits for another process's transaction before failing."""
SCHEMA_VERSION = 1
_DIRECTORY_MODE = 0o700  # as the Spool makes it: log text and tracebacks, owner only
# SQLite's result codes: a lock held elsewhere; a file damaged or not a database at all.
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26

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

    def __init__(self, path: Path, *, on_problem: Callable[[str], None] | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._tell = on_problem or warn
        #: What the last recovery did, in one line (None when none was needed).
        self.recovered: str | None = None
        self._identity: tuple[int, int] | None = None
        self._waiting = False  # the file is gone and could not be re-created yet
        self._conn: sqlite3.Connection | None = self._open()

    def _open(self) -> sqlite3.Connection:
        """Connect; a corrupt file is moved aside and a new one created."""
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            if not _is_corrupt(exc):
                raise
            self._set_aside(exc)
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        # Processes that create the file together (a pre-fork server's workers,
        # each on its first alert) deadlock on it: each reads it (a shared lock)
        # and then needs it alone to turn WAL on, and SQLite answers one of them
        # "database is locked" at once, without waiting its busy timeout. That
        # lock is free a moment later: try again, outside the gate, so this
        # process's other threads go on meanwhile.
        deadline = time.monotonic() + BUSY_TIMEOUT
        pause = 0.005
        while True:
            try:
                with sqlite_gate():
                    conn = self._connect_gated()
                break
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
        self._identity = _identity(self.path)
        return conn

    def _set_aside(self, exc: sqlite3.DatabaseError) -> None:
        """Move the corrupt file (and its WAL) aside, so a new one can be made."""
        aside = self.path.with_name(
            f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        )
        self.path.replace(aside)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{self.path}{suffix}").replace(f"{aside}{suffix}")
        self._say(
            f"smtp-alerts: the spool {self.path} was corrupt ({exc}); it was moved aside to "
            f"{aside.name} and a new, empty one is used"
        )

    def _say(self, line: str) -> None:
        self.recovered = line
        with contextlib.suppress(Exception):
            self._tell(line)

    def _check_file(self) -> None:
        """Re-open when the path no longer names the file this connection has open."""
        if self._conn is None or _identity(self.path) == self._identity:
            return
        lost = self._conn
        if self.path.exists():  # another process made a new one: use it
            self._conn = self._open()
            self._close_quietly(lost)
            return
        if not _holds_entries(lost):
            # Nothing to keep (a test's temporary folder removed before the
            # process ends): no new folder as litter. Checked again after each
            # use, so a digest written meanwhile brings the file back.
            return
        try:
            self.path.parent.mkdir(mode=_DIRECTORY_MODE, parents=True, exist_ok=True)
            kept = _copy_into(lost, self.path)
            self._conn = self._open()
        except (OSError, sqlite3.Error) as exc:
            # Not here yet (a full disk, a read-only parent): the deleted file,
            # still open, keeps what it holds; the next use tries again.
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)  # no half-made file to adopt
            self._conn = lost
            if not self._waiting:
                self._waiting = True
                self._say(
                    f"smtp-alerts: the spool {self.path} was deleted and cannot be re-created "
                    f"({exc}); what it holds stays in this process until it can"
                )
            return
        self._waiting = False
        self._close_quietly(lost)
        self._say(
            f"smtp-alerts: the spool {self.path} was deleted while in use; it was "
            f"re-created with the {kept} digest(s) it held"
        )

    @staticmethod
    def _close_quietly(conn: sqlite3.Connection) -> None:
        with sqlite_gate(), contextlib.suppress(sqlite3.Error):
            conn.close()

    def _recover_if_corrupt(self, exc: BaseException) -> None:
        """After an error inside a transaction: set a corrupt file aside for the next use."""
        if not isinstance(exc, sqlite3.DatabaseError) or not _is_corrupt(exc):
            return
        broken, self._conn = self._conn, None
        if broken is not None:
            self._close_quietly(broken)
        with contextlib.suppress(OSError):
            self._set_aside(exc)
        self._conn = self._open()

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
        with self._lock:
            if self._conn is None:
                raise RuntimeError(f"the spool database {self.path} is closed")
            self._check_file()
            try:
                with sqlite_gate():
                    yield self._conn
            except sqlite3.DatabaseError as exc:
                self._recover_if_corrupt(exc)
                raise
            self._check_file()  # what was just written into a deleted file is put back

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


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file is damaged or no database (not busy, not unreadable)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc)
    return "not a database" in text or "malformed" in text


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite says another connection holds the lock it needs (busy or locked)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "is locked" in str(exc)


def _identity(path: Path) -> tuple[int, int] | None:
    """The file's device and inode, or None when the path names no file."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _holds_entries(conn: sqlite3.Connection) -> bool:
    """Whether the database open on ``conn`` holds any digest (True when unreadable)."""
    try:
        with sqlite_gate():
            return bool(conn.execute("SELECT EXISTS (SELECT 1 FROM entries)").fetchone()[0])
    except sqlite3.Error:
        return True


def _copy_into(lost: sqlite3.Connection, path: Path) -> int:
    """Copy a deleted database, still open on ``lost``, into a new file; its entry count."""
    with sqlite_gate():
        target = sqlite3.connect(path)
        try:
            lost.backup(target)
            (count,) = target.execute("SELECT COUNT(*) FROM entries").fetchone()
        finally:
            target.close()
    return int(count)
