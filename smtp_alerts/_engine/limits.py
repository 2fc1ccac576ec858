"""Email quotas: how many digests may go out per hour and per day, without I/O.

:class:`EmailQuota` keeps the send times of the last day in sliding windows.
The engine asks it before each send (:meth:`EmailQuota.try_acquire`); a refused
send leaves the digest's counts pending, so they continue into the next digest.
The send that takes the last slot of a window carries a notice saying so (at
most once per window length, so a quota kept full by a steady flood repeats
it hourly, not in every email), and the first send after refusals says since
when alerts were held back.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smtp_alerts._util.clock import Clock

__all__ = ["DAY", "HOUR", "EmailQuota", "Grant", "quota_notice"]

HOUR = 3600.0
"""The short window, in seconds."""

DAY = 86400.0
"""The long window, in seconds."""


@dataclass(frozen=True, slots=True)
class Grant:
    """Permission for one send, with what the digest should tell its reader.

    Attributes:
        at: when the send was granted, epoch seconds.
        last: this send took the last free slot of the hour or the day window,
            and no grant in the window's length before it was flagged for that
            window: the digest should carry :meth:`EmailQuota.notice`.
        reopens_at: when the next send is allowed, if ``last``.
        window: the window that keeps sends closed longest, ``hour`` or
            ``day``, if ``last``.
        delayed_since: when the quota first refused a send since the previous
            grant, if it did.
    """

    at: float
    last: bool = False
    reopens_at: float | None = None
    window: str | None = None
    delayed_since: float | None = None


def _clock_time(at: float, *, reference: float, round_up: bool) -> str:
    """``12:34 UTC``, with the date when it is not the reference's day."""
    # Rounding outwards keeps the text true: "sent from 12:35" is never
    # before the slot opens, "delayed since 11:02" never after the first refusal.
    minute = math.ceil(at / 60) if round_up else math.floor(at / 60)
    moment = datetime.fromtimestamp(minute * 60, tz=timezone.utc)
    day = datetime.fromtimestamp(reference, tz=timezone.utc).date()
    if moment.date() == day:
        return moment.strftime("%H:%M UTC")
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def quota_notice(cap: int, window: str, reopens_at: float, at: float) -> str:
    """The line saying a quota (``cap`` per ``window``) is reached and when sending resumes."""
    when = _clock_time(reopens_at, reference=at, round_up=True)
    return (
        f"Email quota reached ({cap} per {window}). "
        f"Further alerts are collected and sent from {when}."
    )


def _stale(flagged_at: float | None, now: float, window: float) -> bool:
    """Whether a window's last "quota reached" notice has left the window."""
    return flagged_at is None or flagged_at <= now - window


class EmailQuota:
    """Caps sends per hour and per day over sliding windows.

    Memory is bounded: at most ``per_day`` send times are kept.

    Args:
        per_hour: sends allowed in any 3600 seconds.
        per_day: sends allowed in any 86400 seconds.
        clock: returns the current time in epoch seconds.

    Raises:
        ValueError: a cap below 1.
    """

    __slots__ = (
        "_clock",
        "_day_flagged_at",
        "_hour_count",
        "_hour_flagged_at",
        "_per_day",
        "_per_hour",
        "_refused_since",
        "_sends",
    )

    def __init__(self, *, per_hour: int, per_day: int, clock: Clock) -> None:
        if per_hour < 1:
            raise ValueError(f"per_hour must be >= 1, got {per_hour!r}")
        if per_day < 1:
            raise ValueError(f"per_day must be >= 1, got {per_day!r}")
        self._per_hour = per_hour
        self._per_day = per_day
        self._clock = clock
        # Send times of the last day, oldest first; the last hour's are its
        # newest ``_hour_count``, so one deque serves both windows.
        self._sends: deque[float] = deque()
        self._hour_count = 0
        self._refused_since: float | None = None
        # When a grant last said "quota reached" for each window.
        self._hour_flagged_at: float | None = None
        self._day_flagged_at: float | None = None

    def __repr__(self) -> str:
        self._slide(self._clock())
        return (
            f"EmailQuota(per_hour={self._per_hour}, per_day={self._per_day}, "
            f"used_hour={self._hour_count}, used_day={len(self._sends)})"
        )

    @property
    def per_hour(self) -> int:
        """Sends allowed per hour."""
        return self._per_hour

    @property
    def per_day(self) -> int:
        """Sends allowed per day."""
        return self._per_day

    @property
    def used_hour(self) -> int:
        """Sends in the last hour."""
        self._slide(self._clock())
        return self._hour_count

    @property
    def used_day(self) -> int:
        """Sends in the last day."""
        self._slide(self._clock())
        return len(self._sends)

    @property
    def held_back_since(self) -> float | None:
        """When a send was first refused since the last grant, or None."""
        return self._refused_since

    def try_acquire(self) -> Grant | None:
        """Record a send now if both windows allow it.

        Returns:
            The grant, or None when the hour or the day is full; the first
            refusal is remembered and reported by the next grant's
            ``delayed_since``.
        """
        now = self._clock()
        self._slide(now)
        if self._hour_count >= self._per_hour or len(self._sends) >= self._per_day:
            if self._refused_since is None:
                self._refused_since = now
            return None
        # A clock stepped backwards must not unsort the deque the windows rely on.
        self._sends.append(max(now, self._sends[-1]) if self._sends else now)
        self._hour_count += 1
        delayed_since, self._refused_since = self._refused_since, None
        hour_reopens = self._hour_reopens_at()
        day_reopens = self._day_reopens_at()
        flag_hour = hour_reopens is not None and _stale(self._hour_flagged_at, now, HOUR)
        flag_day = day_reopens is not None and _stale(self._day_flagged_at, now, DAY)
        if not (flag_hour or flag_day):
            return Grant(at=now, delayed_since=delayed_since)
        if hour_reopens is not None:
            self._hour_flagged_at = now
        if day_reopens is not None:
            self._day_flagged_at = now
        if day_reopens is not None and (hour_reopens is None or day_reopens >= hour_reopens):
            reopens_at, window = day_reopens, "day"
        else:
            assert hour_reopens is not None  # noqa: S101 - one of the two is full here
            reopens_at, window = hour_reopens, "hour"
        return Grant(
            at=now, last=True, reopens_at=reopens_at, window=window, delayed_since=delayed_since
        )

    def available_at(self) -> float:
        """When the next send is allowed: now if it is allowed now."""
        now = self._clock()
        self._slide(now)
        reopens = [at for at in (self._hour_reopens_at(), self._day_reopens_at()) if at is not None]
        return max([now, *reopens])

    def notice(self, grant: Grant) -> str:
        """The line telling the reader the quota is reached and when sending resumes.

        Args:
            grant: a grant with ``last`` set.

        Returns:
            e.g. ``Email quota reached (20 per hour). Further alerts are
            collected and sent from 12:34 UTC.``

        Raises:
            ValueError: the grant did not take the last slot.
        """
        if not grant.last or grant.reopens_at is None:
            raise ValueError("notice() needs a grant that took the last slot (grant.last)")
        cap = self._per_day if grant.window == "day" else self._per_hour
        return quota_notice(cap, grant.window or "hour", grant.reopens_at, grant.at)

    def delayed_notice(self, grant: Grant) -> str:
        """The line telling the reader since when the quota held alerts back.

        Args:
            grant: a grant with ``delayed_since`` set.

        Returns:
            e.g. ``Delayed by the email quota (20 per hour, 100 per day) since 11:02 UTC.``

        Raises:
            ValueError: the grant was not delayed.
        """
        if grant.delayed_since is None:
            raise ValueError("delayed_notice() needs a delayed grant (grant.delayed_since)")
        when = _clock_time(grant.delayed_since, reference=grant.at, round_up=False)
        return (
            f"Delayed by the email quota ({self._per_hour} per hour, "
            f"{self._per_day} per day) since {when}."
        )

    def _slide(self, now: float) -> None:
        sends = self._sends
        while sends and sends[0] <= now - DAY:
            sends.popleft()
        self._hour_count = min(self._hour_count, len(sends))
        while self._hour_count and sends[len(sends) - self._hour_count] <= now - HOUR:
            self._hour_count -= 1

    def _hour_reopens_at(self) -> float | None:
        """When the hour window frees a slot, if it is full."""
        if self._hour_count < self._per_hour:
            return None
        return self._sends[len(self._sends) - self._hour_count] + HOUR

    def _day_reopens_at(self) -> float | None:
        """When the day window frees a slot, if it is full."""
        if len(self._sends) < self._per_day:
            return None
        return self._sends[0] + DAY
