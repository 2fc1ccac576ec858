"""The store's interface: what every engine on a store shares, whatever keeps it.

An engine aggregates locally and pushes its deltas (:meth:`IncidentStore.push`);
whichever engine finds a window due claims it (:meth:`IncidentStore.claim_due`),
and the store forms the digest from its own counts, has the engine render it,
and puts it in the outbox, all at once. The SQLite implementation does it in one
transaction; the Redis one (:mod:`.redis`) follows the same contract with
conditional updates: each claim is fenced by the incident's sequence (a claim
whose sequence moved on meanwhile changes nothing), and due times are decided by
the store's own clock, never the caller's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from smtp_alerts.models import Digest, OutgoingMessage

__all__ = ["Claimed", "IncidentStore", "Quota", "Renderer"]

Renderer = Callable[[Digest], OutgoingMessage]
"""Renders a digest the store formed: the engine's, called inside the claim."""


@dataclass(frozen=True, slots=True)
class Quota:
    """Emails per hour and per day for the whole store (the claiming engine's caps).

    Attributes:
        per_hour: emails allowed in any 3600 seconds.
        per_day: emails allowed in any 86400 seconds.
        notice: the line for the digest that takes a window's last slot, from
            (cap, ``"hour"`` or ``"day"``, when it reopens, now).
        delayed: the line for the first digest after the quotas held digests
            back, from (when the first was held back, now).
    """

    per_hour: int
    per_day: int
    notice: Callable[[int, str, float, float], str]
    delayed: Callable[[float, float], str]


@dataclass(frozen=True, slots=True)
class Claimed:
    """A digest the store formed for this engine, already in the outbox.

    Attributes:
        entry_id: its outbox entry, claimed by this engine.
        message: the rendered digest.
    """

    entry_id: int
    message: OutgoingMessage


class IncidentStore(Protocol):
    """Incidents per group, their problems, windows, quotas, thread roots and the outbox."""

    @property
    def polls_remotely(self) -> bool:
        """Whether others change its due times unseen (Redis): then every poll claims.

        A local store's :meth:`next_due` is a cheap read that sees every
        engine's pushes, so an idle engine reads before it takes a write lock.
        """

    def push(self, deltas: Sequence[Digest]) -> None:
        """Add a process's counts since its last push, one delta per group, atomically.

        A delta is a :class:`Digest` as the engine's aggregator forms it: its
        group, its problems (sample, count, first and last seen) and dropped records.
        """

    def claim_due(
        self, render: Renderer, quota: Quota, *, force: bool = False
    ) -> tuple[list[Claimed], float | None]:
        """Form, render and put in the outbox every due digest (every pending one with force).

        Returns:
            The digests claimed, and when the quotas reopen if they held one
            back (None when they did not).
        """

    def next_due(self) -> float | None:
        """When the store's earliest window is due (store clock), or None."""

    def leave(self) -> bool:
        """Say this engine leaves; whether another live one stays (and sends what is due).

        Atomic: of engines leaving together, exactly the last sees none stay.
        """
