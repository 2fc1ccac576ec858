"""The Redis store against a real redis-server: the SQLite store's contract, across hosts.

Windows follow Redis's clock (TIME), so these tests use windows of a fraction of
a second and poll for the claim with a deadline; the engines' clocks are
ManualClocks set far apart, to show they decide nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from smtp_alerts._delivery.spool import Spool
from smtp_alerts._engine.render import render as render_digest
from smtp_alerts._store import Claimed, Quota, Renderer, Windows
from smtp_alerts._store.others import PROBLEMS_PER_INCIDENT, is_other
from smtp_alerts._store.redis import RedisStore, RedisUnavailableError
from smtp_alerts.models import Alert, Digest, OutgoingMessage, Problem
from smtp_alerts.testing import ManualClock
from tests.helpers import wait_for
from tests.redis_support import free_port

from ..unit.delivery.test_spool import CONTEXT

QUOTA = Quota(20, 100, notice=lambda *_: "quota reached", delayed=lambda *_: "delayed")
SHORT = Windows(group_wait=0.3, group_interval=0.3, repeat_interval=3600.0)
LONG = Windows(group_wait=3600.0, group_interval=3600.0, repeat_interval=7200.0)


def delta(group: str, key: str, n: int, level: int = logging.ERROR, at: float = 1e9) -> Digest:
    """What an engine pushes: ``n`` occurrences of problem ``key`` in ``group``."""
    alert = Alert(("k", key), level, "app", f"problem {key}", at, group=group)
    return Digest(group, "", 0, (Problem(alert, n, n, at, at, is_new=True),), at)


def render(digest: Digest) -> OutgoingMessage:
    return render_digest(digest, CONTEXT)


class Hosts:
    """Stores of several "hosts" on one Redis: each its own spool (outbox) and clock."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url, self.tmp_path = url, tmp_path
        self.opened: list[tuple[Spool, RedisStore]] = []

    def store(
        self, name: str, windows: Windows = SHORT, *, skew: float = 0.0, lease: float = 30.0
    ) -> RedisStore:
        clock = ManualClock(1_000_000.0 + skew)
        spool = Spool(self.tmp_path / name, clock=clock, owner=name)
        store = RedisStore(self.url, spool, windows, clock=clock, lease=lease)
        self.opened.append((spool, store))
        return store

    def close(self) -> None:
        for spool, store in self.opened:
            store.close()
            spool.close()


@pytest.fixture
def hosts(redis_url: str, tmp_path: Path) -> Iterator[Hosts]:
    made = Hosts(redis_url, tmp_path)
    yield made
    made.close()


def claim_until(
    store: RedisStore, *, quota: Quota = QUOTA, count: int = 1, using: Renderer = render
) -> list[Claimed]:
    """Claim until ``count`` digests came (the windows are Redis's: poll, bounded)."""
    claimed: list[Claimed] = []

    def enough() -> bool:
        claimed.extend(store.claim_due(using, quota)[0])
        return len(claimed) >= count

    assert wait_for(enough, 10)
    return claimed


def digest_of(claimed: Claimed) -> Digest:
    assert claimed.message.digest is not None
    return claimed.message.digest


def test_pushes_from_many_hosts_are_summed_into_one_digest(hosts: Hosts) -> None:
    """Three hosts push one problem; one of them claims one digest of the sum, once."""
    stores = [hosts.store(f"host-{n}") for n in range(3)]
    for n, store in enumerate(stores):
        store.push([delta("db", "refused", 100 + n)])
    (one,) = claim_until(stores[1])
    (problem,) = digest_of(one).problems
    assert problem.count == 100 + 101 + 102
    assert stores[0].claim_due(render, QUOTA) == ([], None)
    assert stores[2].claim_due(render, QUOTA) == ([], None)
    assert stores[2].next_due() is None
    # In the claimer's own outbox, claimed by it, before any attempt.
    assert [e.id for e in stores[1]._spool.entries()] == [one.entry_id]


def test_windows_follow_redis_clock_not_the_hosts(hosts: Hosts) -> None:
    """Hosts' clocks ten minutes apart: each sees the window due GROUP_WAIT from now, its time."""
    behind = hosts.store("behind", LONG, skew=-600)
    ahead = hosts.store("ahead", LONG, skew=+600)
    behind.push([delta("db", "refused", 1)])
    ahead.push([delta("db", "refused", 1)])
    for store in (behind, ahead):
        due = store.next_due()
        assert due is not None
        assert due - store._clock() == pytest.approx(3600, abs=2)
        assert store.claim_due(render, QUOTA) == ([], None)  # not due, whatever its clock says


def test_repeats_wait_repeat_interval_news_group_interval(hosts: Hosts) -> None:
    """After the first digest, a repeat is due REPEAT_INTERVAL on, a new problem GROUP_INTERVAL."""
    store = hosts.store("one")
    store.push([delta("db", "refused", 5)])
    (first,) = claim_until(store)
    store.push([delta("db", "refused", 2)])  # a repeat
    due = store.next_due()
    assert due is not None
    assert due - store._clock() == pytest.approx(3600, abs=2)
    store.push([delta("db", "timeout", 1)])  # news
    (second,) = claim_until(store)
    one, two = digest_of(first), digest_of(second)
    assert (one.sequence, one.reason, [p.count for p in one.problems]) == (1, "new", [5])
    assert (two.sequence, two.reason) == (2, "update")
    assert sorted((p.alert.message, p.count, p.total, p.is_new) for p in two.problems) == [
        ("problem refused", 2, 7, False),
        ("problem timeout", 1, 1, True),
    ]
    assert two.thread_subject == first.message.title  # the first digest heads the thread


def test_critical_skips_the_wait(hosts: Hosts) -> None:
    store = hosts.store("one", LONG)
    store.push([delta("app", "crash", 1, level=logging.CRITICAL)])
    (claimed,), _ = store.claim_due(render, QUOTA)
    assert digest_of(claimed).reason == "critical"


def test_a_failing_render_gives_its_counts_back_and_spares_the_others(hosts: Hosts) -> None:
    store = hosts.store("one")
    store.push([delta("bad", "odd", 3), delta("good", "plain", 4)])

    def fussy(digest: Digest) -> OutgoingMessage:
        if digest.group == "bad":
            raise UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed")
        return render(digest)

    got = claim_until(store, using=fussy)
    assert [digest_of(c).group for c in got] == ["good"]
    (again,) = claim_until(store)
    assert (digest_of(again).group, [p.count for p in digest_of(again).problems]) == ("bad", [3])


def test_quota_is_shared_by_the_hosts_and_reopens(hosts: Hosts) -> None:
    """Two hosts, one hourly cap of 2: the third digest is held, whoever claims."""
    a, b = hosts.store("a"), hosts.store("b")
    quota = Quota(2, 100, notice=lambda *_: "quota reached", delayed=lambda *_: "delayed")
    for group in ("one", "two", "three"):
        a.push([delta(group, group, 1)])
    claimed = claim_until(b, quota=quota, count=2)
    assert len(claimed) == 2
    assert digest_of(claimed[1]).notices == ("quota reached",)
    got, held = a.claim_due(render, quota)
    assert got == []
    assert held is not None
    assert held - a._clock() == pytest.approx(3600, abs=2)  # on a's clock


def test_a_claim_whose_claimer_died_is_sent_again_after_its_lease(hosts: Hosts) -> None:
    """A claimer dies between claim and acknowledgement: its lease expires, counts come back."""
    dying, other = hosts.store("dying", lease=0.3), hosts.store("other")
    dying.push([delta("db", "refused", 7)])

    class Died(BaseException):
        """The process ends here: nothing after the claim runs."""

    def die(digest: Digest) -> OutgoingMessage:
        raise Died

    assert wait_for(lambda: _claims_and_dies(dying, die, Died), 10)
    (again,) = claim_until(other)
    digest = digest_of(again)
    assert [(p.count, p.is_new) for p in digest.problems] == [(7, True)]
    assert other.claim_due(render, QUOTA) == ([], None)  # once


def _claims_and_dies(store: RedisStore, die: object, died: type[BaseException]) -> bool:
    try:
        store.claim_due(die, QUOTA)  # type: ignore[arg-type]
    except died:
        return True
    return False


def test_an_acknowledged_claim_is_never_given_back(hosts: Hosts) -> None:
    store = hosts.store("one", lease=0.2)
    store.push([delta("db", "refused", 1)])
    claim_until(store)
    with redis.Redis.from_url(hosts.url) as client:
        assert client.zcard("{smtp-alerts:default}:leases") == 0
        assert not list(client.scan_iter("{smtp-alerts:default}:f:*"))


def test_the_last_engine_out_is_told_so(hosts: Hosts) -> None:
    a, b = hosts.store("a"), hosts.store("b")
    a.push([])
    b.claim_due(render, QUOTA)  # both have ticked: both are members
    assert a.leave() is True  # b stays
    assert b.leave() is False  # nobody stays: b sends what is pending


def test_an_incident_keeps_its_cap_of_problems_whatever_the_hosts_push(hosts: Hosts) -> None:
    """Hosts each under the cap push more distinct problems than an incident keeps."""
    first, second = hosts.store("one", LONG), hosts.store("two", LONG)
    half = PROBLEMS_PER_INCIDENT // 2 + 10
    first.push([delta("db", f"one-{n}", 1) for n in range(half)])
    second.push([delta("db", f"two-{n}", 2) for n in range(half)])
    second.push([delta("db", "two-0", 3)])  # a kept problem still counts as itself
    (claimed,), _ = first.claim_due(render, QUOTA, force=True)
    digest = digest_of(claimed)
    kept = [p for p in digest.problems if not is_other(p.alert.fingerprint)]
    (row,) = [p for p in digest.problems if is_other(p.alert.fingerprint)]
    assert len(kept) == PROBLEMS_PER_INCIDENT
    assert row.count == 2 * (2 * half - PROBLEMS_PER_INCIDENT)
    assert row.alert.context[0] == ("example", "problem two-490")
    assert sum(p.count for p in digest.problems) == half + 2 * half + 3
    assert digest.reason == "flush"


def test_an_unreachable_redis_is_a_bounded_error_without_the_password(
    tmp_path: Path,
) -> None:
    """Nothing listens: the store raises within its timeouts, naming host:port only."""
    port = free_port()
    clock = ManualClock()
    spool = Spool(tmp_path, clock=clock)
    store = RedisStore(f"redis://:s3cret@127.0.0.1:{port}/0", spool, SHORT, clock=clock)
    try:
        with pytest.raises(RedisUnavailableError) as caught:
            store.push([delta("db", "refused", 1)])
        text = f"{caught.value} {caught.value!r} {caught.value.__cause__!r}"
        assert f"127.0.0.1:{port}" in text
        assert "s3cret" not in text
        assert caught.value.__context__ is None or "s3cret" not in repr(caught.value.__context__)
    finally:
        store.close()
        spool.close()


def test_a_tick_past_its_deadline_changes_nothing_and_the_next_one_resyncs(
    hosts: Hosts,
) -> None:
    """A tick Redis sees after its deadline (as a frozen Redis would run it) is refused,
    its counts untouched in Redis; the store learns Redis's time again and goes on."""
    store = hosts.store("one", LONG)
    store.push([delta("db", "refused", 1)])
    assert store._synced is not None
    redis_time, mono = store._synced
    store._synced = (redis_time - 60, mono)  # as if Redis's clock jumped a minute ahead
    with pytest.raises(RedisUnavailableError):
        store.push([delta("db", "refused", 5)])
    store.push([delta("db", "refused", 2)])
    (claimed,), _ = store.claim_due(render, QUOTA, force=True)
    assert [p.count for p in digest_of(claimed).problems] == [3]  # 1 + 2, never the 5
