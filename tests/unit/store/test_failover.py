"""FailoverStore: Redis while it answers, the host's store while it does not, said once."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from smtp_alerts._engine.render import render as render_digest
from smtp_alerts._store import Claimed, Quota, Renderer
from smtp_alerts._store.failover import FailoverStore
from smtp_alerts.models import Alert, Digest, OutgoingMessage, Problem

from ..delivery.test_spool import CONTEXT

QUOTA = Quota(20, 100, notice=lambda *_: "quota reached", delayed=lambda *_: "delayed")


class Held:
    """A store that keeps pushed deltas and forms one digest of them when claimed."""

    polls_remotely = False
    where = "redis.example:6379"

    def __init__(self) -> None:
        self.deltas: list[Digest] = []
        self.up = True
        self.stays = False

    def _check(self) -> None:
        if not self.up:
            raise OSError(f"Redis at {self.where} did not answer (TimeoutError)")

    def ping(self) -> None:
        self._check()

    def push(self, deltas: Sequence[Digest]) -> None:
        self._check()
        self.deltas += deltas

    def claim_due(
        self, render: Renderer, quota: Quota, *, force: bool = False
    ) -> tuple[list[Claimed], float | None]:
        self._check()
        if not self.deltas:
            return [], None
        problems = tuple(p for d in self.deltas for p in d.problems)
        self.deltas = []
        return [Claimed(1, render(Digest("default", "i", 1, problems, 0.0)))], None

    def next_due(self) -> float | None:
        return 0.0 if self.deltas else None

    def leave(self) -> bool:
        self._check()
        return self.stays


def delta(n: int) -> Digest:
    alert = Alert(("k",), logging.ERROR, "app", "db refused", 0.0)
    return Digest("default", "", 0, (Problem(alert, n, n, 0.0, 0.0, is_new=True),), 0.0)


def render(digest: Digest) -> OutgoingMessage:
    return render_digest(digest, CONTEXT)


def counts(claimed: list[Claimed]) -> list[int]:
    return [c.message.digest.events for c in claimed if c.message.digest is not None]


def notices(claimed: list[Claimed]) -> list[tuple[str, ...]]:
    return [c.message.digest.notices for c in claimed if c.message.digest is not None]


def test_an_outage_moves_counts_to_the_local_store_says_so_once_and_comes_back() -> None:
    remote, local = Held(), Held()
    said: list[str] = []
    store = FailoverStore(remote, local, say=said.append, probe_every=0.0, clock=lambda: 3600.0)
    store.push([delta(1)])
    remote.up = False
    store.push([delta(2)])  # refused by Redis: kept by the host
    store.push([delta(3)])
    assert (sum(d.events for d in remote.deltas), sum(d.events for d in local.deltas)) == (1, 5)
    assert len(said) == 1
    assert "this host sends on its own" in said[0]
    claimed, _ = store.claim_due(render, QUOTA)  # Redis still away: the host's digest
    assert counts(claimed) == [5]
    assert "is unreachable since 01:00 UTC" in notices(claimed)[0][-1]
    remote.up = True
    store.push([delta(4)])  # probed, answered: back on Redis
    assert store.shared
    assert said[1] == "smtp-alerts: Redis at redis.example:6379 answers again; sharing through it"
    claimed, _ = store.claim_due(render, QUOTA)
    assert counts(claimed) == [5]  # the 1 before and the 4 after
    (line,) = notices(claimed)[0]
    assert line == (
        "Redis at redis.example:6379 was unreachable from 01:00 UTC to 01:00 UTC; "
        "this host sent on its own: duplicates possible"
    )


def test_the_hosts_leftovers_are_claimed_while_on_redis() -> None:
    remote, local = Held(), Held()
    local.deltas.append(delta(7))  # an earlier process on this host left them
    store = FailoverStore(remote, local, say=lambda _: None)
    claimed, _ = store.claim_due(render, QUOTA)
    assert counts(claimed) == [7]


def test_leaving_hands_over_only_when_both_stores_have_someone() -> None:
    remote, local = Held(), Held()
    store = FailoverStore(remote, local, say=lambda _: None)
    remote.stays = True
    assert store.leave() is True  # the local store holds nothing
    local.deltas.append(delta(1))
    assert store.leave() is False  # the host's leftovers have nobody: send all
    local.stays = True
    assert store.leave() is True
    remote.up = False
    local.stays = False
    assert store.leave() is False  # Redis away: the host's store decides
