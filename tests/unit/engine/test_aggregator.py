"""Tests for the aggregator: exact counts and Alertmanager-style windows, without sleeping."""

from __future__ import annotations

import itertools
import logging
import random
from collections import Counter

import pytest

from smtp_alerts._engine.aggregator import DEFAULT_GROUP, Aggregator
from smtp_alerts.models import Alert, Digest, Fingerprint
from smtp_alerts.testing import ManualClock

GW, GI, RI = 10.0, 300.0, 14_400.0
T0 = 1_700_000_000.0
N1 = T0 + GW  # when a burst starting at T0 is first notified


def fp(name: str, group: str = DEFAULT_GROUP) -> Fingerprint:
    return (group, name)


def alert(
    name: str = "a",
    *,
    at: float,
    level: int = logging.ERROR,
    group: str = DEFAULT_GROUP,
    source: str = "log",
    message: str | None = None,
) -> Alert:
    return Alert(
        fingerprint=fp(name, group),
        level=level,
        logger="app",
        message=message if message is not None else f"problem {name}",
        created=at,
        source=source,
        group=group,
    )


def make(clock: ManualClock, *, max_samples: int = 10_000, **caps: int) -> Aggregator:
    """An aggregator with the windows above, numbered incidents and ``caps`` if any."""
    ids = itertools.count(1)
    return Aggregator(
        group_wait=GW,
        group_interval=GI,
        repeat_interval=RI,
        clock=clock,
        max_samples=max_samples,
        new_incident_id=lambda: f"inc-{next(ids)}",
        **caps,
    )


def rows(digest: Digest) -> dict[str, int]:
    return {str(p.alert.fingerprint[1]): p.count for p in digest.problems}


def formed(aggregator: Aggregator, group: str = DEFAULT_GROUP) -> Digest:
    digest = aggregator.form(group)
    assert digest is not None
    return digest


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def notified(clock: ManualClock) -> Aggregator:
    """An aggregator whose default incident showed problem ``a`` once, at N1."""
    aggregator = make(clock)
    aggregator.add(alert("a", at=T0))
    clock.now = N1
    formed(aggregator)
    return aggregator


class TestAggregator:
    def test_group_wait_collects_a_burst(self, clock: ManualClock) -> None:
        """Occurrences within group_wait of the first arrive as one digest."""
        aggregator = make(clock)
        aggregator.add(alert("a", at=T0))
        assert aggregator.next_due() == T0 + GW
        clock.advance(5)
        aggregator.add(alert("b", at=clock.now))
        assert aggregator.count(fp("a"), clock.now + 1, 3)
        assert aggregator.next_due() == T0 + GW
        assert aggregator.due() == []
        clock.now = T0 + GW
        assert aggregator.due() == [DEFAULT_GROUP]
        digest = formed(aggregator)
        assert rows(digest) == {"a": 4, "b": 1}
        assert (digest.sequence, digest.reason, digest.incident_id) == (1, "new", "inc-1")
        assert digest.created == T0 + GW
        assert all(p.is_new for p in digest.problems)
        assert digest.thread_subject is None
        assert digest.dropped == 0
        assert aggregator.next_due() is None

    def test_exact_counts_in_bulk(self, clock: ManualClock) -> None:
        """A million occurrences counted in bulk are one row with a count of a million."""
        aggregator = make(clock)
        aggregator.add(alert("a", at=T0))
        assert aggregator.count(fp("a"), T0 + 50, n=999_999)
        digest = formed(aggregator)
        (problem,) = digest.problems
        assert (problem.count, problem.total) == (1_000_000, 1_000_000)
        assert (problem.first_seen, problem.last_seen) == (T0, T0 + 50)
        assert aggregator.stats.occurrences == 1_000_000
        assert aggregator.stats.pending == 0

    def test_exact_counts_one_by_one(self, clock: ManualClock) -> None:
        """A hundred thousand single occurrences are counted exactly, with first and last seen."""
        aggregator = make(clock)
        aggregator.add(alert("a", at=T0))
        for i in range(1, 100_000):
            assert aggregator.count(fp("a"), T0 + i * 0.001)
        (problem,) = formed(aggregator).problems
        assert problem.count == 100_000
        assert problem.first_seen == T0
        assert problem.last_seen == T0 + 99_999 * 0.001

    def test_late_occurrence_moves_first_seen_back(self, clock: ManualClock) -> None:
        """An occurrence processed late but created earlier becomes the first seen."""
        aggregator = make(clock)
        aggregator.add(alert("a", at=T0))
        aggregator.count(fp("a"), T0 - 3)
        (problem,) = formed(aggregator).problems
        assert (problem.first_seen, problem.last_seen) == (T0 - 3, T0)

    def test_known_fingerprint_keeps_its_first_sample(self, clock: ManualClock) -> None:
        """Adding a known fingerprint again counts it but keeps the first captured sample."""
        aggregator = make(clock)
        aggregator.add(alert("a", at=T0, message="first"))
        aggregator.add(alert("a", at=T0 + 1, message="second"))
        (problem,) = formed(aggregator).problems
        assert problem.count == 2
        assert problem.alert.message == "first"

    def test_group_interval_when_a_new_problem_joins(
        self, clock: ManualClock, notified: Aggregator
    ) -> None:
        """A new problem after a digest is sent group_interval after it, with the repeats."""
        clock.advance(20)
        notified.add(alert("b", at=clock.now))
        notified.count(fp("a"), clock.now)
        assert notified.next_due() == N1 + GI
        assert notified.due(N1 + GI - 0.001) == []
        clock.now = N1 + GI
        assert notified.due() == [DEFAULT_GROUP]
        digest = formed(notified)
        assert (digest.sequence, digest.reason, digest.incident_id) == (2, "update", "inc-1")
        b, a = digest.problems
        assert (b.alert.fingerprint, b.is_new, b.count, b.total) == (fp("b"), True, 1, 1)
        assert (a.alert.fingerprint, a.is_new, a.count, a.total) == (fp("a"), False, 1, 2)
        assert a.first_seen == T0

    def test_repeats_only_wait_for_repeat_interval(
        self, clock: ManualClock, notified: Aggregator
    ) -> None:
        """Only repeats of shown problems pending: nothing until repeat_interval, then a repeat."""
        notified.count(fp("a"), N1 + 20, 7)
        assert notified.next_due() == N1 + RI
        assert notified.due(N1 + GI) == []
        clock.now = N1 + RI
        assert notified.due() == [DEFAULT_GROUP]
        digest = formed(notified)
        assert (digest.sequence, digest.reason) == (2, "repeat")
        (problem,) = digest.problems
        assert (problem.count, problem.total, problem.is_new) == (7, 8, False)
        assert notified.next_due() is None

    def test_incident_closes_after_a_quiet_repeat_interval(
        self, clock: ManualClock, notified: Aggregator
    ) -> None:
        """A notified incident quiet for repeat_interval closes; the next one has a new id."""
        clock.now = N1 + RI - 1
        assert notified.stats.open_incidents == 1
        clock.now = N1 + RI
        assert notified.stats.open_incidents == 0
        assert notified.due() == []
        notified.add(alert("a", at=clock.now))
        assert notified.next_due() == N1 + RI + GW
        clock.advance(GW)
        digest = formed(notified)
        assert (digest.incident_id, digest.sequence, digest.reason) == ("inc-2", 1, "new")
        (problem,) = digest.problems
        assert (problem.is_new, problem.count, problem.total) == (True, 1, 1)
        assert problem.first_seen == N1 + RI

    def test_occurrence_before_the_close_joins_the_incident(
        self, clock: ManualClock, notified: Aggregator
    ) -> None:
        """An occurrence created before the close time, though processed after, is a repeat."""
        clock.now = N1 + RI + 100
        notified.count(fp("a"), N1 + RI - 1)
        assert notified.next_due() == N1 + RI
        digest = formed(notified)
        assert (digest.incident_id, digest.sequence, digest.reason) == ("inc-1", 2, "repeat")

    def test_critical_skips_group_wait(self, clock: ManualClock) -> None:
        """A CRITICAL problem opening an incident is due at once, as 'critical'."""
        aggregator = make(clock)
        aggregator.add(alert("e", at=T0))
        aggregator.add(alert("a", at=T0 + 1, level=logging.CRITICAL))
        assert aggregator.next_due() == T0 + 1
        assert aggregator.due(T0 + 1) == [DEFAULT_GROUP]
        digest = formed(aggregator)
        assert (digest.sequence, digest.reason, rows(digest)) == (1, "critical", {"a": 1, "e": 1})

    def test_crash_skips_group_wait(self, clock: ManualClock) -> None:
        """A crash is due at once whatever its level."""
        aggregator = make(clock)
        aggregator.add(alert("a", at=T0, source="crash"))
        assert aggregator.next_due() == T0

    def test_new_critical_skips_group_interval(
        self, clock: ManualClock, notified: Aggregator
    ) -> None:
        """A new CRITICAL problem in a notified incident is due at once, as 'critical'."""
        clock.advance(20)
        notified.add(alert("c", at=clock.now, level=logging.CRITICAL))
        assert notified.next_due() == clock.now
        digest = formed(notified)
        assert (digest.sequence, digest.reason) == (2, "critical")
        assert notified.next_due() is None

    def test_known_critical_waits_like_any_repeat(self, clock: ManualClock) -> None:
        """Repeats of a CRITICAL problem already shown wait for repeat_interval."""
        aggregator = make(clock)
        aggregator.add(alert("a", at=T0, level=logging.CRITICAL))
        formed(aggregator)
        aggregator.count(fp("a"), T0 + 1)
        assert aggregator.next_due() == T0 + RI

    def test_next_due_is_exact_at_every_step(self, clock: ManualClock) -> None:
        """next_due follows group_wait, group_interval, repeat_interval and criticals exactly."""
        aggregator = make(clock)
        assert aggregator.next_due() is None
        aggregator.add(alert("a", at=T0))
        assert aggregator.next_due() == T0 + GW
        clock.now = T0 + GW
        formed(aggregator)
        assert aggregator.next_due() is None
        aggregator.count(fp("a"), T0 + 20)
        assert aggregator.next_due() == N1 + RI
        aggregator.add(alert("b", at=T0 + 30))
        assert aggregator.next_due() == N1 + GI
        aggregator.add(alert("c", at=T0 + 40, level=logging.CRITICAL))
        assert aggregator.next_due() == T0 + 40
        clock.now = T0 + 40
        formed(aggregator)
        assert aggregator.next_due() is None
        aggregator.count(fp("b"), T0 + 50)
        assert aggregator.next_due() == T0 + 40 + RI

    def test_flush_ignores_windows(self, clock: ManualClock) -> None:
        """pending_groups and form give a digest at once, whatever the windows say."""
        aggregator = make(clock)
        aggregator.add(alert("a", at=T0))
        assert aggregator.due() == []
        assert aggregator.pending_groups() == [DEFAULT_GROUP]
        digest = aggregator.form(DEFAULT_GROUP, reason="flush", notices=("note",))
        assert digest is not None
        assert (digest.reason, digest.notices, rows(digest)) == ("flush", ("note",), {"a": 1})
        assert aggregator.pending_groups() == []
        assert aggregator.form(DEFAULT_GROUP) is None

    def test_form_without_anything_pending_returns_none(self, clock: ManualClock) -> None:
        """Forming a group that is unknown or has nothing pending gives None."""
        aggregator = make(clock)
        assert aggregator.form("nothing") is None

    def test_restore_puts_counts_back(self, clock: ManualClock) -> None:
        """A restored first digest is sent again as sequence 1, its counts merged with new ones."""
        aggregator = make(clock)
        aggregator.add(alert("a", at=T0))
        aggregator.count(fp("a"), T0 + 1, 4)
        clock.now = N1
        first = formed(aggregator)
        aggregator.set_thread_subject(first.incident_id, "subject")
        aggregator.restore(first)
        assert aggregator.pending_groups() == [DEFAULT_GROUP]
        assert aggregator.stats.pending == 5
        assert aggregator.next_due() == N1 + GI  # a failing channel is not retried at once
        aggregator.count(fp("a"), N1 + 10)
        clock.now = N1 + GI
        digest = formed(aggregator)
        assert (digest.incident_id, digest.sequence, digest.reason) == ("inc-1", 1, "new")
        assert digest.thread_subject is None
        (problem,) = digest.problems
        assert (problem.count, problem.total, problem.is_new) == (6, 6, True)
        assert (problem.first_seen, problem.last_seen) == (T0, N1 + 10)

    def test_forgotten_notifications_bring_group_wait_back(self, clock: ManualClock) -> None:
        """After the store refused, a restored push waits group_wait, not group_interval."""
        aggregator = make(clock)
        aggregator.add(alert("a", at=T0))
        clock.now = T0 + 0.25  # a push: formed for the store, not sent
        pushed = formed(aggregator)
        aggregator.restore(pushed)
        assert aggregator.next_due() == T0 + 0.25 + GI
        aggregator.forget_notifications()
        assert aggregator.next_due() == T0 + GW
        clock.now = T0 + GW
        assert aggregator.due() == [DEFAULT_GROUP]

    def test_restore_of_a_follow_up_keeps_what_was_shown(
        self, clock: ManualClock, notified: Aggregator
    ) -> None:
        """Restoring a follow-up keeps earlier-shown problems known and its new ones new."""
        notified.set_thread_subject("inc-1", "subject")
        notified.add(alert("b", at=N1 + 10))
        notified.count(fp("a"), N1 + 10)
        clock.now = N1 + GI
        second = formed(notified)
        notified.restore(second)
        notified.count(fp("a"), N1 + GI + 1)
        clock.now = N1 + 2 * GI
        digest = formed(notified)
        assert (digest.sequence, digest.reason, digest.thread_subject) == (2, "update", "subject")
        by_name = {p.alert.fingerprint: p for p in digest.problems}
        assert (by_name[fp("a")].count, by_name[fp("a")].total) == (2, 3)
        assert not by_name[fp("a")].is_new
        assert (by_name[fp("b")].count, by_name[fp("b")].is_new) == (1, True)

    def test_restore_of_an_older_digest_keeps_the_sequence(
        self, clock: ManualClock, notified: Aggregator
    ) -> None:
        """Restoring a digest that is not the latest puts counts back without reusing a number."""
        first = Digest(
            group=DEFAULT_GROUP,
            incident_id="inc-1",
            sequence=1,
            problems=(),
            created=N1,
        )
        notified.add(alert("b", at=N1 + 1))
        clock.now = N1 + GI
        formed(notified)
        notified.restore(first)
        notified.add(alert("c", at=clock.now))
        assert formed(notified).sequence == 3

    def test_restore_into_a_closed_incident(self, clock: ManualClock) -> None:
        """Counts restored after their incident closed open a new incident, as new problems."""
        aggregator = make(clock)
        aggregator.add(alert("a", at=T0))
        aggregator.count(fp("a"), T0 + 1, 2)
        clock.now = N1
        first = formed(aggregator)
        clock.now = N1 + RI
        assert aggregator.due() == []
        aggregator.restore(first)
        assert aggregator.next_due() == N1 + RI + GW
        digest = formed(aggregator)
        assert (digest.incident_id, digest.sequence) == ("inc-2", 1)
        (problem,) = digest.problems
        assert (problem.count, problem.total, problem.is_new) == (3, 3, True)

    def test_restore_after_eviction_brings_the_sample_back(self, clock: ManualClock) -> None:
        """A restored problem whose sample was evicted meanwhile is counted from the digest."""
        aggregator = make(clock, max_samples=1)
        aggregator.add(alert("a", at=T0))
        aggregator.count(fp("a"), T0 + 1, 9)
        first = formed(aggregator)
        aggregator.add(alert("b", at=T0 + 2))
        assert aggregator.pop_evicted() == [fp("a")]
        aggregator.restore(first)
        digest = formed(aggregator)
        assert rows(digest) == {"a": 10, "b": 1}
        assert {p.alert.fingerprint: p.total for p in digest.problems}[fp("a")] == 10

    def test_dropped_are_carried_by_the_next_digest(self, clock: ManualClock) -> None:
        """Dropped records are reported once, by the next digest."""
        aggregator = make(clock)
        aggregator.add(alert("a", at=T0))
        aggregator.note_dropped(5)
        aggregator.note_dropped(0)
        assert aggregator.stats.dropped == 5
        assert formed(aggregator).dropped == 5
        assert aggregator.stats.dropped == 0
        aggregator.add(alert("b", at=T0 + 1))
        assert aggregator.form(DEFAULT_GROUP, reason="flush") is not None
        assert aggregator.stats.dropped == 0

    def test_dropped_alone_make_the_default_group_pending(self, clock: ManualClock) -> None:
        """Dropped records with nothing else pending still get a digest of the default group."""
        aggregator = make(clock)
        aggregator.note_dropped(3)
        assert aggregator.pending_groups() == [DEFAULT_GROUP]
        assert aggregator.next_due() == T0 + GW
        digest = formed(aggregator)
        assert (digest.problems, digest.dropped, digest.sequence) == ((), 3, 1)

    def test_dropped_go_with_whichever_group_sends_next(self, clock: ManualClock) -> None:
        """The next digest of any group reports the drops, and a drops-only default is forgotten."""
        aggregator = make(clock)
        aggregator.note_dropped(2)
        aggregator.add(alert("b", at=T0, group="db"))
        assert aggregator.pending_groups() == [DEFAULT_GROUP, "db"]
        assert formed(aggregator, "db").dropped == 2
        assert aggregator.pending_groups() == []
        assert aggregator.stats.open_incidents == 1

    def test_restore_keeps_dropped(self, clock: ManualClock) -> None:
        """A restored digest's dropped count is reported again by a later digest."""
        aggregator = make(clock)
        aggregator.add(alert("a", at=T0))
        aggregator.note_dropped(4)
        aggregator.restore(formed(aggregator))
        assert aggregator.stats.dropped == 4
        assert formed(aggregator).dropped == 4

    def test_note_dropped_rejects_negative(self, clock: ManualClock) -> None:
        """A negative dropped count is a programming error."""
        with pytest.raises(ValueError, match=">= 0"):
            make(clock).note_dropped(-1)

    def test_groups_have_separate_windows(self, clock: ManualClock) -> None:
        """Each group has its own incident, id and windows."""
        aggregator = make(clock)
        aggregator.add(alert("a", at=T0, group="web"))
        aggregator.add(alert("b", at=T0 + 5, group="db"))
        assert aggregator.next_due() == T0 + GW
        clock.now = T0 + GW
        assert aggregator.due() == ["web"]
        web = formed(aggregator, "web")
        assert rows(web) == {"a": 1}
        assert aggregator.next_due() == T0 + 5 + GW
        assert aggregator.due(T0 + 5 + GW) == ["db"]
        db = formed(aggregator, "db")
        assert (web.incident_id, db.incident_id) == ("inc-1", "inc-2")
        assert (web.group, db.group) == ("web", "db")

    def test_due_lists_the_earliest_first(self, clock: ManualClock) -> None:
        """Groups due together are listed by due time."""
        aggregator = make(clock)
        aggregator.add(alert("a", at=T0 + 5, group="web"))
        aggregator.add(alert("b", at=T0, group="db"))
        assert aggregator.due(T0 + 100) == ["db", "web"]

    def test_thread_subject_follows_the_incident(self, notified: Aggregator) -> None:
        """The subject set after the first digest is carried by the follow-ups."""
        notified.set_thread_subject("inc-1", "3 problems: KeyError")
        notified.set_thread_subject("no-such-incident", "ignored")
        notified.add(alert("b", at=N1 + 1))
        assert formed(notified).thread_subject == "3 problems: KeyError"

    def test_problems_are_sorted(self, clock: ManualClock) -> None:
        """Rows go most severe first, then new before known, then by count."""
        aggregator = make(clock)
        aggregator.add(alert("k1", at=T0))
        aggregator.add(alert("k2", at=T0))
        formed(aggregator)
        aggregator.count(fp("k1"), T0 + 1, 5)
        aggregator.count(fp("k2"), T0 + 1, 10)
        aggregator.add(alert("n", at=T0 + 1))
        aggregator.add(alert("c", at=T0 + 1, level=logging.CRITICAL))
        digest = formed(aggregator)
        assert [p.alert.fingerprint[1] for p in digest.problems] == ["c", "n", "k2", "k1"]

    def test_eviction_bound_and_pop_evicted(self, clock: ManualClock) -> None:
        """Beyond max_samples the least recently seen sample of a closed incident is evicted."""
        aggregator = make(clock, max_samples=3)
        for i, name in enumerate("abc"):
            aggregator.add(alert(name, at=T0 + i, group="g"))
        clock.now = N1
        formed(aggregator, "g")
        clock.now = N1 + RI
        aggregator.add(alert("d", at=clock.now, group="h"))
        assert aggregator.pop_evicted() == [fp("a", "g")]
        assert aggregator.pop_evicted() == []
        assert aggregator.stats.samples == 3
        assert not aggregator.count(fp("a", "g"), clock.now)
        assert aggregator.count(fp("b", "g"), clock.now)

    def test_eviction_prefers_closed_incidents(self, clock: ManualClock) -> None:
        """Samples of closed incidents go before quiet ones of open incidents, even if newer."""
        aggregator = make(clock, max_samples=3)
        aggregator.add(alert("b", at=T0, group="h"))
        aggregator.add(alert("a", at=T0 + 1, group="g"))
        clock.now = N1
        formed(aggregator, "h")
        formed(aggregator, "g")
        aggregator.add(alert("x", at=N1 + RI - 1, group="h"))  # keeps h open
        clock.now = N1 + RI
        aggregator.add(alert("y", at=clock.now, group="h"))
        assert aggregator.pop_evicted() == [fp("a", "g")]

    def test_pending_problems_are_never_evicted(self, clock: ManualClock) -> None:
        """Pending counts are kept beyond max_samples; once reported, the oldest are evicted."""
        aggregator = make(clock, max_samples=2)
        for i, name in enumerate("abc"):
            aggregator.add(alert(name, at=T0 + i))
        assert aggregator.stats.samples == 3
        assert aggregator.pop_evicted() == []
        assert rows(formed(aggregator)) == {"a": 1, "b": 1, "c": 1}
        aggregator.add(alert("d", at=T0 + 3))
        assert aggregator.pop_evicted() == [fp("a"), fp("b")]
        assert aggregator.stats.samples == 2

    def test_recaptured_problem_continues_its_row(self, clock: ManualClock) -> None:
        """A quiet problem whose sample was evicted keeps its counts and shown state."""
        aggregator = make(clock, max_samples=1)
        aggregator.add(alert("a", at=T0))
        formed(aggregator)
        aggregator.add(alert("b", at=T0 + 1))
        assert aggregator.pop_evicted() == [fp("a")]
        assert (aggregator.stats.samples, aggregator.stats.problems) == (1, 2)
        assert not aggregator.count(fp("a"), T0 + 2)
        aggregator.add(alert("a", at=T0 + 2, message="re-captured"))
        problems = {p.alert.fingerprint: p for p in formed(aggregator).problems}
        a = problems[fp("a")]
        assert (a.is_new, a.count, a.total, a.first_seen) == (False, 1, 2, T0)
        assert a.alert.message == "re-captured"

    def test_eviction_heaps_stay_bounded(self, clock: ManualClock) -> None:
        """Stale eviction candidates are compacted away, however often a problem recurs."""
        aggregator = make(clock)
        aggregator.add(alert("a", at=T0))
        for i in range(1_000):
            aggregator.count(fp("a"), T0 + i)
            formed(aggregator)
        assert len(aggregator._quiet) <= 2 * 1 + 64 + 1
        assert aggregator.stats.samples == 1

    def test_count_of_unknown_fingerprint_counts_nothing(self, clock: ManualClock) -> None:
        """count returns False and counts nothing when no sample is known."""
        aggregator = make(clock)
        assert not aggregator.count(fp("nope"), T0)
        assert aggregator.stats.occurrences == 0
        assert aggregator.pending_groups() == []
        with pytest.raises(ValueError, match=">= 1"):
            aggregator.count(fp("nope"), T0, 0)

    def test_per_problem_state_is_slotted(self, clock: ManualClock) -> None:
        """Per-problem and per-incident state have no instance dict."""
        aggregator = make(clock)
        aggregator.add(alert("a", at=T0))
        assert not hasattr(aggregator._entries[fp("a")], "__dict__")
        assert not hasattr(aggregator._incidents[DEFAULT_GROUP], "__dict__")

    @pytest.mark.parametrize(
        "arguments",
        [
            {"group_wait": -1.0},
            {"group_interval": -1.0},
            {"repeat_interval": -1.0},
            {"max_samples": 0},
        ],
    )
    def test_rejects_invalid_settings(
        self, clock: ManualClock, arguments: dict[str, float]
    ) -> None:
        """Negative durations and a max_samples below one are rejected up front."""
        settings: dict[str, float] = {
            "group_wait": GW,
            "group_interval": GI,
            "repeat_interval": RI,
            "max_samples": 10,
        } | arguments
        with pytest.raises(ValueError, match="must be >="):
            Aggregator(
                group_wait=settings["group_wait"],
                group_interval=settings["group_interval"],
                repeat_interval=settings["repeat_interval"],
                max_samples=int(settings["max_samples"]),
                clock=clock,
            )

    def test_default_incident_ids_are_random_hex(self, clock: ManualClock) -> None:
        """Without an id factory, incident ids are 16 random hex digits."""
        aggregator = Aggregator(group_wait=GW, group_interval=GI, repeat_interval=RI, clock=clock)
        aggregator.add(alert("a", at=T0))
        digest = formed(aggregator)
        assert len(digest.incident_id) == 16
        int(digest.incident_id, 16)

    def test_repr(self, notified: Aggregator) -> None:
        """The repr shows the windows and the amount of state held."""
        assert repr(notified) == (
            "Aggregator(group_wait=10.0, group_interval=300.0, repeat_interval=14400.0, "
            "incidents=1, samples=1)"
        )

    @pytest.mark.parametrize("seed", range(30))
    def test_random_operations_count_every_occurrence_once(
        self, clock: ManualClock, seed: int
    ) -> None:
        """Random add/count/form/restore/drop sequences never lose or double-count anything."""
        rng = random.Random(seed)  # noqa: S311 - reproducible test data, not cryptography
        aggregator = make(clock, max_samples=4)
        counted: Counter[Fingerprint] = Counter()
        reported: Counter[Fingerprint] = Counter()
        dropped = {"noted": 0, "reported": 0}
        restorable: list[Digest] = []

        def take(digest: Digest | None) -> None:
            if digest is None:
                return
            for problem in digest.problems:
                assert 1 <= problem.count <= problem.total
                assert problem.first_seen <= problem.last_seen
                reported[problem.alert.fingerprint] += problem.count
            dropped["reported"] += digest.dropped
            restorable.append(digest)

        for _ in range(400):
            clock.advance(rng.choice([0.0, 1.0, 5.0, 60.0, 400.0, 20_000.0]))
            level = logging.CRITICAL if rng.random() < 0.1 else logging.ERROR
            sample = alert(
                f"p{rng.randrange(8)}",
                at=clock.now - rng.choice([0.0, 2.0]),
                level=level,
                group=rng.choice([DEFAULT_GROUP, "db"]),
            )
            op = rng.random()
            if op < 0.3:
                aggregator.add(sample)
                counted[sample.fingerprint] += 1
            elif op < 0.55:
                n = rng.randint(1, 1000)
                if aggregator.count(sample.fingerprint, sample.created, n):
                    counted[sample.fingerprint] += n
            elif op < 0.7:
                for group in aggregator.due():
                    take(aggregator.form(group))
            elif op < 0.8:
                take(aggregator.form(rng.choice([DEFAULT_GROUP, "db"]), reason="flush"))
            elif op < 0.92 and restorable:
                digest = restorable.pop(rng.randrange(len(restorable)))
                aggregator.restore(digest)
                reported.subtract({p.alert.fingerprint: p.count for p in digest.problems})
                dropped["reported"] -= digest.dropped
            else:
                n = rng.randint(0, 3)
                aggregator.note_dropped(n)
                dropped["noted"] += n
            aggregator.pop_evicted()
            stats = aggregator.stats
            assert sum(reported.values()) + stats.pending == counted.total()
            assert stats.occurrences == counted.total()
            assert dropped["reported"] + stats.dropped == dropped["noted"]

        for group in aggregator.pending_groups():
            take(aggregator.form(group, reason="flush"))
        assert aggregator.stats.pending == 0
        assert +reported == +counted
        assert dropped["reported"] == dropped["noted"]
