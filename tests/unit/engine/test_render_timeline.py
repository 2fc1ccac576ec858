"""Tests for the timeline strip of each problem, in both parts, from digests built by hand."""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser

from smtp_alerts._engine.render import RenderContext, render
from smtp_alerts.models import Digest, Problem
from tests.unit.engine.test_render import CONTEXT, NOW, html_of, make_digest, make_problem, text_of

START = NOW - 30 * 60 + 1  # 30 one-minute intervals; the last one holds NOW


class _StripParser(HTMLParser):
    """The bar heights (px) of every strip: cells of a table with role="img"."""

    def __init__(self) -> None:
        super().__init__()
        self.strips: list[list[int]] = []
        self._in_strip = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "table" and found.get("role") == "img":
            self.strips.append([])
            self._in_strip = True
        elif tag == "div" and self._in_strip:
            style = found.get("style") or ""
            match = re.search(r"height:(\d+)px", style)
            assert match is not None
            empty = "#d0d7de" in style  # the hairline of an empty interval
            self.strips[-1].append(0 if empty else int(match.group(1)))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_strip = False


def with_timeline(*timelines: tuple[int, ...], step: float = 60, start: float = START) -> Digest:
    problems = tuple(
        replace(make_problem(n, count=max(1, sum(t))), timeline=t) for n, t in enumerate(timelines)
    )
    return make_digest(*problems, timeline_start=start, timeline_step=step)


def strips_of(digest: Digest, context: RenderContext = CONTEXT) -> list[list[int]]:
    parser = _StripParser()
    parser.feed(html_of(render(digest, context)))
    return parser.strips


class TestHtmlStrip:
    def test_bars_are_proportional_to_the_rows_own_peak(self) -> None:
        """Each row is scaled to its own highest bar (24 px); empty intervals stay empty."""
        digest = with_timeline((0, 3, 6, 12, 0, 24), (0, 0, 1, 2, 0, 0))
        assert strips_of(digest) == [[0, 3, 6, 12, 0, 24], [0, 0, 12, 24, 0, 0]]

    def test_a_small_count_beside_a_large_one_is_still_visible(self) -> None:
        """One occurrence beside 10,000 gets a bar of at least 2 px, not none."""
        assert strips_of(with_timeline((1, 10_000))) == [[2, 24]]

    def test_strips_line_up_and_shorter_timelines_end_empty(self) -> None:
        """Every strip spans the digest's longest timeline, so the bars line up row to row."""
        digest = with_timeline((5, 5, 5, 5), (5,), ())
        assert strips_of(digest) == [[24, 24, 24, 24], [24, 0, 0, 0]]

    def test_long_timelines_are_drawn_with_wider_bars(self) -> None:
        """240 one-minute intervals become 60 bars of 4 minutes, counts added up."""
        digest = with_timeline((1,) * 240, start=NOW - 240 * 60 + 1)
        (strip,) = strips_of(digest)
        assert len(strip) == 60
        assert "1 bar = 4 min, peak 4" in html_of(render(digest, CONTEXT))

    def test_legend_says_start_end_and_interval(self) -> None:
        """The legend gives the first bar's time, "now" for the last, one bar's length, the peak."""
        page = html_of(render(with_timeline((0,) * 29 + (7,), step=300, start=NOW - 9000), CONTEXT))
        assert "Timeline: 1 bar = 5 min, peak 7" in page
        assert ">08:36 UTC</td>" in page
        assert ">now</td>" in page

    def test_a_timeline_that_ended_earlier_says_when(self) -> None:
        """A timeline that stops before the digest was formed ends with a time, not "now"."""
        page = html_of(render(with_timeline((1, 2), step=60, start=NOW - 3600), CONTEXT))
        assert ">10:08 UTC</td>" in page
        assert ">now</td>" not in page

    def test_no_timeline_no_strip(self) -> None:
        """A step of 0 (no timeline kept) or an empty timeline shows nothing at all."""
        assert strips_of(with_timeline((1, 2, 3), step=0)) == []
        assert strips_of(with_timeline(())) == []
        out = render(with_timeline((1, 2, 3), step=0), CONTEXT)
        assert "timeline" not in text_of(out)
        assert "Timeline" not in html_of(out)

    def test_an_incident_within_one_interval_shows_no_strip(self) -> None:
        """One bar shows no change over time: the row's count and time say it all."""
        assert strips_of(with_timeline((2_000,), (5,))) == []
        assert "Timeline" not in html_of(render(with_timeline((2_000,)), CONTEXT))
        assert strips_of(with_timeline((2_000,), (0, 5))) != []  # two intervals: a strip

    def test_bad_counts_and_times_degrade_safely(self) -> None:
        """Negative counts are empty bars; a non-finite start or step shows no strip."""
        assert strips_of(with_timeline((-5, 2))) == [[0, 24]]
        assert strips_of(with_timeline((1,), start=float("nan"))) == []
        assert strips_of(with_timeline((1,), step=float("inf"))) == []

    def test_strip_uses_no_script_image_or_external_resource(self) -> None:
        """Only table cells and divs: what Gmail, Outlook and Apple Mail all render."""
        page = html_of(render(with_timeline((1, 2, 3)), CONTEXT))
        for forbidden in ("<script", "<img", "<svg", "<canvas", "url(", "http"):
            assert forbidden not in page.split("</head>", 1)[1].replace(
                "sent by smtp-alerts", ""
            ), forbidden


class TestTextSparkline:
    def test_sparkline_with_a_space_for_zero(self) -> None:
        """One character per bar, eighths of the row's peak, a space where nothing happened."""
        text = text_of(render(with_timeline((0, 1, 2, 4, 8, 0, 3)), CONTEXT))
        assert "   timeline    | \u2581\u2582\u2584\u2588 \u2583|\n" in text

    def test_sparkline_legend(self) -> None:
        """Under the sparkline: from when to when, one bar's length, the peak."""
        text = text_of(render(with_timeline((0,) * 29 + (12,)), CONTEXT))
        assert "               10:36 UTC \u2192 now, 1 bar = 1 min, peak 12\n" in text

    def test_seconds_when_a_bar_is_shorter_than_a_minute(self) -> None:
        """Intervals under a minute say their seconds, and the times show seconds too."""
        text = text_of(render(with_timeline((1, 2), step=15, start=NOW - 29), CONTEXT))
        assert "11:06:11 UTC \u2192 now, 1 bar = 15 s, peak 2" in text


class TestSize:
    def test_fifty_rows_of_sixty_bars_fit(self) -> None:
        """The loosest caps keep 50 strips of 60 bars far under the default 1 MB."""
        digest = with_timeline(*(tuple(range(60)) for _ in range(60)))
        out = render(digest, CONTEXT)
        assert len(out.email.as_bytes()) < 500_000
        assert len(strips_of(digest)) == 50

    def test_smallest_limit_still_fits_with_timelines(self) -> None:
        """Under the smallest max_bytes, strips give way like the other details."""
        context = RenderContext(
            sender="alerts@example.com",
            recipients=("ops@example.com",),
            hostname="h",
            max_bytes=65_536,
        )
        problems: tuple[Problem, ...] = tuple(
            replace(make_problem(n, message="m" * 3000), timeline=tuple(range(1, 61)))
            for n in range(200)
        )
        digest = make_digest(*problems, timeline_start=START, timeline_step=60)
        assert len(render(digest, context).email.as_bytes()) <= 65_536
