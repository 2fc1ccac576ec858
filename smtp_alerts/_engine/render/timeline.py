"""A problem's timeline: its occurrences per interval of the incident, as bars.

The store counts each problem's occurrences per interval
(:attr:`Problem.timeline <smtp_alerts.models.Problem.timeline>`, from
:attr:`Digest.timeline_start <smtp_alerts.models.Digest.timeline_start>` on, one
interval every :attr:`Digest.timeline_step <smtp_alerts.models.Digest.timeline_step>`
seconds). A reader sees at a glance from the bars whether a problem is still
happening, when it started and whether it grows. Every strip of a digest
spans the same intervals, so the strips line up from row to row; each is
scaled to its own highest bar, which the legend gives. The HTML part draws
the bars as table cells (no image, no script: Gmail, Outlook and Apple Mail
all show them), the plain-text part as a one-line sparkline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ..._util.humanize import format_duration

if TYPE_CHECKING:
    from ...models import Digest, Problem

__all__ = ["MAX_BARS", "Strip", "make_strip", "sparkline", "strip_html", "timeline_length"]

MAX_BARS = 60
"""Most bars in a strip: longer timelines are drawn with wider intervals."""

STRIP_HEIGHT_PX = 24
"""Height of the HTML strip, that of its highest bar."""

_SPARKS = " \u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"  # a space for zero, then 1/8 to 8/8
_EMPTY_COLOUR = "#d0d7de"  # a hairline where nothing happened: empty, but visibly a bar's place


@dataclass(frozen=True)
class Strip:
    """One problem's timeline, ready to draw.

    Attributes:
        counts: occurrences per bar, oldest first (at most :data:`MAX_BARS`).
        start: when the first bar starts, epoch seconds.
        step: the seconds one bar covers.
        peak: the highest count, that of the tallest bar.
        start_label: when the first bar starts, as the legend says it.
        end_label: ``now`` when the last bar holds the digest's time, else when it ends.
        scale: ``1 bar = 5 min, peak 2,000``.
    """

    counts: tuple[int, ...]
    start: float
    step: float
    peak: int
    start_label: str
    end_label: str
    scale: str


def timeline_length(digest: Digest) -> int:
    """The digest's longest timeline: every strip is drawn this long, so they line up."""
    return max((len(problem.timeline) for problem in digest.problems), default=0)


def make_strip(problem: Problem, digest: Digest, length: int) -> Strip | None:
    """The strip of ``problem``, ``length`` intervals long (:func:`timeline_length`).

    Returns:
        None when the digest has no timeline or the problem none, or when the
        incident so far fits in one interval: one bar shows no change over
        time, and the row's count and time say all it would.
    """
    step = digest.timeline_step
    if not (step > 0 and math.isfinite(step) and math.isfinite(digest.timeline_start)):
        return None
    if not problem.timeline or max(length, len(problem.timeline)) < 2:
        return None
    length = max(length, len(problem.timeline))
    counts = [max(0, int(count)) for count in problem.timeline]
    counts += [0] * (length - len(counts))
    # Too many intervals for a phone's width: a bar takes several of them.
    per_bar = math.ceil(length / MAX_BARS)
    bars = tuple(sum(counts[i : i + per_bar]) for i in range(0, length, per_bar))
    step *= per_bar
    start = digest.timeline_start
    end = start + len(bars) * step
    peak = max(bars)
    with_seconds = step < 60
    return Strip(
        counts=bars,
        start=start,
        step=step,
        peak=peak,
        start_label=_clock(start, digest.created, with_seconds=with_seconds),
        end_label=(
            "now"
            if end - step <= digest.created <= end
            else _clock(end, digest.created, with_seconds=with_seconds)
        ),
        scale=f"1 bar = {_interval(step)}, peak {peak:,}",
    )


def _clock(when: float, created: float, *, with_seconds: bool) -> str:
    """``15:50 UTC``, with the date when it is not the digest's day."""
    try:
        moment = datetime.fromtimestamp(when, timezone.utc)
        today = datetime.fromtimestamp(created, timezone.utc).date()
    except (OverflowError, OSError, ValueError):
        return "unknown time"
    clock = moment.strftime("%H:%M:%S" if with_seconds else "%H:%M")
    if moment.date() != today:
        clock = f"{moment.strftime('%Y-%m-%d')} {clock}"
    return f"{clock} UTC"


def _interval(seconds: float) -> str:
    """``30 s``, ``5 min``, ``1h 30m``: one bar's length as the legend says it."""
    if seconds >= 60 and seconds < 3600 and seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return format_duration(seconds)


def sparkline(strip: Strip) -> str:
    """The strip as one line of ``▁▂▃▄▅▆▇█``, a space for an empty bar."""
    top = len(_SPARKS) - 1
    return "".join(
        _SPARKS[0 if count <= 0 else max(1, math.ceil(count * top / strip.peak))]
        for count in strip.counts
    )


def strip_html(strip: Strip, colour: str) -> list[str]:
    """The strip as a row of table cells, each a bar as high as its count, then its legend."""
    # Short cells: a digest may hold 50 strips of 60 bars. The table's cell
    # spacing keeps the bars apart, valign (an attribute every client reads) sets them on the base.
    cells = [
        f'<td valign="bottom" title="{_clock_of(strip, index)}: {count:,}">'
        f"{_bar(count, strip.peak, colour)}</td>"
        for index, count in enumerate(strip.counts)
    ]
    muted = "font-size:11px;line-height:1.3;color:#656d76"
    return [
        f'<div style="margin:8px 0 2px;{muted}">Timeline: {strip.scale}</div>',
        (
            '<table role="img" aria-label="occurrences per interval" cellpadding="0" '
            'cellspacing="1" border="0" width="100%" style="width:100%;table-layout:fixed">'
            f'<tr style="height:{STRIP_HEIGHT_PX}px">'
        ),
        *cells,
        "</tr></table>",
        (
            '<table role="presentation" cellpadding="0" cellspacing="0" border="0" width="100%" '
            f'style="width:100%;{muted}"><tr><td>{strip.start_label}</td>'
            f'<td align="right" style="text-align:right">{strip.end_label}</td></tr></table>'
        ),
    ]


def _clock_of(strip: Strip, index: int) -> str:
    """A bar's start for its tooltip: ``10:36``, short, as there are many."""
    clock = _clock(strip.start + index * strip.step, strip.start, with_seconds=strip.step < 60)
    return clock.removesuffix(" UTC")


def _bar(count: int, peak: int, colour: str) -> str:
    if count <= 0:
        return f'<div style="height:1px;background-color:{_EMPTY_COLOUR};font-size:0"></div>'
    height = max(2, round(count * STRIP_HEIGHT_PX / peak))
    return f'<div style="height:{height}px;background-color:{colour};font-size:0"></div>'
