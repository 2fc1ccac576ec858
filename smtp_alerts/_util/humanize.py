"""Times and durations as people read them in an alert."""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["format_duration", "format_time"]


def format_duration(seconds: float) -> str:
    """A short human duration: ``12 ms``, ``2.5 s``, ``42 s``, ``5m 3s``, ``2h 5m``, ``3d 4h``.

    Args:
        seconds: a number of seconds; a negative one counts as zero.

    Returns:
        Whole milliseconds below a second, seconds with up to two decimals
        below a minute, else the two largest units.
    """
    seconds = max(0.0, seconds)
    milliseconds = round(seconds * 1000)
    if milliseconds < 1000:  # 0.9996 s is "1 s", not "1000 ms"
        return f"{milliseconds} ms"
    text = f"{seconds:.2f}"
    if float(text) < 60:  # 59.996 s is "1m", not "60 s"
        return text.rstrip("0").rstrip(".") + " s"
    total = round(seconds)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    first = next(i for i, (value, _) in enumerate(parts) if value)
    return " ".join(f"{value}{unit}" for value, unit in parts[first : first + 2] if value)


def format_time(when: float) -> str:
    """An epoch time as ``2026-11-21 14:05:09 UTC``: always the full date, never ambiguous.

    Returns:
        The time in UTC, or ``unknown time`` for one out of the platform's range.
    """
    try:
        moment = datetime.fromtimestamp(when, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return "unknown time"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
