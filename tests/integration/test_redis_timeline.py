"""The Redis store's timelines, against a real redis-server: the SQLite store's semantics.

The hosts' clocks (ManualClocks) date the occurrences and end the timelines, as
they do for the SQLite store; Redis's clock still decides the windows, so the
claims here are forced (or polled for with a deadline) rather than waited for.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import redis

from smtp_alerts._delivery.spool import Spool
from smtp_alerts._store import SqliteStore, Windows
from smtp_alerts._store.failover import FailoverStore
from smtp_alerts._store.redis import RedisStore
from smtp_alerts._store.timeline import MAX_BUCKETS
from smtp_alerts.models import Digest
from smtp_alerts.testing import ManualClock
from tests.helpers import wait_for
from tests.redis_support import free_port

from ..unit.store.test_sqlite_timeline import Engine, over_two_days
from .test_redis_store import QUOTA, SHORT, Hosts, hosts, render

ROOMY = replace(QUOTA, per_hour=1000, per_day=1000)
"""A digest an hour of the hosts' time is many a second of Redis's."""

__all__ = ["hosts"]  # the fixture, shared with the store's own tests

MINUTE, HOUR = 60.0, 3600.0
T0 = 1_000_000.0
"""Where the Hosts' clocks start."""


class Host(Engine):
    """An engine on one host, pushing to the fleet's store; its claims are forced."""

    def __init__(self, store: RedisStore) -> None:
        clock = store._clock
        assert isinstance(clock, ManualClock)  # the Hosts' own
        super().__init__(store, clock)

    def claim_one(self) -> Digest:
        claimed, _ = self.store.claim_due(render, ROOMY, force=True)
        (one,) = claimed
        assert one.message.digest is not None
        return one.message.digest


def test_two_hosts_over_two_days_merge_exactly_and_stay_bounded(
    hosts: Hosts, redis_url: str
) -> None:
    first, second = Host(hosts.store("host-1")), Host(hosts.store("host-2"))
    steps = over_two_days(first, second, second.claim_one, dated_by_store=True)
    assert steps == sorted(steps)
    assert (steps[0], steps[-1]) == (MINUTE, HOUR)
    client = redis.Redis.from_url(redis_url)
    (raw,) = client.hvals("{smtp-alerts:default}:c:default")
    assert 0 < len(json.loads(raw)["b"]) <= MAX_BUCKETS
    client.close()


def test_a_digest_runs_to_the_claimers_time_with_the_same_start_for_every_problem(
    hosts: Hosts,
) -> None:
    host = Host(hosts.store("host"))
    host.occur("a", T0)
    host.occur("b", T0 + 3 * MINUTE)
    host.push()
    host.clock.now = T0 + 6 * MINUTE
    digest = host.claim_one()
    rows = {p.alert.message: p.timeline for p in digest.problems}
    assert rows == {"problem a": (1, 0, 0, 0, 0, 0, 0), "problem b": (0, 0, 0, 1, 0, 0, 0)}
    assert (digest.timeline_start, digest.timeline_step) == (T0 - T0 % MINUTE, MINUTE)


def test_the_second_sample_is_the_latest_pushed_text_unlike_the_first(hosts: Hosts) -> None:
    first, second = Host(hosts.store("host-1")), Host(hosts.store("host-2"))
    first.occur("pay", T0, message="order 1 timed out")
    first.push()
    second.occur("pay", T0 + 1, message="order 1 timed out")
    second.push()
    assert first.claim_one().problems[0].last_message == ""  # the same text
    second.occur("pay", T0 + 20, message="order 2 timed out")
    second.push()
    first.occur("pay", T0 + 21)  # a repeat carries no text
    first.push()
    (problem,) = first.claim_one().problems
    assert (problem.alert.message, problem.last_message) == (
        "order 1 timed out",
        "order 2 timed out",
    )


def test_timelines_and_second_samples_go_with_their_incident(hosts: Hosts, redis_url: str) -> None:
    quick = Windows(group_wait=0.2, group_interval=0.2, repeat_interval=0.5)
    host = Host(hosts.store("host", quick))
    host.occur("pay", T0, message="order 1")
    host.occur("pay", T0 + 1, message="order 2")
    host.push()
    assert host.claim_one().problems[0].last_message == "order 2"
    client = redis.Redis.from_url(redis_url)
    prefix = "{smtp-alerts:default}"
    assert client.exists(f"{prefix}:lm:default", f"{prefix}:c:default") == 2
    # Quiet past the repeat interval (Redis's clock): any tick closes the incident.

    def closed() -> bool:
        host.store.push([])  # a tick
        return client.exists(f"{prefix}:c:default") == 0

    assert wait_for(closed, 10)
    assert client.exists(f"{prefix}:lm:default") == 0
    client.close()


def test_windows_still_follow_redis_clock(hosts: Hosts) -> None:
    """A timeline far in the hosts' past or future changes no window."""
    host = Host(hosts.store("host", SHORT))
    host.occur("a", T0 - 30 * 86400.0)
    host.push()
    assert wait_for(lambda: bool(host.store.claim_due(render, QUOTA)[0]), 10)


def test_a_host_on_its_own_store_while_redis_is_away_still_sends_timelines(
    tmp_path: Path,
) -> None:
    """Redis unreachable: the failover's local SQLite store forms the digest, timelines in it."""
    clock = ManualClock(T0)
    spool = Spool(tmp_path, clock=clock, owner="host")
    away = RedisStore(f"redis://127.0.0.1:{free_port()}/0", spool, SHORT, clock=clock)
    said: list[str] = []
    store = FailoverStore(away, SqliteStore(spool, SHORT, clock=clock), say=said.append)
    try:
        host = Engine(store, clock)
        host.occur("a", T0)
        host.occur("a", T0 + 2 * MINUTE, 3)
        host.push()
        clock.advance(3 * MINUTE)
        claimed, _ = store.claim_due(render, ROOMY, force=True)
        (one,) = claimed
        assert one.message.digest is not None
        assert one.message.digest.problems[0].timeline == (1, 0, 3, 0)
        assert said  # the host said it sends on its own
    finally:
        away.close()
        spool.close()
