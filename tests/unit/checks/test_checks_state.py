"""The per-check state machine, with plain calls and a manual clock."""

from __future__ import annotations

import json

import pytest

from smtp_alerts._util.humanize import format_duration
from smtp_alerts.checks import CheckEvent, CheckMachine, CheckPolicy, CheckState, EventKind
from smtp_alerts.testing import ManualClock

START = 1_700_000_000.0


def machine(**policy: float) -> tuple[CheckMachine, ManualClock]:
    clock = ManualClock(START)
    return CheckMachine("db", CheckPolicy(**policy), clock=clock), clock  # type: ignore[arg-type]


def feed(m: CheckMachine, clock: ManualClock, results: str, step: float = 60) -> list[CheckEvent]:
    """Feed ``+`` (passed) and ``-`` (failed) results ``step`` seconds apart."""
    events = []
    for mark in results:
        clock.advance(step)
        events += m.record(mark == "+", "fine" if mark == "+" else "connection refused")
    return events


def kinds(events: list[CheckEvent]) -> list[EventKind]:
    return [event.kind for event in events]


class TestPolicy:
    def test_defaults_and_readable_repr(self) -> None:
        """The defaults are the named constants; the repr shows only what differs from them."""
        assert repr(CheckPolicy()) == "CheckPolicy()"
        assert repr(CheckPolicy(retries=5, flap_window=60.0)) == (
            "CheckPolicy(retries=5, flap_window=60.0)"
        )
        assert CheckPolicy().retries == 2

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("retries", -1),
            ("recovery", 0),
            ("resend_interval", -5),
            ("max_reminders", -1),
            ("flap_threshold", 1),
            ("flap_window", 0),
            ("retries", "2"),
        ],
    )
    def test_bad_values_name_the_field(self, field: str, value: object) -> None:
        """An out-of-range value is refused with a message naming the field."""
        with pytest.raises(ValueError, match=field):
            CheckPolicy(**{field: value})  # type: ignore[arg-type]


class TestTransitions:
    def test_down_on_the_failure_after_the_retries(self) -> None:
        """With retries=2, two failures are PENDING and the third is DOWN, with one event."""
        m, clock = machine(retries=2)
        assert feed(m, clock, "--") == []
        assert m.state is CheckState.PENDING
        (event,) = feed(m, clock, "-")
        assert event.kind is EventKind.DOWN
        assert event.state is CheckState.DOWN
        assert event.detail == "connection refused"
        assert event.since == START + 60  # the first failure
        assert feed(m, clock, "---") == []  # still down: nothing new

    def test_no_retries_is_down_at_once(self) -> None:
        """With retries=0 the first failure is DOWN."""
        m, clock = machine(retries=0)
        assert kinds(feed(m, clock, "-")) == [EventKind.DOWN]

    def test_starts_unknown_and_a_blip_is_silent(self) -> None:
        """The first success makes an UNKNOWN check UP; a failure within the retries is silent."""
        m, clock = machine(retries=2)
        assert m.state is CheckState.UNKNOWN
        assert feed(m, clock, "+-+") == []
        assert m.status().state is CheckState.UP

    def test_recovery_needs_successes_in_a_row(self) -> None:
        """With recovery=2 a lone success keeps the check DOWN; two in a row recover it."""
        m, clock = machine(retries=0, recovery=2)
        feed(m, clock, "-")
        assert feed(m, clock, "+-+") == []
        assert m.state is CheckState.DOWN
        (event,) = feed(m, clock, "+")
        assert event.kind is EventKind.RECOVERED
        assert event.state is CheckState.UP

    def test_downtime_runs_from_first_failure_to_first_success(self) -> None:
        """The RECOVERED downtime starts at the first failure and ends at the first success."""
        m, clock = machine(retries=2, recovery=2)
        events = feed(m, clock, "---++")  # failures at 60, 120, 180; successes at 240, 300
        recovered = events[-1]
        assert recovered.kind is EventKind.RECOVERED
        assert recovered.downtime == 180.0
        assert format_duration(recovered.downtime) == "3m"

    def test_each_outage_has_its_number(self) -> None:
        """A second outage is numbered 2, so its alerts never pass for the first one's."""
        m, clock = machine(retries=0, recovery=1, flap_threshold=0)
        events = feed(m, clock, "-+-+")
        assert [(e.kind, e.outage) for e in events] == [
            (EventKind.DOWN, 1),
            (EventKind.RECOVERED, 1),
            (EventKind.DOWN, 2),
            (EventKind.RECOVERED, 2),
        ]


class TestReminders:
    def test_a_reminder_every_resend_interval_up_to_the_cap(self) -> None:
        """While DOWN, a reminder comes every resend_interval, numbered, at most max_reminders."""
        m, clock = machine(retries=0, resend_interval=600, max_reminders=2)
        feed(m, clock, "-")
        clock.advance(599)
        assert m.tick() == []
        clock.advance(1)
        (first,) = m.tick()
        assert (first.kind, first.reminder) == (EventKind.REMINDER, 1)
        assert first.detail == "connection refused"
        assert m.tick() == []  # not twice for the same moment
        clock.advance(600)
        assert [e.reminder for e in m.tick()] == [2]
        clock.advance(6000)
        assert m.tick() == []  # the cap
        assert m.next_due() is None

    def test_next_due_says_when_to_tick(self) -> None:
        """next_due is the next reminder's time, so a ticker knows when to look."""
        m, clock = machine(retries=0, resend_interval=600)
        assert m.next_due() is None
        feed(m, clock, "-")
        assert m.next_due() == clock.now + 600

    def test_no_reminders_when_resend_interval_is_zero(self) -> None:
        """resend_interval=0 turns reminders off."""
        m, clock = machine(retries=0, resend_interval=0)
        feed(m, clock, "-")
        clock.advance(86400)
        assert m.tick() == []

    def test_no_reminder_while_recovering(self) -> None:
        """A DOWN check whose latest result passed is not reminded about."""
        m, clock = machine(retries=0, recovery=3, resend_interval=600)
        feed(m, clock, "-+")
        clock.advance(1200)
        assert m.tick() == []
        assert kinds(feed(m, clock, "-", step=1)) == [EventKind.REMINDER]


class TestFlapping:
    def test_one_flapping_event_then_quiet(self) -> None:
        """Four flips within the window give one FLAPPING event; later flips stay quiet."""
        m, clock = machine(retries=0, recovery=1, flap_threshold=4, flap_window=600)
        events = feed(m, clock, "+-+-+-+-+-+-", step=10)
        assert kinds(events) == [
            EventKind.DOWN,
            EventKind.RECOVERED,
            EventKind.DOWN,
            EventKind.FLAPPING,
        ]
        assert events[-1].flips == 4
        assert events[-1].outage == 1  # the first flapping episode

    def test_stable_after_a_calm_window_then_normal(self) -> None:
        """A flapping check calm for the window gives one STABLE event; then alerts resume."""
        m, clock = machine(retries=0, recovery=1, flap_threshold=4, flap_window=600)
        feed(m, clock, "+-+-+", step=10)
        assert m.flapping
        clock.advance(599)
        assert m.tick() == []
        clock.advance(1)
        (stable,) = m.tick()
        assert (stable.kind, stable.state) == (EventKind.STABLE, CheckState.UP)
        assert not m.status().flapping
        assert kinds(feed(m, clock, "-")) == [EventKind.DOWN]

    def test_stable_while_down_is_announced_and_reminded(self) -> None:
        """Stable while DOWN: the STABLE event says so, then reminders and RECOVERED follow."""
        m, clock = machine(
            retries=0, recovery=1, flap_threshold=4, flap_window=600, resend_interval=900
        )
        feed(m, clock, "+-+-+-", step=10)  # flapping from the fourth flip, ends DOWN
        assert m.state is CheckState.DOWN
        clock.advance(600)
        (stable,) = m.tick()
        assert (stable.kind, stable.state) == (EventKind.STABLE, CheckState.DOWN)
        clock.advance(900)
        assert kinds(m.tick()) == [EventKind.REMINDER]
        assert kinds(feed(m, clock, "+")) == [EventKind.RECOVERED]

    def test_flips_outside_the_window_do_not_count(self) -> None:
        """Flips spread wider than the window never make the check flapping."""
        m, clock = machine(retries=0, recovery=1, flap_threshold=4, flap_window=600)
        events = feed(m, clock, "+-+-+-+-+", step=300)
        assert EventKind.FLAPPING not in kinds(events)

    def test_threshold_zero_turns_it_off(self) -> None:
        """flap_threshold=0: every change is told, however fast."""
        m, clock = machine(retries=0, recovery=1, flap_threshold=0)
        assert len(feed(m, clock, "+-+-+-+-+", step=1)) == 8


class TestPersistence:
    def test_round_trip_mid_outage_continues_the_outage(self) -> None:
        """A machine rebuilt from its JSON state neither repeats DOWN nor forgets the downtime."""
        m, clock = machine(retries=2, recovery=1, resend_interval=600)
        feed(m, clock, "---")
        data = json.loads(json.dumps(m.to_dict()))
        again = CheckMachine.from_dict("db", data, m.policy, clock=clock)
        assert again.state is CheckState.DOWN
        assert feed(again, clock, "-") == []
        clock.advance(600)
        assert kinds(again.tick()) == [EventKind.REMINDER]
        (recovered,) = feed(again, clock, "+")
        assert recovered.downtime == clock.now - (START + 60)

    def test_steady_state_does_not_change_the_stored_state(self) -> None:
        """Results that change nothing leave to_dict equal, so nothing is rewritten."""
        m, clock = machine(recovery=2)
        feed(m, clock, "++")
        before = m.to_dict()
        feed(m, clock, "+++")
        assert m.to_dict() == before

    @pytest.mark.parametrize(
        "data",
        [None, [], {"version": 99}, {"version": 1}, {"version": 1, "state": "SIDEWAYS"}],
    )
    def test_garbage_is_refused(self, data: object) -> None:
        """Anything but a state this version wrote raises ValueError."""
        with pytest.raises(ValueError, match="db"):
            CheckMachine.from_dict("db", data)


class TestDurations:
    @pytest.mark.parametrize(
        ("seconds", "text"),
        [
            (0.25, "250 ms"),
            (2.5, "2.5 s"),
            (59, "59 s"),
            (750, "12m 30s"),
            (3600, "1h"),
            (90061, "1d 1h"),
        ],
    )
    def test_human_form(self, seconds: float, text: str) -> None:
        """Durations read as a person says them: the largest unit and the next."""
        assert format_duration(seconds) == text
