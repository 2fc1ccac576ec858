"""Past its cap of distinct problems an incident counts the rest in an "other problems" row."""

from __future__ import annotations

import logging
import threading

from smtp_alerts._engine.aggregator import DEFAULT_GROUP, Aggregator
from smtp_alerts._engine.capture import Light
from smtp_alerts._engine.intake import FIRST_ROOM, Intake
from smtp_alerts._store.others import OTHER_SOURCE, is_other
from smtp_alerts.models import Alert, Digest, Problem
from smtp_alerts.testing import ManualClock

from .test_aggregator import GW, RI, T0
from .test_aggregator import make as make_aggregator


def make(clock: ManualClock, *, per_incident: int = 3, in_all: int = 100) -> Aggregator:
    return make_aggregator(clock, problems_per_incident=per_incident, problems_in_all=in_all)


def alert(
    name: str,
    *,
    at: float = T0,
    logger: str = "shop.api",
    level: int = logging.ERROR,
    source: str = "log",
    group: str = DEFAULT_GROUP,
) -> Alert:
    return Alert(
        fingerprint=("log", group, logger, name),
        level=level,
        logger=logger,
        message=f"user {name} could not log in",
        created=at,
        source=source,
        group=group,
    )


def formed(aggregator: Aggregator, group: str = DEFAULT_GROUP) -> Digest:
    digest = aggregator.form(group)
    assert digest is not None
    return digest


def others(digest: Digest) -> list[Problem]:
    return [p for p in digest.problems if is_other(p.alert.fingerprint)]


def test_problems_past_the_cap_are_counted_in_one_row_per_logger() -> None:
    clock = ManualClock(T0)
    aggregator = make(clock)
    for n in range(10):
        aggregator.add(alert(f"u{n}", at=T0 + n))
    for n in range(4):
        aggregator.add(alert(f"db{n}", logger="shop.db", at=T0 + 20 + n))
    digest = formed(aggregator)
    kept = [p for p in digest.problems if not is_other(p.alert.fingerprint)]
    assert [p.alert.message for p in kept] == [f"user u{n} could not log in" for n in range(3)]
    api, db = sorted(others(digest), key=lambda p: p.alert.logger)
    assert (api.count, db.count) == (7, 4)  # the incident was full for every db problem
    assert api.alert.source == OTHER_SOURCE
    assert api.alert.message == (
        "7 more problems from shop.api, counted together: this incident keeps 3 problems one by one"
    )
    assert api.alert.context[0] == ("example", "user u3 could not log in")
    assert (api.first_seen, api.last_seen) == (T0 + 3, T0 + 9)
    assert sum(p.count for p in digest.problems) == 14  # nothing lost


def test_each_logger_and_level_has_its_own_row_with_examples() -> None:
    clock = ManualClock(T0)
    aggregator = make(clock, per_incident=1)
    aggregator.add(alert("first"))
    for n in range(5):
        aggregator.add(alert(f"api{n}"))
        aggregator.add(alert(f"db{n}", logger="shop.db"))
        aggregator.add(alert(f"crit{n}", level=logging.CRITICAL))
    rows = {(p.alert.logger, p.alert.level): p for p in others(formed(aggregator))}
    assert set(rows) == {
        ("shop.api", logging.ERROR),
        ("shop.db", logging.ERROR),
        ("shop.api", logging.CRITICAL),
    }
    api = rows["shop.api", logging.ERROR]
    assert api.count == 5
    assert api.alert.message.startswith("5 more problems from shop.api")
    assert api.alert.context == (
        ("example", "user api0 could not log in"),
        ("example", "user api1 could not log in"),
        ("example", "user api2 could not log in"),
    )


def test_repeats_of_a_folded_problem_count_in_its_row() -> None:
    clock = ManualClock(T0)
    aggregator = make(clock, per_incident=1)
    aggregator.add(alert("kept"))
    folded = alert("folded", at=T0 + 1)
    aggregator.add(folded)
    assert aggregator.count(folded.fingerprint, T0 + 5, 41)
    (row,) = others(formed(aggregator))
    assert row.count == 42
    assert row.last_seen == T0 + 5
    assert row.alert.message.startswith("1 more problems from shop.api")


def test_crashes_checks_jobs_and_meta_alerts_are_never_folded() -> None:
    clock = ManualClock(T0)
    aggregator = make(clock, per_incident=1)
    aggregator.add(alert("kept"))
    for source in ("crash", "check", "job", "meta"):
        aggregator.add(alert(source, source=source))
    digest = formed(aggregator)
    assert not others(digest)
    assert {p.alert.source for p in digest.problems} == {"log", "crash", "check", "job", "meta"}


def test_the_cap_across_incidents_folds_too() -> None:
    clock = ManualClock(T0)
    aggregator = make(clock, per_incident=100, in_all=4)
    for n in range(3):
        aggregator.add(alert(f"a{n}", group="billing"))
    for n in range(3):
        aggregator.add(alert(f"b{n}"))
    assert aggregator.full_groups() is None  # every group folds now
    assert len(formed(aggregator, "billing").problems) == 3
    default = formed(aggregator)
    assert [p.count for p in others(default)] == [2]
    assert len(default.problems) == 2


def test_a_new_incident_keeps_its_problems_one_by_one_again() -> None:
    clock = ManualClock(T0)
    aggregator = make(clock, per_incident=1)
    aggregator.add(alert("kept"))
    folded = alert("folded")
    aggregator.add(folded)
    assert aggregator.full_groups() == frozenset({DEFAULT_GROUP})
    clock.now = T0 + GW
    formed(aggregator)
    clock.now = T0 + GW + RI + 1  # quiet for REPEAT_INTERVAL: the incident closes
    assert aggregator.due() == []
    aggregator.add(alert("folded", at=clock.now))
    digest = formed(aggregator)
    assert [p.alert.message for p in digest.problems] == ["user folded could not log in"]
    assert aggregator.full_groups() == frozenset({DEFAULT_GROUP})  # full again, at 1


def test_memory_is_bounded_whatever_the_cardinality() -> None:
    """100,000 distinct problems keep the cap's samples, and every occurrence is counted."""
    clock = ManualClock(T0)
    aggregator = make(clock, per_incident=1_000, in_all=5_000)
    for n in range(100_000):
        aggregator.add(alert(f"u{n}", at=T0 + n / 1_000))
    stats = aggregator.stats
    assert stats.samples <= 1_001
    assert stats.occurrences == 100_000
    digest = formed(aggregator)
    assert len(digest.problems) == 1_001
    assert sum(p.count for p in digest.problems) == 100_000


def test_light_captures_fold_in_batches_and_keep_what_is_not_full() -> None:
    """The intake's light captures count exactly; one whose incident emptied is kept."""
    clock = ManualClock(T0)
    aggregator = make(clock, per_incident=2)
    aggregator.add(alert("a"))
    aggregator.add(alert("b"))
    light: list[Light] = [
        (
            ("log", DEFAULT_GROUP, "shop.api", f"l{n % 4}"),
            logging.ERROR,
            "shop.api",
            f"user l{n % 4} could not log in",
            T0 + n,
            DEFAULT_GROUP,
            None,
        )
        for n in range(10)
    ]
    aggregator.add_lights(light[:6])
    aggregator.add_lights(light[6:])
    digest = formed(aggregator)
    (row,) = others(digest)
    assert row.count == 10
    assert (row.first_seen, row.last_seen) == (T0, T0 + 9)
    assert row.alert.message.startswith("4 more problems from shop.api")
    # A light capture for a group whose incident has room is kept one by one.
    other_group: Light = (
        ("log", "billing", "shop.api", "x"),
        logging.ERROR,
        "shop.api",
        "card declined",
        T0,
        "billing",
        "KeyError",
    )
    aggregator.add_lights([other_group])
    (kept,) = formed(aggregator, "billing").problems
    assert (kept.alert.message, kept.alert.exc_type, kept.count) == ("card declined", "KeyError", 1)


def test_light_captures_out_of_order_and_of_kept_problems() -> None:
    """A batch's row spans its earliest and latest times; a kept problem is counted as kept."""
    clock = ManualClock(T0)
    aggregator = make(clock, per_incident=1)
    aggregator.add(alert("a"))

    def light(name: str, at: float) -> Light:
        kept = alert(name, at=at)
        return (kept.fingerprint, kept.level, kept.logger, kept.message, at, DEFAULT_GROUP, None)

    aggregator.add_lights([light("b", T0 + 5), light("c", T0 + 2), light("a", T0 + 3)])
    aggregator.add_lights([light("d", T0 + 9), light("b", T0 + 1)])
    digest = formed(aggregator)
    (row,) = others(digest)
    assert (row.count, row.first_seen, row.last_seen) == (4, T0 + 1, T0 + 9)
    (kept,) = [p for p in digest.problems if not is_other(p.alert.fingerprint)]
    assert (kept.alert.message, kept.count) == ("user a could not log in", 2)


def test_room_is_what_one_incident_could_still_keep() -> None:
    clock = ManualClock(T0)
    aggregator = make(clock, per_incident=3, in_all=5)
    assert aggregator.room() == 3  # a new incident keeps its whole cap
    aggregator.add(alert("a"))
    aggregator.add(alert("b", group="billing"))
    assert aggregator.room() == 3  # another group could still open with its whole cap
    aggregator.add(alert("c", group="billing"))
    assert aggregator.room() == 2  # the cap across incidents binds: 5 - 3 kept
    aggregator.add(alert("d", group="ops"))
    aggregator.add(alert("e", group="ops"))
    assert aggregator.room() == 0


class _Intake(Intake):
    """The caller's side alone: nothing takes the queue but the test."""

    def _start(self) -> None:
        self._thread = threading.Thread()


def _new_problems(intake: Intake, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        record = logging.LogRecord(
            "shop.flood", logging.ERROR, "/srv/shop/api.py", 10, f"problem {n}: %s", ("x",), None
        )
        assert intake.submit_record(record)


def test_the_intake_captures_a_flood_lightly_past_the_room() -> None:
    """Past the room the engine gave (or the first), new problems are captured lightly at once."""
    intake = _Intake(capacity=10_000, clock=ManualClock(T0))
    _new_problems(intake, FIRST_ROOM + 5)
    queued = list(intake._queue)
    assert [type(c) is tuple for c in queued] == [False] * FIRST_ROOM + [True] * 5
    assert intake._take_queued() == ([], FIRST_ROOM + 5)
    intake._queue.clear()
    intake._give_room(2)  # the engine's word: two more could be kept
    _new_problems(intake, 3, start=FIRST_ROOM + 5)
    assert [type(c) is tuple for c in intake._queue] == [False, False, True]
    # What was captured after the engine measured the queue counts against its word.
    intake._give_room(2)
    _new_problems(intake, 1, start=FIRST_ROOM + 8)
    assert type(intake._queue[-1]) is tuple


def test_light_captures_of_loggers_and_levels_interleaved_count_in_their_own_rows() -> None:
    """A batch alternating loggers and levels folds each light into its own row, exactly."""
    clock = ManualClock(T0)
    aggregator = make(clock, per_incident=1)
    aggregator.add(alert("kept"))
    lights: list[Light] = []
    for n in range(30):
        logger = ("shop.api", "shop.db")[n % 2]
        level = (logging.ERROR, logging.CRITICAL)[n % 3 == 0]
        kept = alert(f"n{n}", logger=logger, level=level, at=T0 + 30 - n)
        lights.append(
            (kept.fingerprint, level, logger, kept.message, kept.created, DEFAULT_GROUP, None)
        )
    aggregator.add_lights(lights[:17])
    aggregator.add_lights(lights[17:] + lights[:3])  # three of them again: repeats of folded ones
    rows = {(p.alert.logger, p.alert.level): p for p in others(formed(aggregator))}
    expected: dict[tuple[str, int], list[float]] = {}
    for n in [*range(30), 0, 1, 2]:
        _, level, logger, _, created, _, _ = lights[n]
        expected.setdefault((logger, level), []).append(created)
    assert set(rows) == set(expected)
    for key, times in expected.items():
        row = rows[key]
        assert (row.count, row.first_seen, row.last_seen) == (len(times), min(times), max(times))
