"""The engine's side of the shared store: pushing its counts, claiming due windows.

:class:`StoreLink` connects one engine to the :class:`~smtp_alerts._store.IncidentStore`
its spool lives beside. The engine keeps aggregating locally (cheap, in memory);
every tick the link forms the local pending counts into deltas and pushes them
(the SQLite work on a worker thread, so the loop keeps draining the intake), and
each round it asks the store to claim what is due: the store forms those digests
from everyone's counts, the engine's renderer renders them, and they are in the
outbox before any attempt. When the store refuses (busy, read-only) the deltas
go back into the local aggregator and the engine sends on its own: duplicates
across processes, never a loss.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import replace

from .._store import Claimed, IncidentStore, Quota
from .._util.clock import Clock
from ..models import Digest, OutgoingMessage
from .aggregator import Aggregator
from .limits import EmailQuota, Grant, quota_notice
from .silencing import Silencer

__all__ = ["StoreLink", "StoreUnavailableError"]

log = logging.getLogger("smtp_alerts.engine")


class StoreUnavailableError(Exception):
    """The shared store refused a read or a write: this engine sends on its own."""


class StoreLink:
    """Pushes an engine's counts to the store and claims what the store says is due.

    Used on the engine's loop only (the SQLite work runs on its worker threads).

    Args:
        store: the shared store.
        aggregator: the engine's local aggregation, drained into the store.
        render: renders a digest the store formed.
        quota: the engine's quota object: its caps and notice texts (the counting
            itself is the store's, shared by every engine on it).
        clock: the store's clock (the engine's, for the SQLite store).
        silencer: the store's silences, applied to what is pushed.
    """

    def __init__(
        self,
        store: IncidentStore,
        aggregator: Aggregator,
        render: Callable[[Digest], OutgoingMessage],
        quota: EmailQuota,
        clock: Clock,
        *,
        silencer: Silencer | None = None,
    ) -> None:
        self.store = store
        self._silencer = silencer
        self._clock = clock
        self._aggregator = aggregator
        self._render = render
        self._quota = Quota(
            quota.per_hour,
            quota.per_day,
            notice=quota_notice,
            delayed=lambda since, at: quota.delayed_notice(Grant(at=at, delayed_since=since)),
        )
        self._lock = asyncio.Lock()
        self._held_until: float | None = None

    async def push(self) -> None:
        """Move every local pending count into the store; one transaction, off the loop.

        Raises:
            StoreUnavailableError: the store refused; the counts are local again.
        """
        async with self._lock:
            aggregator = self._aggregator
            deltas = [
                d for g in aggregator.pending_groups() if (d := aggregator.form(g, delta=True))
            ]
            if not deltas:
                return
            try:
                await asyncio.get_running_loop().run_in_executor(None, self._push_now, deltas)
            except (sqlite3.Error, OSError, ValueError, TypeError) as exc:
                for delta in deltas:
                    aggregator.restore(delta)
                log.debug("pushing to the store failed", exc_info=True)
                raise StoreUnavailableError(str(exc)) from exc

    def _push_now(self, deltas: list[Digest]) -> None:
        """Push, silenced problems taken out (their counts go to their silences)."""
        if self._silencer is not None:
            deltas = self._silencer.split(deltas)
        self.store.push(deltas)

    def _claim_now(self, *, force: bool) -> tuple[list[Claimed], float | None]:
        """Claim; the first digest says what silences that ended held."""
        silencer = self._silencer
        lines, ended = silencer.ended() if silencer is not None else ((), [])
        said: list[bool] = []

        def render(digest: Digest) -> OutgoingMessage:
            if lines and not said:
                digest = replace(digest, notices=(*digest.notices, *lines))
            message = self._render(digest)
            said.append(True)
            return message

        result = self.store.claim_due(render, self._quota, force=force)
        if silencer is not None and ended and (said or not lines):
            silencer.forget(ended)
        return result

    async def claim(self, *, force: bool) -> tuple[list[tuple[int, OutgoingMessage]], bool]:
        """Push, then claim the due windows (every pending one with ``force``).

        Returns:
            (outbox entry id, message) of each digest claimed, and whether the
            store's quotas held one back (then :meth:`next_due` waits for them).

        Raises:
            StoreUnavailableError: the store refused.
        """
        await self.push()
        if not force and not self.store.polls_remotely:
            # A read first: an idle engine polling must not take the write lock.
            due = self.next_due()
            if due is None or due > self._clock():
                return [], self.held_back
        try:
            claimed, self._held_until = await asyncio.get_running_loop().run_in_executor(
                None, lambda: self._claim_now(force=force)
            )
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailableError(str(exc)) from exc
        return [(c.entry_id, c.message) for c in claimed], self.held_back

    async def leave(self) -> bool:
        """At exit: push, say this engine leaves; whether a live sibling stays to send.

        Raises:
            StoreUnavailableError: the store refused.
        """
        await self.push()
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self.store.leave)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailableError(str(exc)) from exc

    @property
    def held_back(self) -> bool:
        """Whether the store's quotas held back a digest at the last claim."""
        return self._held_until is not None

    def next_due(self) -> float | None:
        """When the store's earliest window is due (not before the quotas reopen)."""
        try:
            due = self.store.next_due()
        except (sqlite3.Error, OSError):
            return None
        if due is None or self._held_until is None:
            return due
        return max(due, self._held_until)  # no busy loop while the quotas are full
