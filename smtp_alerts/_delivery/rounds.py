"""Delivery that loses nothing: spool first, then the fallback chain.

Every digest is written to the spool before its first attempt and removed
only when a channel took it, so a crash, a SIGKILL or a restart mid-send
loses nothing that had formed into a digest. What no channel took waits in the
spool with an exponential backoff (with jitter) and is tried again; a flush
tries everything at once. Digests an earlier process left behind are sent
marked as delayed, with their original time, under their original Message-ID.
When the spool cannot be written (a full disk, a read-only file), the digests
are kept in memory instead, said once on stderr, sent from there, and moved
into the spool as soon as it takes writes again.

This module is the engine's only way out: the engine calls
:meth:`Delivery.deliver`, :meth:`Delivery.retry` and reads
:attr:`Delivery.next_retry_at`.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sqlite3
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from .._util.clock import Clock
from ..errors import DeliveryError
from ..models import OutgoingMessage
from .chain import FallbackChain, NoChannelTookError
from .spool import Attempt

__all__ = ["Delivery", "MemorySpool"]

log = logging.getLogger("smtp_alerts.delivery")

#: First pause before a digest no channel took is tried again.
RETRY_BASE = 30.0
#: Longest pause between two rounds of attempts at one digest.
RETRY_CAP = 900.0

#: What a spool raises when it cannot write: a full disk, EFBIG, SQLITE_FULL, read-only.
_WRITE_ERRORS = (sqlite3.Error, OSError)


class _Entry(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def created(self) -> float: ...
    @property
    def attempts(self) -> int: ...
    @property
    def title(self) -> str: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def message(self) -> OutgoingMessage | None: ...


class SpoolLike(Protocol):
    """What delivery needs of a spool: the SQLite one, or :class:`MemorySpool`."""

    def add(self, message: OutgoingMessage, *, claimed: bool = True) -> int: ...
    def claim_due(self, *, limit: int = 50, force: bool = False) -> Sequence[_Entry]: ...
    def delivered(self, entry_id: int) -> None: ...
    def failed(self, entry_id: int, *, error: str, next_attempt: float) -> None: ...
    def entries(self) -> Sequence[_Entry]: ...
    def record_attempt(self, attempt: Attempt) -> None: ...
    def next_due(self) -> float | None: ...
    def release(self) -> None: ...
    def close(self) -> None: ...
    def __len__(self) -> int: ...
    @property
    def seen(self) -> int: ...


@dataclass(frozen=True, slots=True)
class _MemoryEntry:
    id: int
    created: float
    attempts: int
    next_attempt: float
    title: str
    last_error: str | None
    message: OutgoingMessage | None
    claimed: bool = False


class MemorySpool:
    """A spool that lives in memory: for tests and when ``SPOOL_DIR`` is unusable.

    It keeps what no channel took for as long as the process lives (not across
    a restart).
    """

    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock
        self._entries: dict[int, _MemoryEntry] = {}
        self._next_id = 1
        self.attempts: deque[Attempt] = deque(maxlen=1000)

    def record_attempt(self, attempt: Attempt) -> None:
        """Keep the attempt in a bounded in-memory log."""
        self.attempts.append(attempt)

    def add(self, message: OutgoingMessage, *, claimed: bool = True) -> int:
        """Keep ``message``; returns its id."""
        entry_id, self._next_id = self._next_id, self._next_id + 1
        now = self._clock()
        self._entries[entry_id] = _MemoryEntry(
            entry_id, now, 0, now, message.title, None, message, claimed
        )
        return entry_id

    def claim_due(self, *, limit: int = 50, force: bool = False) -> list[_MemoryEntry]:
        """Claim what is due (everything with ``force``)."""
        now = self._clock()
        due = [
            e for e in self._entries.values() if not e.claimed and (force or e.next_attempt <= now)
        ][:limit]
        for entry in due:
            self._entries[entry.id] = replace(entry, claimed=True)
        return due

    def delivered(self, entry_id: int) -> None:
        """Forget a delivered message."""
        self._entries.pop(entry_id, None)

    def failed(self, entry_id: int, *, error: str, next_attempt: float) -> None:
        """Keep a message for another attempt."""
        entry = self._entries.get(entry_id)
        if entry is not None:
            self._entries[entry_id] = replace(
                entry,
                attempts=entry.attempts + 1,
                next_attempt=next_attempt,
                last_error=error,
                claimed=False,
            )

    def entries(self) -> list[_MemoryEntry]:
        """Everything kept."""
        return list(self._entries.values())

    def next_due(self) -> float | None:
        """When the next unclaimed entry is due."""
        return min((e.next_attempt for e in self._entries.values() if not e.claimed), default=None)

    def release(self) -> None:
        """Release every claim."""
        for entry_id, entry in self._entries.items():
            self._entries[entry_id] = replace(entry, claimed=False)

    def close(self) -> None:
        """Nothing to close: the entries live as long as the engine."""

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def seen(self) -> int:
        """How many entries are kept (counted in memory: always current)."""
        return len(self._entries)


class Delivery:
    """Sends rendered digests through the chain, keeping each in the spool until taken.

    Args:
        chain: the channels, in order.
        spool: where digests wait (the SQLite spool, or a :class:`MemorySpool`).
        clock: the engine's clock.
        started: when this engine started: entries older than this were left
            by an earlier process and are marked as delayed.
        mark_delayed: re-renders a message as delayed (same Message-ID).
        on_problem: tells a person (one line) that the spool cannot be written.
    """

    def __init__(
        self,
        chain: FallbackChain,
        *,
        spool: SpoolLike,
        clock: Clock,
        started: float,
        mark_delayed: Callable[[OutgoingMessage, float], OutgoingMessage] | None = None,
        on_problem: Callable[[str], None] | None = None,
    ) -> None:
        self.chain = chain
        self.spool = spool
        self._clock = clock
        self._started = started
        self._mark_delayed = mark_delayed
        self.sent = 0
        self._left_at_close: int | None = None
        # Where digests wait while the spool refuses writes: sent from here,
        # moved into the spool as soon as it takes writes again.
        self._memory = MemorySpool(clock=clock)
        self._on_problem = on_problem or log.warning
        self._said_full = False

    @property
    def pending(self) -> int:
        """Digests waiting in the spool or memory (as at :meth:`close`, once closed)."""
        if self._left_at_close is not None:
            return self._left_at_close
        return len(self.spool) + len(self._memory)

    @property
    def pending_seen(self) -> int:
        """:attr:`pending` as last counted, on the engine's thread: never touches the spool.

        The loop counts at every round (:attr:`next_retry_at` does), so this
        is at most a round old; a thread asking for statistics must not wait
        for the spool's lock while the engine writes to it.
        """
        if self._left_at_close is not None:
            return self._left_at_close
        return self.spool.seen + len(self._memory)

    def recount(self) -> int:
        """Count the waiting digests now; :attr:`pending_seen` says so from then on.

        Never raises: a count that fails (a busy or broken file) leaves the last one.
        """
        try:
            return self.pending
        except (sqlite3.Error, OSError, RuntimeError):
            return self.pending_seen

    @property
    def in_memory(self) -> int:
        """Digests kept in memory only, because the spool could not be written."""
        return len(self._memory)

    def close(self) -> None:
        """Release this process's claims (another may take them over) and close the spool.

        The spool is closed whatever fails before (its connection must not be
        left open); a count that fails leaves the last one.
        """
        try:
            self._move_to_spool()
            self._left_at_close = self.recount()
            self.spool.release()
        finally:
            self.spool.close()

    @property
    def next_retry_at(self) -> float | None:
        """When the next spooled digest (or one kept in memory) is due, or None."""
        due = [d for d in (self.spool.next_due(), self._memory.next_due()) if d is not None]
        return min(due, default=None)

    async def deliver(self, messages: list[OutgoingMessage]) -> bool:
        """Spool every message, then send them; what no channel takes stays spooled.

        All of the round's messages are durable before the first attempt of
        any: a send that hangs and a kill meanwhile must not lose the others.

        Returns:
            Whether every message was taken.
        """
        return await self._send_all([self._keep(message) for message in messages])

    async def send_spooled(self, entries: list[tuple[int, OutgoingMessage]]) -> bool:
        """Send messages already in the spool (and claimed by this owner).

        Args:
            entries: (spool entry id, message) pairs, in sending order.

        Returns:
            Whether every message was taken.
        """
        return await self._send_all([(self.spool, i, message) for i, message in entries])

    async def _send_all(self, entries: list[tuple[SpoolLike, int, OutgoingMessage]]) -> bool:
        ok = True
        try:
            for spool, entry_id, message in entries:
                ok = await self._send(spool, entry_id, message, attempts=0) and ok
        finally:
            await self.chain.aclose()
        return ok

    def _keep(self, message: OutgoingMessage) -> tuple[SpoolLike, int, OutgoingMessage]:
        """Spool ``message``; in memory when the spool cannot be written (said once)."""
        try:
            entry_id = self.spool.add(message)
        except _WRITE_ERRORS as exc:
            if not self._said_full:
                self._said_full = True
                where = getattr(self.spool, "path", "the spool")
                self._on_problem(
                    f"smtp-alerts: cannot write to the spool at {where} ({exc}); alerts are "
                    "kept in memory until the disk has room (lost if the process ends before)"
                )
            return self._memory, self._memory.add(message), message
        self._said_full = False  # the disk has room: a later full disk is said again
        return self.spool, entry_id, message

    def _move_to_spool(self) -> None:
        """Move what waits in memory into the spool, if it takes writes again."""
        for entry in self._memory.entries():
            if entry.claimed or entry.message is None:
                continue
            try:
                self.spool.add(entry.message, claimed=False)
            except _WRITE_ERRORS:
                return  # still no room: try again at the next retry
            self._memory.delivered(entry.id)
            self._said_full = False  # the disk has room: a later full disk is said again

    async def retry(self, *, force: bool = False) -> bool:
        """Send what waits in the spool and is due (everything with ``force``).

        Returns:
            Whether nothing is left for this process (see :meth:`settled`).
        """
        self._move_to_spool()
        entries: list[tuple[SpoolLike, _Entry]] = [
            (self._memory, e) for e in self._memory.claim_due(force=force)
        ]
        try:
            entries += [(self.spool, e) for e in self.spool.claim_due(force=force)]
        except _WRITE_ERRORS:  # no room for the claims: they wait, safe, in the spool
            log.debug("could not claim the spooled digests", exc_info=True)
        if entries:
            try:
                for spool, entry in entries:
                    message = entry.message
                    if message is None:  # unreadable: keep it for a person to look at
                        spool.failed(
                            entry.id, error="unreadable entry", next_attempt=self._later(9)
                        )
                        continue
                    if entry.created < self._started and self._mark_delayed is not None:
                        message = self._mark_delayed(message, entry.created)
                    await self._send(spool, entry.id, message, attempts=entry.attempts)
            finally:
                await self.chain.aclose()
        return self.settled()

    def settled(self) -> bool:
        """Whether nothing waits that this process could send: its own work is done.

        Entries a live sibling on a shared spool is sending are its work, not ours.
        """
        return self.next_retry_at is None

    def undelivered(self) -> list[tuple[str, str | None]]:
        """Title and last error (None if never tried to the end) of every digest waiting.

        Without those a live sibling sharing the spool holds: they are its work.
        """
        mine = getattr(self.spool, "owner", None)
        return [
            (e.title, e.last_error)
            for e in [*self.spool.entries(), *self._memory.entries()]
            if getattr(e, "owner", None) in (None, mine)
        ]

    async def _send(
        self, spool: SpoolLike, entry_id: int, message: OutgoingMessage, *, attempts: int
    ) -> bool:
        try:
            await self.chain.send(message)
        except DeliveryError as error:
            # A full disk may refuse the note: the entry stays claimed, kept, and is retried.
            with contextlib.suppress(*_WRITE_ERRORS):
                spool.failed(entry_id, error=_short(error), next_attempt=self._later(attempts))
            if not isinstance(error, NoChannelTookError):
                log.warning("could not deliver %s: %s", message.message_id, error)
            return False
        self.sent += 1
        try:
            spool.delivered(entry_id)
        except _WRITE_ERRORS:  # sent, but still in the spool: at worst a duplicate later
            log.debug("could not remove a delivered digest", exc_info=True)
        return True

    def _later(self, attempts: int) -> float:
        pause = min(RETRY_CAP, RETRY_BASE * 2.0**attempts)
        return self._clock() + pause * random.uniform(0.8, 1.2)  # noqa: S311 - jitter


def _short(error: DeliveryError) -> str:
    text = str(error)
    return text if len(text) <= 2000 else text[:1997] + "..."
