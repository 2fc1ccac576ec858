"""The aggregator's timelines: per-interval counts of an incident, exact and bounded."""

from __future__ import annotations

import itertools

from smtp_alerts._engine.aggregator import DEFAULT_GROUP, Aggregator
from smtp_alerts._store.timeline import MAX_BUCKETS, STEPS
from smtp_alerts.models import Digest
from smtp_alerts.testing import ManualClock

from .test_aggregator import T0, alert, fp, make

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0


def form(aggregator: Aggregator, *, delta: bool = False) -> Digest:
    digest = aggregator.form(DEFAULT_GROUP, delta=delta)
    assert digest is not None
    return digest


def check_covers(digest: Digest, first: float) -> None:
    """One start and step for all; aligned; from the incident's first interval to the digest's."""
    step = digest.timeline_step
    assert step in STEPS or step % DAY == 0
    assert digest.timeline_start % step == 0
    assert digest.timeline_start <= first < digest.timeline_start + step
    for problem in digest.problems:
        end = digest.timeline_start + len(problem.timeline) * step
        assert end - step <= digest.created < end
        assert len(problem.timeline) <= MAX_BUCKETS


def test_minutes_are_counted_per_minute_with_zeros_between() -> None:
    clock = ManualClock(T0 - T0 % MINUTE)  # on a minute
    aggregator = make(clock)
    aggregator.add(alert("a", at=clock()))
    aggregator.count(fp("a"), clock() + 10, 2)
    aggregator.count(fp("a"), clock() + 3 * MINUTE + 1, 4)
    clock.advance(5 * MINUTE + 30)
    digest = form(aggregator)
    (problem,) = digest.problems
    assert digest.timeline_step == MINUTE
    assert digest.timeline_start == T0 - T0 % MINUTE
    assert problem.timeline == (3, 0, 0, 4, 0, 0)  # up to now, zeros included
    check_covers(digest, T0)


def test_an_incident_of_days_coarsens_exactly_and_stays_bounded() -> None:
    """Every 7 minutes for 3 days, a digest each hour: every count is in the timeline."""
    clock = ManualClock(T0)
    aggregator = make(clock)
    aggregator.add(alert("a", at=T0))
    aggregator.add(alert("b", at=T0 + 1))
    total, steps = 2, []
    at = T0
    for hour in range(1, 72):
        while at + 7 * MINUTE <= T0 + hour * HOUR:
            at += 7 * MINUTE
            aggregator.count(fp("a"), at, 2)
            total += 2
        clock.now = T0 + hour * HOUR
        digest = form(aggregator)
        check_covers(digest, T0)
        by_name = {p.alert.fingerprint[1]: p for p in digest.problems}
        assert sum(by_name["a"].timeline) == by_name["a"].total == total - 1
        steps.append(digest.timeline_step)
    assert steps == sorted(steps)  # it only grows
    assert steps[0] == 5 * MINUTE  # an hour from T0 (not on a minute) is 61 minutes
    assert steps[-1] == 3 * HOUR  # 71 hours: 24 intervals
    # "b" happened once, at the start: its row stayed with the incident.
    assert "b" not in by_name  # not pending since the first digest


def test_every_problem_of_a_digest_shares_the_start_and_step() -> None:
    clock = ManualClock(T0)
    aggregator = make(clock)
    aggregator.add(alert("early", at=T0))
    aggregator.add(alert("late", at=T0 + 2 * HOUR))
    clock.now = T0 + 2 * HOUR + 5
    digest = form(aggregator)
    early, late = sorted(digest.problems, key=lambda p: p.first_seen)
    assert len(early.timeline) == len(late.timeline)
    assert early.timeline[0] == 1
    assert late.timeline[-1] == 1
    assert sum(late.timeline) == 1
    check_covers(digest, T0)


def test_a_delta_hands_over_what_is_pending_and_a_restore_counts_it_again() -> None:
    clock = ManualClock(T0)
    aggregator = make(clock)
    aggregator.add(alert("a", at=T0))
    aggregator.count(fp("a"), T0 + 2 * HOUR, 5)  # a span of hours: coarser than a minute
    clock.now = T0 + 2 * HOUR + 1
    first = form(aggregator, delta=True)
    (problem,) = first.problems
    assert sum(problem.timeline) == 6
    assert first.timeline_step == 300
    aggregator.restore(first)
    aggregator.count(fp("a"), clock(), 1)
    again = form(aggregator, delta=True)
    assert sum(again.problems[0].timeline) == 7
    assert again.timeline_start == first.timeline_start
    aggregator.count(fp("a"), clock() + 30, 2)
    third = form(aggregator, delta=True)  # only what came since: at minutes again
    assert third.timeline_step == MINUTE
    assert third.problems[0].timeline == (2,)


def test_memory_is_bounded_per_problem_and_freed_with_the_incident() -> None:
    clock = ManualClock(T0)
    aggregator = make(clock)
    names = [f"p{n}" for n in range(20)]
    for name, minute in itertools.product(names, range(0, 3 * 24 * 60, 13)):
        aggregator.add(alert(name, at=T0 + minute * MINUTE))
    clock.now = T0 + 3 * DAY
    digest = form(aggregator)
    entries = aggregator._entries  # the bound is on what it keeps
    assert all(len(entries[fp(name)].buckets or {}) <= MAX_BUCKETS for name in names)
    assert all(sum(p.timeline) == p.total for p in digest.problems)
    clock.now += 5 * DAY  # quiet past the repeat interval: the incident closes
    assert aggregator.due() == []
    assert all(entries[fp(name)].buckets is None for name in names if fp(name) in entries)


def test_the_second_sample_is_a_later_captured_text() -> None:
    clock = ManualClock(T0)
    aggregator = make(clock)
    aggregator.add(alert("a", at=T0, message="order 1 failed"))
    aggregator.add(alert("a", at=T0 + 1, message="order 2 failed"))
    aggregator.add(alert("b", at=T0 + 2))
    aggregator.add(alert("b", at=T0 + 3))  # the same text: no second sample
    clock.advance(30)
    by_name = {p.alert.fingerprint[1]: p for p in form(aggregator).problems}
    assert (by_name["a"].alert.message, by_name["a"].last_message) == (
        "order 1 failed",
        "order 2 failed",
    )
    assert by_name["b"].last_message == ""


def test_an_occurrence_dated_before_its_incident_counts_in_its_first_interval() -> None:
    """A record with an odd ``created`` (years back) does not stretch the incident's timeline."""
    clock = ManualClock(T0)
    aggregator = make(clock)
    aggregator.add(alert("a", at=T0))
    aggregator.count(fp("a"), 0.0, 3)
    clock.advance(90)
    digest = form(aggregator)
    assert digest.timeline_step == MINUTE
    assert sum(digest.problems[0].timeline) == 4
    check_covers(digest, T0)


def test_a_delta_of_dropped_records_only_has_no_timeline() -> None:
    clock = ManualClock(T0)
    aggregator = make(clock)
    aggregator.note_dropped(5)
    digest = form(aggregator, delta=True)
    assert (digest.problems, digest.dropped, digest.timeline_step) == ((), 5, 0.0)
