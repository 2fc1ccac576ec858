"""Tests for the email quota: hour and day caps over sliding windows."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from smtp_alerts._engine.limits import DAY, HOUR, EmailQuota, Grant
from smtp_alerts.testing import ManualClock

# 2024-01-01 11:34:00 UTC: a start whose notices read nicely.
START = datetime(2024, 1, 1, 11, 34, tzinfo=timezone.utc).timestamp()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


def _take(quota: EmailQuota, n: int) -> list[Grant]:
    grants = []
    for _ in range(n):
        grant = quota.try_acquire()
        assert grant is not None
        grants.append(grant)
    return grants


def _held_back_since(quota: EmailQuota) -> float | None:
    # A call, so mypy does not carry a narrowed type across the quota's state changes.
    return quota.held_back_since


class TestEmailQuota:
    def test_hour_cap(self, clock: ManualClock) -> None:
        """The hour cap refuses the send after per_hour sends within an hour."""
        quota = EmailQuota(per_hour=3, per_day=100, clock=clock)
        grants = _take(quota, 3)
        assert [g.last for g in grants] == [False, False, True]
        assert grants[2].window == "hour"
        assert grants[2].reopens_at == START + HOUR
        assert quota.try_acquire() is None

    def test_day_cap(self, clock: ManualClock) -> None:
        """The day cap refuses sends even when every hour has room."""
        quota = EmailQuota(per_hour=10, per_day=3, clock=clock)
        grants = []
        for _ in range(3):
            grants.extend(_take(quota, 1))
            clock.advance(HOUR)
        assert [g.last for g in grants] == [False, False, True]
        assert grants[2].window == "day"
        assert grants[2].reopens_at == START + DAY
        assert quota.try_acquire() is None
        clock.now = START + DAY - 0.001
        assert quota.try_acquire() is None
        clock.now = START + DAY
        assert quota.try_acquire() is not None

    def test_binding_window_is_the_later_one(self, clock: ManualClock) -> None:
        """When one send fills both windows, the grant names the one that reopens last."""
        quota = EmailQuota(per_hour=2, per_day=2, clock=clock)
        grant = _take(quota, 2)[1]
        assert grant.last
        assert grant.window == "day"
        assert grant.reopens_at == START + DAY

    def test_last_slot_flagged_once_per_window(self, clock: ManualClock) -> None:
        """A window kept full by a steady flood flags its last slot once per hour, not per send."""
        quota = EmailQuota(per_hour=2, per_day=100, clock=clock)
        flagged = 0
        granted = 0
        for _ in range(4 * 60):  # four hours of attempts, one a minute
            grant = quota.try_acquire()
            if grant is not None:
                granted += 1
                flagged += grant.last
            clock.advance(60)
        assert granted == 8
        assert flagged == 4

    def test_available_at(self, clock: ManualClock) -> None:
        """available_at is now while sends are allowed, then when the oldest slot frees."""
        quota = EmailQuota(per_hour=2, per_day=100, clock=clock)
        assert quota.available_at() == START
        _take(quota, 1)
        clock.advance(600)
        _take(quota, 1)
        assert quota.available_at() == START + HOUR
        clock.now = START + HOUR
        assert quota.available_at() == START + HOUR
        assert quota.try_acquire() is not None
        assert quota.available_at() == START + 600 + HOUR

    def test_available_at_takes_the_later_window(self, clock: ManualClock) -> None:
        """When the day is full, available_at waits for the day window, not the hour."""
        quota = EmailQuota(per_hour=5, per_day=2, clock=clock)
        _take(quota, 2)
        assert quota.available_at() == START + DAY

    def test_windows_slide(self, clock: ManualClock) -> None:
        """A slot frees exactly one hour after its send, not at a fixed clock boundary."""
        quota = EmailQuota(per_hour=1, per_day=100, clock=clock)
        _take(quota, 1)
        clock.advance(HOUR - 0.001)
        assert quota.try_acquire() is None
        clock.advance(0.001)
        assert quota.try_acquire() is not None
        assert quota.used_hour == 1
        assert quota.used_day == 2

    def test_delayed_since(self, clock: ManualClock) -> None:
        """The first grant after refusals reports when the first refusal happened."""
        quota = EmailQuota(per_hour=1, per_day=100, clock=clock)
        assert _take(quota, 1)[0].delayed_since is None
        clock.advance(60)
        assert quota.try_acquire() is None
        assert _held_back_since(quota) == START + 60
        clock.advance(60)
        assert quota.try_acquire() is None
        clock.now = START + HOUR
        grant = quota.try_acquire()
        assert grant is not None
        assert grant.delayed_since == START + 60
        assert _held_back_since(quota) is None
        clock.now = START + 2 * HOUR
        later = quota.try_acquire()
        assert later is not None
        assert later.delayed_since is None

    def test_notice_text(self, clock: ManualClock) -> None:
        """The last slot's notice names the cap and the minute sending resumes."""
        quota = EmailQuota(per_hour=20, per_day=100, clock=clock)
        grant = _take(quota, 20)[-1]
        assert quota.notice(grant) == (
            "Email quota reached (20 per hour). "
            "Further alerts are collected and sent from 12:34 UTC."
        )

    def test_notice_rounds_up_and_names_another_day(self, clock: ManualClock) -> None:
        """A reopening time is rounded up to the minute and dated when on another day."""
        clock.now = datetime(2024, 1, 1, 23, 30, 30, tzinfo=timezone.utc).timestamp()
        quota = EmailQuota(per_hour=1, per_day=100, clock=clock)
        grant = _take(quota, 1)[0]
        assert quota.notice(grant).endswith("sent from 2024-01-02 00:31 UTC.")

    def test_delayed_notice_text(self, clock: ManualClock) -> None:
        """The delay notice says since which minute the quota held alerts back."""
        quota = EmailQuota(per_hour=1, per_day=100, clock=clock)
        _take(quota, 1)
        clock.advance(90)  # 11:35:30, shown as 11:35
        assert quota.try_acquire() is None
        clock.now = START + HOUR
        grant = quota.try_acquire()
        assert grant is not None
        assert quota.delayed_notice(grant) == (
            "Delayed by the email quota (1 per hour, 100 per day) since 11:35 UTC."
        )

    def test_notices_reject_unflagged_grants(self, clock: ManualClock) -> None:
        """Asking for a notice a grant does not call for is a programming error."""
        quota = EmailQuota(per_hour=5, per_day=100, clock=clock)
        grant = _take(quota, 1)[0]
        with pytest.raises(ValueError, match="last slot"):
            quota.notice(grant)
        with pytest.raises(ValueError, match="delayed"):
            quota.delayed_notice(grant)

    def test_bounded_memory(self, clock: ManualClock) -> None:
        """However many attempts, at most per_day send times are kept."""
        quota = EmailQuota(per_hour=50, per_day=7, clock=clock)
        for _ in range(10_000):
            quota.try_acquire()
            assert len(quota._sends) <= 7
            clock.advance(97)

    def test_clock_stepping_back_keeps_windows_sorted(self, clock: ManualClock) -> None:
        """A clock stepped backwards does not unsort the send times."""
        quota = EmailQuota(per_hour=3, per_day=100, clock=clock)
        _take(quota, 1)
        clock.now = START - 600
        _take(quota, 1)
        assert list(quota._sends) == sorted(quota._sends)

    def test_repr(self, clock: ManualClock) -> None:
        """The repr shows the caps and the slots used in each window."""
        quota = EmailQuota(per_hour=20, per_day=100, clock=clock)
        _take(quota, 3)
        assert repr(quota) == "EmailQuota(per_hour=20, per_day=100, used_hour=3, used_day=3)"

    @pytest.mark.parametrize(("per_hour", "per_day"), [(0, 10), (10, 0), (-1, 10)])
    def test_rejects_caps_below_one(self, clock: ManualClock, per_hour: int, per_day: int) -> None:
        """A cap below one is rejected up front."""
        with pytest.raises(ValueError, match="must be >= 1"):
            EmailQuota(per_hour=per_hour, per_day=per_day, clock=clock)
