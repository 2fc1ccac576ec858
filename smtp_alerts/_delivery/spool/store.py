"""The spool itself: the durable, bounded, multi-process store of undelivered messages.

:class:`Spool` is what the delivery rounds and ``smtp-alerts spool`` use. It
adds a rendered message before its first attempt and deletes it when a
channel accepted it, lists and purges entries, and puts the other concepts of
this package behind one object: the database (:mod:`.database`), claims
(:mod:`.claims`), the history (:mod:`.history`) and merging when full
(:mod:`.overflow`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType

from smtp_alerts._delivery.serialize import MessageRow, message_to_row
from smtp_alerts._util.clock import SYSTEM_CLOCK, Clock
from smtp_alerts.models import OutgoingMessage

from . import claims
from . import history as history_table
from .claims import DEFAULT_CLAIM_LIMIT, DEFAULT_LEASE, Claimant
from .database import Database
from .entry import ENTRY_COLUMNS, SpoolEntry, entry_from_row
from .history import DEFAULT_HISTORY_RETENTION, Attempt
from .overflow import Summarizer, merge_oldest
from .probe import SPOOL_FILENAME

__all__ = ["DEFAULT_MAX_ENTRIES", "DIRECTORY_MODE", "SPOOL_FILENAME", "Spool"]

DEFAULT_MAX_ENTRIES = 1000
DIRECTORY_MODE = 0o700  # the spool holds log messages and tracebacks: owner only


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
        on_problem: told, in one line, when the file was found corrupt or
            deleted and was re-created (stderr by default); see :attr:`recovered`.

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
        summarize: Summarizer | None = None,
        lease: float = DEFAULT_LEASE,
        on_problem: Callable[[str], None] | None = None,
    ) -> None:
        if max_entries < 2:
            # Merging needs room for the summary and at least one other entry.
            raise ValueError(f"max_entries must be at least 2, not {max_entries}")
        self.directory = Path(directory)
        self.path = self.directory / SPOOL_FILENAME
        self._clock = clock
        self._max_entries = max_entries
        self._history_retention = history_retention
        self._summarize = summarize
        self._claimant = Claimant(owner, lease, self.directory)
        #: How many entries the spool held when this object last counted them:
        #: at every :meth:`next_due` (the engine's loop asks every round), at
        #: ``len``, and after each of its own adds and deletes. A figure to
        #: show without touching the file (a sibling's changes show at the
        #: next count).
        self.seen = 0
        self.directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        self._db = Database(self.path, on_problem=on_problem)

    def __repr__(self) -> str:
        return f"Spool({str(self.directory)!r}, owner={self.owner!r})"

    @property
    def recovered(self) -> str | None:
        """What the last recovery of the file did (moved aside, re-created), or None."""
        return self._db.recovered

    @property
    def owner(self) -> str:
        """The name written in this spool's claims (``host:pid:start-time:nonce`` by default)."""
        return self._claimant.owner

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
        now = self._clock()
        with self._db.write() as conn:
            entry_id, inserted = self._insert(conn, message, row, now, claimed=claimed)
        if inserted:
            # Apart from the insert: the message is stored whatever merging does.
            with self._db.write() as conn:
                merge_oldest(
                    conn,
                    self._claimant,
                    max_entries=self._max_entries,
                    summarize=self._summarize,
                    now=self._clock(),
                )
                self._count(conn)
        return entry_id

    def _count(self, conn: sqlite3.Connection) -> int:
        """Count the entries (see :attr:`seen`)."""
        (count,) = conn.execute("SELECT COUNT(*) FROM entries").fetchone()
        self.seen = int(count)
        return self.seen

    def _insert(
        self,
        conn: sqlite3.Connection,
        message: OutgoingMessage,
        row: MessageRow,
        now: float,
        *,
        claimed: bool,
    ) -> tuple[int, bool]:
        """Insert the entry, or find the one with its Message-ID: (its id, whether inserted)."""
        owner = self.owner if claimed else None
        existing = conn.execute(
            "SELECT id, owner, claimed_at FROM entries WHERE message_id = ?",
            (message.message_id,),
        ).fetchone()
        if existing is not None:
            entry_id, held_by, claimed_at = existing
            if claimed and self._claimant.may_take(held_by, claimed_at, now, {}):
                conn.execute(
                    "UPDATE entries SET owner = ?, claimed_at = ? WHERE id = ?",
                    (owner, now, entry_id),
                )
            return int(entry_id), False
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
                json.dumps(row.meta),  # ensure_ascii: lone surrogates from logs survive
                row.email,
            ),
        )
        assert cursor.lastrowid is not None  # noqa: S101 - an INSERT always sets it
        return cursor.lastrowid, True

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction on the spool's file, for the store beside it."""
        return self._db.write()

    def reading(self) -> AbstractContextManager[sqlite3.Connection]:
        """The spool's connection for reads (no write lock), for the store beside it."""
        return self._db.read()

    def add_in(self, conn: sqlite3.Connection, message: OutgoingMessage) -> int:
        """Store ``message``, claimed by this owner, inside the caller's transaction.

        No merging of the oldest entries here: the next :meth:`add` merges.

        Returns:
            The entry's id.
        """
        entry_id, inserted = self._insert(
            conn, message, message_to_row(message), self._clock(), claimed=True
        )
        if inserted:
            self._count(conn)
        return entry_id

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
        with self._db.write() as conn:
            return claims.claim_due(conn, self._claimant, now, limit=limit, force=force)

    def delivered(self, entry_id: int) -> None:
        """Delete an entry: a channel accepted its message.

        Args:
            entry_id: the entry's id.
        """
        with self._db.write() as conn:
            conn.execute("DELETE FROM entries WHERE id = ?", (entry_id,))
            self._count(conn)

    def failed(self, entry_id: int, *, error: str, next_attempt: float) -> None:
        """Count a failed attempt, note its error, and release the claim.

        Does nothing when another owner took the entry over meanwhile.

        Args:
            entry_id: the entry's id.
            error: what went wrong, shown by ``spool list``.
            next_attempt: when to try again, epoch seconds.
        """
        with self._db.write() as conn:
            claims.mark_failed(conn, self.owner, entry_id, error=error, next_attempt=next_attempt)

    def release(self) -> None:
        """Release every claim this owner holds, e.g. on a clean shutdown."""
        with self._db.write() as conn:
            claims.release(conn, self.owner)

    def next_due(self) -> float | None:
        """When the earliest entry that this owner could claim is due.

        Returns:
            Epoch seconds (possibly past), or None when no entry is claimable.
        """
        now = self._clock()
        with self._db.read() as conn:
            due, self.seen = claims.next_due(conn, self._claimant, now)
        return due

    # --- history --------------------------------------------------------------------------

    def record_attempt(self, attempt: Attempt) -> None:
        """Add an attempt to the history, and prune what is past the retention.

        Args:
            attempt: the attempt.
        """
        with self._db.write() as conn:
            keep_after = self._clock() - self._history_retention
            history_table.record_attempt(conn, attempt, keep_after=keep_after)

    def save_counters(self, counters: Mapping[str, int]) -> None:
        """Keep this owner's counters, so ``smtp-alerts spool list`` can show them.

        Args:
            counters: name to value, e.g. ``{"accepted": 12, "sent.smtp.gmail.com:587": 2}``.
        """
        now = self._clock()
        with self._db.write() as conn:
            history_table.save_counters(
                conn, self.owner, counters, now=now, keep_after=now - self._history_retention
            )

    def counters(self) -> list[tuple[str, float, dict[str, int]]]:
        """Every engine's last saved counters: (owner, when saved, counters), newest first."""
        with self._db.read() as conn:
            return history_table.load_counters(conn)

    def history(self, *, limit: int = 100) -> list[Attempt]:
        """The latest attempts, newest first.

        Args:
            limit: the most attempts to return.

        Returns:
            The attempts.
        """
        with self._db.read() as conn:
            return history_table.load_history(conn, limit=limit)

    # --- inspection -----------------------------------------------------------------------

    def entries(self) -> list[SpoolEntry]:
        """Every entry, oldest first, without claiming them or loading their messages.

        Returns:
            The entries, with :attr:`SpoolEntry.message` None.
        """
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT {ENTRY_COLUMNS} FROM entries ORDER BY created, id"  # noqa: S608 - constant column names, no input
            ).fetchall()
        return [entry_from_row(row, None) for row in rows]

    def purge(self) -> int:
        """Delete every entry; the history stays.

        Returns:
            How many entries were deleted.
        """
        with self._db.write() as conn:
            deleted = conn.execute("DELETE FROM entries").rowcount
            self._count(conn)
        return deleted

    def __len__(self) -> int:
        with self._db.read() as conn:
            return self._count(conn)

    def close(self) -> None:
        """Close the database; idempotent. Claims stay (see :meth:`release`)."""
        self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
