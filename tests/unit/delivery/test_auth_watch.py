"""The auth watcher on its own: counting, tripping, cool-downs and probes (no I/O)."""

from __future__ import annotations

import pytest

from smtp_alerts._delivery.auth_watch import (
    AUTH_COOL_DOWN,
    AUTH_MAX_COOL_DOWN,
    AuthRecovered,
    AuthTripped,
    AuthWatch,
)
from smtp_alerts._delivery.policy import BACK_OFF_PAUSE
from smtp_alerts.errors import AuthenticationError, ConnectError, DeliveryError
from smtp_alerts.testing import ManualClock

CRED = "alice@example.com@smtp.gmail.com:587"
CHANNEL = "smtp.gmail.com:587"


def refused(
    code: int = 535, reply: str = "5.7.8 Username and Password not accepted"
) -> DeliveryError:
    return AuthenticationError("refused", channel=CHANNEL, step="auth", code=code, reply=reply)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def watch(clock: ManualClock) -> AuthWatch:
    return AuthWatch(threshold=3, window=600, clock=clock)


def trip(watch: AuthWatch, clock: ManualClock, error: DeliveryError | None = None) -> AuthTripped:
    for _ in range(watch.threshold):
        assert watch.allow(CRED)
        watch.settled(CRED, CHANNEL, error or refused())
        clock.advance(1)
    (event,) = watch.pop_events()
    assert isinstance(event, AuthTripped)
    return event


class TestCounting:
    def test_trips_at_the_threshold(self, watch: AuthWatch, clock: ManualClock) -> None:
        """Three refusals within the window trip the credential, once, with their count."""
        watch.settled(CRED, CHANNEL, refused())
        clock.advance(60)
        watch.settled(CRED, CHANNEL, refused())
        assert watch.pop_events() == []
        assert watch.allow(CRED)
        clock.advance(60)
        watch.settled(CRED, CHANNEL, refused())
        (event,) = watch.pop_events()
        assert isinstance(event, AuthTripped)
        assert (event.failures, event.window, event.credential) == (3, 600, CRED)
        assert event.first_failure == clock() - 120
        assert event.paused_until == clock() + AUTH_COOL_DOWN
        assert watch.is_tripped(CRED)
        assert not watch.allow(CRED)

    def test_failures_outside_the_window_do_not_count(
        self, watch: AuthWatch, clock: ManualClock
    ) -> None:
        """Refusals spread wider than the window never trip."""
        for _ in range(6):
            watch.settled(CRED, CHANNEL, refused())
            clock.advance(301)
        assert watch.pop_events() == []
        assert not watch.is_tripped(CRED)

    def test_a_success_clears_the_count(self, watch: AuthWatch, clock: ManualClock) -> None:
        """An accepted login in between means the refusals were not about the credential."""
        watch.settled(CRED, CHANNEL, refused())
        watch.settled(CRED, CHANNEL, refused())
        watch.settled(CRED, CHANNEL, None)
        watch.settled(CRED, CHANNEL, refused())
        assert watch.pop_events() == []

    def test_network_failures_say_nothing(self, watch: AuthWatch) -> None:
        """Connection and TLS failures neither count nor clear."""
        watch.settled(CRED, CHANNEL, refused())
        watch.settled(CRED, CHANNEL, ConnectError("reset", channel=CHANNEL, step="connect"))
        watch.settled(CRED, CHANNEL, refused())
        watch.settled(CRED, CHANNEL, refused())
        (event,) = watch.pop_events()
        assert isinstance(event, AuthTripped)

    def test_failure_after_login_proves_the_login(self, watch: AuthWatch) -> None:
        """A refusal at MAIL or DATA comes after an accepted login: it clears the count."""
        watch.settled(CRED, CHANNEL, refused())
        watch.settled(CRED, CHANNEL, refused())
        watch.settled(CRED, CHANNEL, DeliveryError("552", channel=CHANNEL, step="data"))
        watch.settled(CRED, CHANNEL, refused())
        assert watch.pop_events() == []

    def test_credentials_are_counted_apart(self, watch: AuthWatch) -> None:
        """Refusals of one login do not trip another."""
        for _ in range(2):
            watch.settled(CRED, CHANNEL, refused())
            watch.settled("bob@backup:587", "backup:587", refused())
        assert watch.pop_events() == []


class TestCoolDown:
    def test_one_probe_per_cool_down(self, watch: AuthWatch, clock: ManualClock) -> None:
        """After the cool-down exactly one caller may probe; the others wait for it."""
        event = trip(watch, clock)
        assert watch.next_probe_at() == event.paused_until
        clock.advance(AUTH_COOL_DOWN - 5)
        assert watch.due_probes() == []
        assert not watch.allow(CRED)
        clock.advance(10)
        assert watch.due_probes() == [CRED]
        assert watch.allow(CRED)
        assert not watch.allow(CRED)  # the probe is under way
        assert watch.due_probes() == []

    def test_failed_probes_double_the_cool_down(self, watch: AuthWatch, clock: ManualClock) -> None:
        """Each refused probe doubles the rest, up to the cap; no second meta event."""
        trip(watch, clock)
        expected = AUTH_COOL_DOWN
        for _ in range(8):
            clock.advance(expected)
            assert watch.allow(CRED)
            watch.settled(CRED, CHANNEL, refused())
            expected = min(AUTH_MAX_COOL_DOWN, expected * 2)
            assert watch.paused_until(CRED) == clock() + expected
        assert expected == AUTH_MAX_COOL_DOWN
        assert watch.pop_events() == []

    def test_a_probe_that_did_not_log_in_is_released(
        self, watch: AuthWatch, clock: ManualClock
    ) -> None:
        """A probe cut short by the network lets the next caller probe at once."""
        trip(watch, clock)
        clock.advance(AUTH_COOL_DOWN)
        assert watch.allow(CRED)
        watch.settled(CRED, CHANNEL, ConnectError("refused", channel=CHANNEL, step="connect"))
        assert watch.allow(CRED)

    def test_too_many_login_attempts_rests_longer(self, clock: ManualClock) -> None:
        """A 454 4.7.0 rests at least as long as Gmail's slow-down asks."""
        watch = AuthWatch(threshold=1, window=600, clock=clock, cool_down=60)
        watch.settled(CRED, CHANNEL, refused(454, "4.7.0 Too many login attempts"))
        assert watch.paused_until(CRED) == clock() + BACK_OFF_PAUSE

    def test_recovery(self, watch: AuthWatch, clock: ManualClock) -> None:
        """A probe that logs in ends the outage with one recovery event."""
        tripped = trip(watch, clock)
        clock.advance(AUTH_COOL_DOWN)
        assert watch.allow(CRED)
        watch.settled(CRED, CHANNEL, refused())
        clock.advance(2 * AUTH_COOL_DOWN)
        assert watch.allow(CRED)
        watch.settled(CRED, CHANNEL, None)
        (event,) = watch.pop_events()
        assert isinstance(event, AuthRecovered)
        assert (event.tripped_at, event.failed_probes) == (tripped.at, 1)
        assert not watch.is_tripped(CRED)
        assert watch.allow(CRED)
        assert watch.allow(CRED)  # in use again: no probe to wait for

    def test_rejects_nonsense(self, clock: ManualClock) -> None:
        """A threshold below one or an empty window is refused."""
        with pytest.raises(ValueError, match="threshold"):
            AuthWatch(threshold=0, window=600, clock=clock)
        with pytest.raises(ValueError, match="window"):
            AuthWatch(threshold=3, window=0, clock=clock)
