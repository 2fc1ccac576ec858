"""The SQLite store's timelines: engines' per-interval counts added, coarsened exactly, bounded."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from smtp_alerts._engine.aggregator import Aggregator
from smtp_alerts._store import IncidentStore, SqliteStore
from smtp_alerts._store.timeline import MAX_BUCKETS, index_of
from smtp_alerts.models import Alert, Digest
from smtp_alerts.testing import ManualClock

from .test_sqlite_store import QUOTA, WINDOWS, _close_spools, open_store, render

__all__ = ["_close_spools"]  # closes what open_store opened

T0 = 1_700_000_000.0
MINUTE, HOUR = 60.0, 3600.0


class Engine:
    """An engine as a store sees it: its own aggregator, pushing deltas to the store.

    Args:
        store: the store (SQLite here, Redis in the integration tests).
        clock: the engine's clock, which dates its occurrences.
    """

    def __init__(self, store: IncidentStore, clock: ManualClock) -> None:
        self.clock = clock
        self.store = store
        self.aggregator = Aggregator(
            group_wait=WINDOWS.group_wait,
            group_interval=WINDOWS.group_interval,
            repeat_interval=WINDOWS.repeat_interval,
            clock=clock,
        )
        self.times: list[tuple[float, int]] = []

    def occur(self, key: str, at: float, n: int = 1, message: str | None = None) -> None:
        """``n`` occurrences at ``at``: repeats, or a captured one when there is a message."""
        alert = Alert(("k", key), 40, "app", message or f"problem {key}", at)
        if message is not None or not self.aggregator.count(alert.fingerprint, at, n):
            self.aggregator.add(alert)
            if n > 1:
                self.aggregator.count(alert.fingerprint, at, n - 1)
        self.times.append((at, n))

    def push(self) -> None:
        agg = self.aggregator
        self.store.push([d for g in agg.pending_groups() if (d := agg.form(g, delta=True))])

    def claim(self) -> list[Digest]:
        claimed, _ = self.store.claim_due(render, QUOTA)
        return [c.message.digest for c in claimed if c.message.digest is not None]


def engines(path: Path, clock: ManualClock, count: int) -> list[Engine]:
    return [Engine(open_store(path, clock, f"engine-{n}"), clock) for n in range(count)]


def check(digest: Digest, times: list[tuple[float, int]], until: float | None = None) -> None:
    """Each interval holds exactly the occurrences of its time; the timeline ends ``until``.

    That is the digest's time, or the claimer's for the Redis store (whose
    digests are dated by Redis's clock, and whose occurrences by the hosts').
    """
    step = digest.timeline_step
    start = index_of(digest.timeline_start, int(step))
    expected = Counter[int]()
    for at, n in times:
        expected[index_of(at, int(step)) - start] += n
    (problem,) = digest.problems
    assert problem.timeline == tuple(expected[i] for i in range(len(problem.timeline)))
    assert sum(problem.timeline) == problem.total
    assert len(problem.timeline) <= MAX_BUCKETS
    end = digest.created if until is None else until
    assert start + len(problem.timeline) - 1 == index_of(end, int(step))


def over_two_days(
    first: Engine, second: Engine, claim: Callable[[], Digest], *, dated_by_store: bool = False
) -> list[float]:
    """Both engines' occurrences every 10 minutes for two days, a digest an hour; its steps.

    Each digest is checked; ``dated_by_store``: its time is the store's (Redis).
    """
    steps = []
    start = first.clock()
    for tick in range(1, 2 * 24 * 6):
        at = start + tick * 10 * MINUTE
        first.occur("db", at - 7 * MINUTE, 2)
        if tick % 3 == 0:
            second.occur("db", at - MINUTE, 5)
        first.clock.now = second.clock.now = at
        first.push()
        second.push()
        if tick % 6 == 0:
            digest = claim()
            check(digest, first.times + second.times, until=at if dated_by_store else None)
            steps.append(digest.timeline_step)
    return steps


def test_two_engines_over_two_days_merge_exactly_and_stay_bounded(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    first, second = engines(tmp_path, clock, 2)

    def claim() -> Digest:
        (digest,) = first.claim()  # the store's windows: hourly digests of the one incident
        return digest

    steps = over_two_days(first, second, claim)
    assert steps == sorted(steps)
    assert (steps[0], steps[-1]) == (MINUTE, HOUR)


def test_a_digest_runs_to_its_time_with_zeros_and_the_same_start_for_every_problem(
    tmp_path: Path,
) -> None:
    clock = ManualClock(T0 - T0 % MINUTE)
    (engine,) = engines(tmp_path, clock, 1)
    engine.occur("a", clock())
    engine.push()
    engine.occur("a", clock() + MINUTE)  # two intervals in one push, added to the row's
    engine.occur("a", clock() + 2 * MINUTE)
    clock.advance(3 * MINUTE)
    engine.occur("b", clock())
    engine.push()
    clock.advance(3 * MINUTE)
    (digest,) = engine.claim()
    rows = {p.alert.message: p.timeline for p in digest.problems}
    assert rows == {"problem a": (1, 1, 1, 0, 0, 0, 0), "problem b": (0, 0, 0, 1, 0, 0, 0)}
    assert digest.timeline_start == clock() - 6 * MINUTE
    assert digest.timeline_step == MINUTE


def test_the_second_sample_is_the_latest_pushed_text_unlike_the_first(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    first, second = engines(tmp_path, clock, 2)
    first.occur("pay", T0, message="order 1 timed out")
    first.push()
    second.occur("pay", T0 + 1, message="order 1 timed out")
    second.push()
    clock.advance(10)
    (digest,) = first.claim()
    assert digest.problems[0].last_message == ""  # the same text
    second.occur("pay", T0 + 20, message="order 2 timed out")
    second.push()
    first.occur("pay", T0 + 21)  # a repeat carries no text
    first.push()
    clock.advance(HOUR)
    (digest,) = first.claim()
    (problem,) = digest.problems
    assert (problem.alert.message, problem.last_message) == (
        "order 1 timed out",
        "order 2 timed out",
    )


def test_timelines_go_with_their_incident(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    (engine,) = engines(tmp_path, clock, 1)
    for minute in range(0, 600, 7):
        engine.occur("a", T0 + minute * MINUTE)
    clock.now = T0 + 600 * MINUTE
    engine.push()
    engine.claim()
    clock.advance(2 * HOUR)  # quiet past the repeat interval: the next occurrence opens anew
    engine.occur("a", clock())
    engine.push()
    clock.advance(10)
    (digest,) = engine.claim()
    assert digest.problems[0].timeline == (1,)
    assert digest.timeline_step == MINUTE


def test_a_store_made_before_timelines_gains_them(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    (engine,) = engines(tmp_path, clock, 1)
    engine.occur("a", T0)
    engine.push()
    assert isinstance(engine.store, SqliteStore)
    with engine.store._spool.transaction() as conn:
        for table, column in itertools.chain(
            itertools.product(["store_windows"], ["t_step", "t_low", "t_high"]),
            itertools.product(
                ["store_problems"], ["timeline", "last_message", "t_index", "t_count"]
            ),
        ):
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    (again,) = engines(tmp_path, clock, 1)
    again.occur("a", T0 + 5)
    again.push()
    clock.advance(10)
    (digest,) = again.claim()
    assert digest.problems[0].count == 2
    assert digest.problems[0].timeline == (1,)  # what came before it had none


def test_a_push_of_an_earlier_interval_after_a_later_one_counts_in_its_own(
    tmp_path: Path,
) -> None:
    """An engine that pushes late (its tick came after another's) keeps its minutes."""
    clock = ManualClock(T0 - T0 % MINUTE)
    first, second = engines(tmp_path, clock, 2)
    first.occur("a", clock() + 5 * MINUTE, 3)
    first.push()
    second.occur("a", clock() + 2 * MINUTE, 2)
    second.push()
    first.occur("a", clock() + 5 * MINUTE + 1)
    first.push()
    clock.advance(6 * MINUTE)
    (digest,) = first.claim()
    assert digest.problems[0].timeline == (2, 0, 0, 4, 0)
    check(digest, first.times + second.times)
