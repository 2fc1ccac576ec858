"""When producers wake the engine's loop: idle, past a high water mark, or for a new problem.

A flood of repeats is taken less often than new problems (every
``REPEATS_INTERVAL``, or when the intake passes its repeats' high water
mark): each wake-up takes the GIL from the program. A new problem must not
wait for that: the loop arms a flag before it waits long, and the first new
problem after it wakes the loop (the same handshake as an idle loop's).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from smtp_alerts import Engine, Settings
from smtp_alerts._engine import runner
from smtp_alerts._engine.intake import Batch, Intake
from smtp_alerts.transports import MemoryTransport
from tests.helpers import wait_for


class Counted(Intake):
    """An intake whose loop is there (a thread is set) and whose wakes are counted."""

    def __init__(self, capacity: int = 800) -> None:
        super().__init__(capacity=capacity, clock=time.time)
        self.wakes = 0
        self._thread = object()  # type: ignore[assignment]  # started: no thread is made

    def _wake(self) -> bool:
        self.wakes += 1
        return True


def record(msg: str, *args: object, line: int = 10) -> logging.LogRecord:
    return logging.LogRecord("shop.api", logging.ERROR, "/srv/shop/api.py", line, msg, args, None)


def counts(taken: tuple[list[Batch], int]) -> tuple[list[int], int]:
    """How many repeats each batch a take handed over has to count, and the new problems."""
    batches, new = taken
    return sorted(stop - start for _, start, stop, _ in batches), new


def busy_with_repeats(intake: Counted) -> None:
    """A known problem repeated, taken by the loop: it is busy, with repeats alone."""
    intake.submit_record(record("payment %s failed", 0))
    intake.submit_record(record("payment %s failed", 1))
    intake._queue.clear()
    intake._repeats.clear()
    intake._take_queued()  # nothing queued: idle, flags down
    intake.submit_record(record("payment %s failed", 2))  # wakes the idle loop
    assert counts(intake._take_queued()) == ([1], 0)


def test_a_new_problem_wakes_a_loop_that_waits_long() -> None:
    intake = Counted()
    busy_with_repeats(intake)
    wakes = intake.wakes
    intake.submit_record(record("payment %s failed", 3))
    assert intake.wakes == wakes  # busy: the loop polls, a repeat does not wake it
    assert intake._arm_new_wake()  # nothing new queued: the loop may wait long
    intake.submit_record(record("payment %s failed", 4))
    assert intake.wakes == wakes  # still a repeat
    intake.submit_record(record("stock %s is gone", 1))
    assert intake.wakes == wakes + 1  # the new problem woke it
    intake.submit_record(record("stock %s is gone", 2, line=11))
    assert intake.wakes == wakes + 1  # once: the loop polls again until it next waits long


def test_the_loop_does_not_wait_long_with_a_new_problem_queued() -> None:
    intake = Counted()
    busy_with_repeats(intake)
    intake.submit_record(record("stock %s is gone", 1))  # queued before the loop armed
    assert not intake._arm_new_wake()  # the handshake: it sees the problem, polls instead


def test_a_dispatchers_take_leaves_the_flag_up() -> None:
    """Only the loop's drain task lowers the flag, when it wakes; other drains take meanwhile."""
    intake = Counted()
    busy_with_repeats(intake)
    assert intake._arm_new_wake()
    intake.submit_record(record("payment %s failed", 3))
    intake._take_queued()  # the dispatcher's drain, while the drain task waits long
    wakes = intake.wakes
    intake.submit_record(record("stock %s is gone", 1))
    assert intake.wakes == wakes + 1


def test_a_wake_the_loop_answered_at_once_leaves_the_flag_down() -> None:
    """A loop that took everything and went idle while the producer woke it stays wakeable."""
    intake = Counted()
    busy_with_repeats(intake)
    intake._take_queued()  # idle: flags down
    wakes = intake.wakes

    def wake_taken_at_once() -> bool:
        intake.wakes += 1
        intake._take_queued()  # the loop takes the new problem...
        intake._queue.clear()
        intake._take_queued()  # ...finds nothing more, and lowers the flags
        return True

    intake._wake = wake_taken_at_once  # type: ignore[method-assign]
    intake.submit_record(record("stock %s is gone", 1))
    assert intake.wakes == wakes + 1
    assert not intake._wake_pending  # not raised again over the idle loop's word
    intake.submit_record(record("payment %s failed", 4))
    assert intake.wakes == wakes + 2  # so the next repeat wakes it


def test_repeats_wake_the_loop_at_their_high_water_mark_only() -> None:
    intake = Counted(capacity=800)  # new problems' mark: 100; repeats': 200
    busy_with_repeats(intake)
    wakes = intake.wakes
    for n in range(150):
        intake.submit_record(record("payment %s failed", n))
    assert intake.wakes == wakes  # past the new problems' mark: a repeat is a pointer
    for n in range(100):
        intake.submit_record(record("payment %s failed", n))
    assert intake.wakes == wakes + 1  # at the repeats' mark, once
    assert len(intake._repeats) == 250  # none dropped


def test_repeats_past_the_mark_unseen_still_wake_the_loop() -> None:
    """Two producers that both read one below the mark both append: the next one wakes it."""
    intake = Counted(capacity=800)
    busy_with_repeats(intake)
    intake.submit_record(record("payment %s failed", 1))
    intake._repeats.extend([intake._repeats[0]] * 200)  # past the mark, no producer saw it
    wakes = intake.wakes
    intake.submit_record(record("payment %s failed", 2))
    assert intake.wakes == wakes + 1


def test_each_deque_of_repeats_wakes_the_loop_at_its_mark() -> None:
    """Once per deque the loop takes, whatever deque a counted one left its memory to."""
    intake = Counted(capacity=800)
    busy_with_repeats(intake)
    for cycle in range(20):
        # Past the mark every other deque: one in between that never reached
        # it may be followed by one in the memory of the last that did.
        past = cycle % 2 == 0
        wakes = intake.wakes
        for n in range(250 if past else 10):
            intake.submit_record(record("payment %s failed", n))
        assert intake.wakes == wakes + past, cycle
        batches, _ = intake._take_queued()  # counted, then let go: its deque is freed
        del batches


def test_the_loop_counts_repeats_no_producer_holds_any_more() -> None:
    """The repeats are handed over whole; of a deque a producer still holds, what it has now.

    The rest, appended after, is counted at the next take: a flush counts
    what was accepted before it, and nothing is counted twice or lost.
    """
    intake = Counted()
    busy_with_repeats(intake)
    for n in range(3):
        intake.submit_record(record("payment %s failed", n))
    held = intake._repeats  # a producer between reading the deque and appending to it
    batches, _ = intake._take_queued()
    assert [(stop - start, free) for _, start, stop, free in batches] == [(3, False)]
    del batches  # counted (the drain lets go of what it took)
    assert intake._queued() == 0
    intake.submit_record(record("payment %s failed", 3))  # into the new deque
    held.append(held[0])  # the producer's append, after the swap
    assert intake._queued() == 2
    del held
    batches, _ = intake._take_queued()
    assert sorted((start, stop, free) for _, start, stop, free in batches) == [
        (0, 1, True),  # the new deque, whole
        (3, 4, True),  # the rest of the held one
    ]
    assert intake._queued() == 0
    assert intake._held == []


def test_a_held_deque_is_let_go_once_free_with_nothing_more_to_count() -> None:
    intake = Counted()
    busy_with_repeats(intake)
    intake.submit_record(record("payment %s failed", 1))
    held = intake._repeats
    assert counts(intake._take_queued()) == ([1], 0)
    del held
    assert counts(intake._take_queued()) == ([], 0)  # nothing new in it: let go
    assert intake._held == []
    assert not intake._busy or counts(intake._take_queued()) == ([], 0)


@pytest.fixture
def waits_long(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood of repeats would be taken once a minute, and the store polled as seldom.

    Only the wakes (and the push deadline) bring the loop sooner.
    """
    monkeypatch.setattr(runner, "REPEATS_INTERVAL", 60.0)
    monkeypatch.setattr(runner, "STORE_POLL", 60.0)


@pytest.mark.usefixtures("waits_long")
def test_a_new_problem_during_a_flood_of_repeats_is_taken_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "PUSH_INTERVAL", 60.0)  # no push deadline to end the wait
    transport = MemoryTransport()
    settings = Settings(
        to=["oncall@example.com"], from_="alerts@example.com", group_wait=3600, spool_dir=tmp_path
    )
    engine = Engine(settings, transport=transport)
    try:
        engine.submit_record(record("payment %s failed", 0))
        assert engine.flush(30)  # loaded and sent: nothing else will drain for a minute
        # Repeats until the loop, busy with them alone, waits long.
        repeats = 0
        while not engine._wake_on_new and repeats < 1_000_000:
            repeats += 1
            engine.submit_record(record("payment %s failed", repeats))
        assert engine._wake_on_new
        engine.submit_record(record("stock %s is gone", 1))
        # Not a minute later: the new problem woke the loop, which took everything.
        assert wait_for(lambda: engine.stats().accepted == repeats + 2, seconds=10)
    finally:
        engine.close()


@pytest.mark.usefixtures("waits_long")
def test_a_flood_of_repeats_reaches_the_store_within_a_push(tmp_path: Path) -> None:
    transport = MemoryTransport()
    settings = Settings(
        to=["oncall@example.com"], from_="alerts@example.com", group_wait=3600, spool_dir=tmp_path
    )
    engine = Engine(settings, transport=transport)
    database = tmp_path / "spool.sqlite3"

    def stored() -> int:
        try:
            with closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)) as conn:
                (total,) = conn.execute("SELECT SUM(total) FROM store_problems").fetchone()
        except sqlite3.OperationalError:  # not created yet, or busy
            return 0
        return int(total or 0)

    try:
        engine.submit_record(record("payment %s failed", 0))
        assert wait_for(lambda: stored() == 1)
        for n in range(1, 50):
            engine.submit_record(record("payment %s failed", n))
        # The loop waits long for more repeats, but never past the next push:
        # a kill loses at most a tick of counts (DESIGN section 2).
        assert wait_for(lambda: stored() == 50, seconds=10)
    finally:
        engine.close()
