"""Timelines: a ladder of steps where coarsening is exact, and at most MAX_BUCKETS intervals."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from smtp_alerts._store import timeline
from smtp_alerts._store.timeline import MAX_BUCKETS, STEPS


def ladder(n: int) -> list[int]:
    steps = [STEPS[0]]
    while len(steps) < n:
        steps.append(timeline.coarser(steps[-1]))
    return steps


def test_each_step_is_a_multiple_of_the_one_before() -> None:
    steps = ladder(len(STEPS) + 5)
    assert steps[: len(STEPS)] == list(STEPS)
    assert all(b % a == 0 and b > a for a, b in itertools.pairwise(steps))


@pytest.mark.parametrize(
    ("span", "step"),
    [(59 * 60, 60), (3 * 3600, 300), (14 * 3600, 900), (2 * 86400, 3600), (40 * 86400, 86400)],
)
def test_an_incident_of_minutes_to_days_fits_at_most_max_buckets(span: int, step: int) -> None:
    start = 1_700_000_000 // 86400 * 86400  # aligned: the span alone decides
    low, high = timeline.index_of(start, 60), timeline.index_of(start + span, 60)
    fitted = timeline.fitting_step(low, high, 60)
    assert fitted == step
    assert (high * 60) // fitted - (low * 60) // fitted < MAX_BUCKETS


def test_a_span_of_years_still_fits() -> None:
    fitted = timeline.fitting_step(0, timeline.index_of(1_700_000_000.0, 60), 60)
    assert (1_700_000_000 // fitted) < MAX_BUCKETS
    assert fitted % 86400 == 0


def test_rekey_keeps_every_count_and_nests_intervals() -> None:
    rng = random.Random(7)  # noqa: S311 - reproducible test data
    times = [1_700_000_000 + rng.uniform(0, 5 * 86400) for _ in range(2_000)]
    fine: timeline.Buckets = {}
    for at in times:
        timeline.add(fine, {timeline.index_of(at, 60): 1})
    for new in ladder(12)[1:]:
        coarse = timeline.rekey(fine, 60, new)
        assert sum(coarse.values()) == len(times)
        direct: timeline.Buckets = {}
        for at in times:
            timeline.add(direct, {timeline.index_of(at, new): 1})
        assert coarse == direct  # exact: the same as counting at that step from the start


def test_widen_coarsens_to_fit_and_never_finer_than_either_step() -> None:
    frame = (60, 100, 110)
    assert timeline.widen(frame, 105, 120, 60) == (60, 100, 120)
    step, low, high = timeline.widen(frame, 100, 100 + MAX_BUCKETS, 60)
    assert step == 300
    assert (low, high) == (100 * 60 // 300, (100 + MAX_BUCKETS) * 60 // 300)
    assert timeline.widen((60, None, 0), 7, 7, 900) == (900, 7, 7)
    assert timeline.widen((900, 10, 12), 600, 600, 60)[0] == 900


def test_until_carries_on_to_now_and_never_back() -> None:
    assert timeline.until((60, None, 0), 6000.0) == (60, 100, 100)
    assert timeline.until((60, 100, 105), 6600.0) == (60, 100, 110)
    assert timeline.until((60, 100, 105), 60.0) == (60, 100, 105)  # a clock behind


def test_dense_has_zeros_between() -> None:
    assert timeline.dense({3: 2, 6: 1}, 2, 7) == (0, 2, 0, 0, 1, 0)
    assert timeline.dense(None, 4, 5) == (0, 0)


@pytest.mark.parametrize("odd", [math.nan, math.inf, -math.inf])
def test_an_odd_time_is_counted_not_refused(odd: float) -> None:
    assert timeline.index_of(odd, 60) == 0
