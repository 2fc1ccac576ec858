"""The SQLite store: pushes summed, windows decided by its clock, claims atomic."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtp_alerts._delivery.spool import Spool
from smtp_alerts._engine.render import render as render_digest
from smtp_alerts._store import Quota, SqliteStore, Windows
from smtp_alerts.models import Alert, Digest, OutgoingMessage, Problem
from smtp_alerts.testing import ManualClock

from ..delivery.test_spool import CONTEXT

QUOTA = Quota(20, 100, notice=lambda *_: "quota reached", delayed=lambda *_: "delayed")
WINDOWS = Windows(group_wait=10.0, group_interval=300.0, repeat_interval=3600.0)


def delta(clock: ManualClock, group: str, key: str, n: int, level: int = logging.ERROR) -> Digest:
    """What an engine pushes: ``n`` occurrences of problem ``key`` in ``group``."""
    now = clock()
    alert = Alert(("k", key), level, "app", f"problem {key}", now, group=group)
    return Digest(group, "", 0, (Problem(alert, n, n, now, now, is_new=True),), now)


def render(digest: Digest) -> OutgoingMessage:
    """The engine's renderer, as the engine hands it to the store."""
    return render_digest(digest, CONTEXT)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


_OPENED: list[Spool] = []


@pytest.fixture(autouse=True)
def _close_spools() -> Iterator[None]:
    """Every spool a test opened is closed (Python 3.13 warns of an unclosed database)."""
    yield
    while _OPENED:
        _OPENED.pop().close()


def open_store(path: Path, clock: ManualClock, owner: str | None = None) -> SqliteStore:
    spool = Spool(path, clock=clock, owner=owner)
    _OPENED.append(spool)
    return SqliteStore(spool, WINDOWS, clock=clock)


def test_pushes_from_many_engines_are_summed_into_one_digest(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Three engines push the same problem; the due window forms one digest of their sum."""
    stores = [open_store(tmp_path, clock, f"engine-{n}") for n in range(3)]
    for n, store in enumerate(stores):
        store.push([delta(clock, "db", "refused", 100 + n)])
    assert stores[0].claim_due(render, QUOTA) == ([], None)  # GROUP_WAIT not over
    clock.advance(10)
    claimed, held = stores[1].claim_due(render, QUOTA)
    assert held is None
    (one,) = claimed
    assert one.message.digest is not None
    (problem,) = one.message.digest.problems
    assert problem.count == 100 + 101 + 102
    assert stores[2].claim_due(render, QUOTA) == ([], None)  # claimed once only
    assert stores[0].next_due() is None


def test_claim_forms_counts_and_windows_like_the_aggregator(
    tmp_path: Path, clock: ManualClock
) -> None:
    """First digest after GROUP_WAIT; repeats wait REPEAT_INTERVAL, news GROUP_INTERVAL."""
    store = open_store(tmp_path, clock)
    formed: list[Digest] = []

    def keep(digest: Digest) -> OutgoingMessage:
        formed.append(digest)
        return render(digest)

    store.push([delta(clock, "db", "refused", 5)])
    clock.advance(10)
    store.claim_due(keep, QUOTA)
    store.push([delta(clock, "db", "refused", 2)])  # a repeat
    assert store.next_due() == pytest.approx(clock() + 3600)
    store.push([delta(clock, "db", "timeout", 1)])  # news
    assert store.next_due() == pytest.approx(clock() + 300)
    clock.advance(300)
    store.claim_due(keep, QUOTA)
    first, second = formed
    first_title = render(first).title
    assert (first.sequence, first.reason, [p.count for p in first.problems]) == (1, "new", [5])
    assert second.sequence == 2
    assert second.reason == "update"
    assert sorted((p.alert.message, p.count, p.total) for p in second.problems) == [
        ("problem refused", 2, 7),
        ("problem timeout", 1, 1),
    ]
    assert second.thread_subject == first_title  # the first digest heads the thread


def test_critical_skips_the_wait(tmp_path: Path, clock: ManualClock) -> None:
    store = open_store(tmp_path, clock)
    store.push([delta(clock, "app", "crash", 1, level=logging.CRITICAL)])
    assert store.next_due() == pytest.approx(clock())


def test_a_failing_render_keeps_its_counts_and_spares_the_others(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = open_store(tmp_path, clock)
    store.push([delta(clock, "bad", "odd", 3), delta(clock, "good", "plain", 4)])
    clock.advance(10)

    def fussy(digest: Digest) -> OutgoingMessage:
        if digest.group == "bad":
            raise UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed")
        return render(digest)

    claimed, _ = store.claim_due(fussy, QUOTA)
    assert len(claimed) == 1
    formed: list[Digest] = []

    def keep(digest: Digest) -> OutgoingMessage:
        formed.append(digest)
        return render(digest)

    store.claim_due(keep, QUOTA)
    (again,) = formed
    assert (again.group, again.sequence, [p.count for p in again.problems]) == ("bad", 1, [3])


def test_quota_is_the_stores_and_reopens(tmp_path: Path, clock: ManualClock) -> None:
    """Two engines, one hourly cap of 2: the third digest waits, then says it was delayed."""
    a, b = open_store(tmp_path, clock, "engine-a"), open_store(tmp_path, clock, "engine-b")
    quota = Quota(2, 100, notice=lambda *_: "quota reached", delayed=lambda *_: "delayed")
    formed: list[Digest] = []

    def keep(digest: Digest) -> OutgoingMessage:
        formed.append(digest)
        return render(digest)

    for group in ("one", "two", "three"):
        a.push([delta(clock, group, group, 1)])
    clock.advance(10)
    _, held = b.claim_due(keep, quota)
    assert len(formed) == 2
    assert formed[1].notices == ("quota reached",)
    assert held == pytest.approx(clock() + 3600)  # when the first send ages out
    clock.advance(3600)
    assert a.claim_due(keep, quota)[1] is None
    assert {d.group for d in formed} == {"one", "two", "three"}
    assert formed[2].notices[0] == "delayed"


def test_the_last_engine_out_is_told_so(tmp_path: Path, clock: ManualClock) -> None:
    a, b = open_store(tmp_path, clock, "engine-a"), open_store(tmp_path, clock, "engine-b")
    assert a.leave() is True  # b stays
    assert b.leave() is False  # nobody stays: b sends what is pending


def test_an_incident_keeps_its_cap_of_problems_whatever_the_engines_push(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Engines each under the cap push more distinct problems than an incident keeps."""
    from smtp_alerts._store.others import PROBLEMS_PER_INCIDENT, is_other

    first, second = open_store(tmp_path, clock, "one"), open_store(tmp_path, clock, "two")
    half = PROBLEMS_PER_INCIDENT // 2 + 10
    first.push([delta(clock, "db", f"one-{n}", 1) for n in range(half)])
    second.push([delta(clock, "db", f"two-{n}", 2) for n in range(half)])
    second.push([delta(clock, "db", "two-0", 3)])  # a kept problem still counts as itself
    clock.advance(10)
    (claimed,), _ = first.claim_due(render, QUOTA)
    digest = claimed.message.digest
    assert digest is not None
    kept = [p for p in digest.problems if not is_other(p.alert.fingerprint)]
    (row,) = [p for p in digest.problems if is_other(p.alert.fingerprint)]
    assert len(kept) == PROBLEMS_PER_INCIDENT
    assert row.count == 2 * (2 * half - PROBLEMS_PER_INCIDENT)  # all from the second engine
    assert row.alert.context[0] == ("example", "problem two-490")
    assert sum(p.count for p in digest.problems) == half + 2 * half + 3
    body = claimed.message.email.get_body(("plain",))
    assert body is not None
    assert "More problems from app, counted together" in body.get_content()
    assert "problem" in claimed.message.email["Subject"]
    assert "More problems" not in claimed.message.email["Subject"]
