"""A problem's timeline: its occurrences per interval of the incident, bounded.

A digest shows, beside each problem, how its occurrences spread over the
incident (is it still happening, when did it start, is it growing). The
aggregator and the stores keep, per problem, occurrences per interval in a
small ``{index: count}`` map, where ``index = floor(t / step)``: intervals are
aligned to the epoch, so every engine and every store cut time at the same
places, and their counts add up exactly.

The step grows with the incident along :data:`STEPS` (one minute up to one
day, then doubling), each step a multiple of the one before, so an interval
lies inside exactly one interval of any larger step: coarsening re-keys the
counts (``index * old // new``) and loses none. An incident's intervals, from
its earliest occurrence to the digest's time, always number at most
:data:`MAX_BUCKETS`, so a problem's map holds at most that many counts,
however long the incident lasts.
"""

from __future__ import annotations

import math

__all__ = [
    "MAX_BUCKETS",
    "STEPS",
    "Buckets",
    "add",
    "coarser",
    "dense",
    "fitting_step",
    "index_of",
    "rekey",
    "until",
    "widen",
]

STEPS: tuple[int, ...] = (60, 300, 900, 1800, 3600, 10800, 21600, 43200, 86400)
"""Interval lengths in seconds, finest first; past a day, each doubles the one before."""

MAX_BUCKETS = 60
"""Most intervals an incident's timeline spans (an hour of minutes, 60 days of days)."""

Buckets = dict[int, int]
"""Occurrences per interval index (``floor(t / step)``) at one step."""


def coarser(step: int) -> int:
    """The ladder's next step after ``step`` (a multiple of it)."""
    for candidate in STEPS:
        if candidate > step:
            return candidate
    return step * 2


def index_of(at: float, step: int) -> int:
    """The index of the interval of length ``step`` that holds the time ``at``.

    A time that is not a finite number (a record's odd ``created``) counts in
    interval 0 rather than failing: its count is kept.
    """
    return math.floor(at / step) if math.isfinite(at) else 0


def fitting_step(low: int, high: int, step: int, *, least: int = 0) -> int:
    """The least ladder step, ``step`` (or ``least``) or coarser, at which ``low..high`` fits.

    Args:
        low: the earliest interval index, at ``step``.
        high: the latest interval index, at ``step``.
        step: their step (a ladder value).
        least: a ladder step the result must not be finer than.

    Returns:
        A step at which those intervals number at most :data:`MAX_BUCKETS`.
    """
    new = max(step, least)
    while (high * step) // new - (low * step) // new >= MAX_BUCKETS:
        new = coarser(new)
    return new


def widen(
    frame: tuple[int, int | None, int], first: int, last: int, step: int
) -> tuple[int, int, int]:
    """An incident's intervals widened to hold ``first..last`` (at ``step``), coarser if needed.

    Args:
        frame: the incident's (step, low, high); low None when it has no counts yet.
        first: the earliest interval index to hold, at ``step``.
        last: the latest one, at ``step``.
        step: their step (a ladder value: the larger of two is a multiple of the other).

    Returns:
        (step, low, high) at a step no finer than either, spanning at most
        :data:`MAX_BUCKETS` intervals.
    """
    old, low, high = frame
    new = max(old, step)
    wide_low, wide_high = (first * step) // new, (last * step) // new
    if low is not None:
        wide_low = min(wide_low, (low * old) // new)
        wide_high = max(wide_high, (high * old) // new)
    fitted = fitting_step(wide_low, wide_high, new)
    return fitted, (wide_low * new) // fitted, (wide_high * new) // fitted


def until(frame: tuple[int, int | None, int], at: float) -> tuple[int, int, int]:
    """An incident's intervals carried on up to the time ``at`` (never back: a clock behind).

    Args:
        frame: the incident's (step, low, high); low None when it has no counts yet.
        at: the digest's time.

    Returns:
        (step, low, high), coarser if the intervals would be too many.
    """
    step, low, high = frame
    now = index_of(at, step)
    if low is None:
        return step, now, now
    return widen(frame, high, max(high, now), step)


def rekey(buckets: Buckets, old: int, new: int) -> Buckets:
    """``buckets`` at step ``old`` re-keyed at the coarser step ``new``: every count kept."""
    if new == old:
        return buckets
    out: Buckets = {}
    for index, count in buckets.items():
        key = (index * old) // new
        out[key] = out.get(key, 0) + count
    return out


def add(into: Buckets, buckets: Buckets) -> None:
    """Add ``buckets``' counts to ``into`` (both at the same step)."""
    for index, count in buckets.items():
        into[index] = into.get(index, 0) + count


def dense(buckets: Buckets | None, low: int, high: int) -> tuple[int, ...]:
    """The counts of intervals ``low`` to ``high`` in order, zeros included."""
    if not buckets:
        return (0,) * (high - low + 1)
    return tuple(buckets.get(index, 0) for index in range(low, high + 1))
