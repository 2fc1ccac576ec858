"""The HTML part of an alert email.

What most readers see: a table of the problems with a level badge, counts and a
bar for each, the notices in a yellow box, the tracebacks in preformatted
blocks. Every piece of log text goes through :func:`html.escape`. Styles are
inline because Gmail drops ``<style>`` blocks in several of its clients, and the
page reads on a 400-pixel-wide phone screen.
"""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING

from ..._util.humanize import format_time
from .safe_text import clip_head, plural
from .view import context_lines, count_detail, fields

if TYPE_CHECKING:
    from ...models import Problem
    from .view import View

__all__ = ["html_part"]


def _h(value: str) -> str:
    """Escape text for HTML content and attribute values."""
    return html.escape(value, quote=True)


# Inline styles only: Gmail removes <style> blocks in several of its clients.
_FONT = "font-family:-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif"
_MONO = "font-family:SFMono-Regular,Menlo,Consolas,'Liberation Mono',monospace"
_WRAP = "white-space:pre-wrap;word-wrap:break-word;overflow-wrap:anywhere"
_TH = (
    "padding:6px 8px;text-align:left;font-size:12px;font-weight:600;color:#656d76;"
    "border-bottom:1px solid #d0d7de"
)
_TD = "padding:8px;vertical-align:top;border-bottom:1px solid #eaeef2"
_NOTICE = (
    "margin:0 0 12px;padding:10px 12px;background-color:#fff8c5;border:1px solid #d4a72c;"
    "border-left:4px solid #bf8700;font-weight:600"
)
_MUTED = "font-size:12px;color:#656d76"

# (badge and bar colour, badge text colour) by level, most severe first.
_LEVEL_COLOURS = (
    (logging.CRITICAL, "#8b0000", "#ffffff"),  # dark red
    (logging.ERROR, "#d1242f", "#ffffff"),  # red
    (logging.WARNING, "#e3a008", "#1f2328"),  # amber: dark text for contrast
)
_OTHER_COLOURS = ("#6e7781", "#ffffff")


def _level_colours(level: int) -> tuple[str, str]:
    for threshold, background, foreground in _LEVEL_COLOURS:
        if level >= threshold:
            return background, foreground
    return _OTHER_COLOURS


def _bar_percent(count: int, max_count: int) -> float:
    """A bar's width: the problem's share of the largest count, visible when non-zero."""
    if max_count <= 0 or count <= 0:
        return 0.0
    return max(1.0, round(100.0 * count / max_count, 1))


def html_part(view: View, subject: str) -> str:
    """The HTML body of the email that ``view`` describes, titled ``subject``."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_h(subject)}</title>",
        "</head>",
        '<body style="margin:0;padding:0;background-color:#f6f8fa">',
        (
            f'<div style="max-width:960px;margin:0 auto;padding:16px;{_FONT};font-size:14px;'
            'line-height:1.45;color:#1f2328">'
        ),
        f'<h1 style="margin:0 0 12px;font-size:18px;font-weight:600">{_h(view.summary)}</h1>',
    ]
    out += [f'<div style="{_NOTICE}">&#9888; {_h(notice)}</div>' for notice in view.notices]
    if view.digest.dropped > 0:
        out.append(f'<div style="{_NOTICE}">&#9888; {_h(view.dropped_line())}</div>')
    if view.shown:
        out += _html_table(view)
    if view.hidden_problems:
        out.append(f'<p style="margin:8px 0;{_MUTED}">{_h(view.more_line())}</p>')
    if view.reduced:
        out.append(f'<p style="margin:8px 0;{_MUTED}">{_h(view.reduced_line())}</p>')
    out += _html_tracebacks(view)
    out += [
        (
            f'<p style="margin:24px 0 0;padding-top:8px;border-top:1px solid #d0d7de;{_MUTED}">'
            f"{_h(view.footer())}</p>"
        ),
        "</div>",
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(out)


def _html_tracebacks(view: View) -> list[str]:
    tracebacks = view.tracebacks()
    out: list[str] = []
    if tracebacks:
        out.append('<h2 style="margin:24px 0 8px;font-size:16px;font-weight:600">Tracebacks</h2>')
    for number, problem, traceback in tracebacks:
        _, title, _, location = fields(problem)
        out += [
            '<div style="margin:0 0 16px">',
            (
                f'<div style="margin:0 0 4px;font-weight:600">{number}. {_h(title)} '
                f'<span style="{_MUTED};font-weight:400">{_h(location)}</span></div>'
            ),
            (
                f'<pre style="margin:0;padding:8px 10px;{_MONO};font-size:12px;line-height:1.4;'
                f"{_WRAP};background-color:#ffffff;border:1px solid #d0d7de;border-radius:4px;"
                f'color:#1f2328">{_h(traceback)}</pre>'
            ),
            "</div>",
        ]
    return out


def _html_table(view: View) -> list[str]:
    out = [
        (
            '<table cellpadding="0" cellspacing="0" border="0" style="width:100%;'
            'border-collapse:collapse;background-color:#ffffff;border:1px solid #d0d7de">'
        ),
        '<tr style="background-color:#f6f8fa">',
        f'<th style="{_TH}">Level</th>',
        f'<th style="{_TH}">Events</th>',
        f'<th style="{_TH}">Problem</th>',
        f'<th style="{_TH}">Seen</th>',
        "</tr>",
    ]
    for number, problem in enumerate(view.shown, 1):
        out += _html_row(number, problem, view)
    out.append("</table>")
    return out


def _html_row(number: int, problem: Problem, view: View) -> list[str]:
    level, _, _, _ = fields(problem)
    background, foreground = _level_colours(problem.alert.level)
    return [
        "<tr>",
        (
            f'<td style="{_TD};white-space:nowrap">'
            '<span style="display:inline-block;padding:1px 6px;'
            f"border-radius:3px;background-color:{background};color:{foreground};font-size:11px;"
            f'font-weight:600">{_h(level)}</span></td>'
        ),
        *_html_counts(problem, view, background),
        *_html_problem(number, problem, view),
        (
            f'<td style="{_TD};font-size:12px;white-space:nowrap">'
            f"first {_h(format_time(problem.first_seen))}<br>"
            f"last {_h(format_time(problem.last_seen))}</td>"
        ),
        "</tr>",
    ]


def _html_counts(problem: Problem, view: View, colour: str) -> list[str]:
    """The Events cell: the count, the incident's total, a bar in the level's colour."""
    detail = count_detail(problem)
    percent = _bar_percent(problem.count, view.max_count)
    out = [
        f'<td style="{_TD};width:110px">',
        f'<div style="font-size:15px;font-weight:600">{problem.count:,}</div>',
    ]
    if detail:
        out.append(f'<div style="{_MUTED}">{_h(detail)}</div>')
    out += [
        (
            '<div style="margin-top:4px;height:6px;background-color:#eaeef2;border-radius:3px">'
            f'<div role="img" aria-label="{_h(plural(problem.count, "event"))}" '
            f'style="height:6px;width:{percent}%;background-color:{colour};border-radius:3px">'
            "</div></div>"
        ),
        "</td>",
    ]
    return out


def _html_problem(number: int, problem: Problem, view: View) -> list[str]:
    """The Problem cell: the title, the sample message, where it came from."""
    _, title, logger, location = fields(problem)
    new = (
        ' <span style="display:inline-block;padding:0 5px;border-radius:3px;'
        'background-color:#0969da;color:#ffffff;font-size:11px;font-weight:600">NEW</span>'
        if problem.is_new
        else ""
    )
    where = " \u00b7 ".join(part for part in (logger, location, f"id {problem.id}") if part)
    out = [
        f'<td style="{_TD}">',
        f'<div style="font-weight:600">{number}. {_h(title)}{new}</div>',
    ]
    if view.caps.sample_chars:
        sample = clip_head(problem.alert.message, view.caps.sample_chars)
        out.append(f'<div style="margin:4px 0;{_MONO};font-size:12px;{_WRAP}">{_h(sample)}</div>')
    context = context_lines(problem, view.caps)
    if context:
        shown = "<br>".join(f"<b>{_h(key)}</b>: {_h(value)}" for key, value in context)
        out.append(f'<div style="margin:4px 0;font-size:12px;{_WRAP}">{shown}</div>')
    out += [f'<div style="{_MUTED}">{_h(where)}</div>', "</td>"]
    return out
