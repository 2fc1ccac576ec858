"""The HTML part of an alert email.

What most readers see: the notices in a yellow box, then one card per
problem (level and count, the title with its variable parts marked, when it
was seen, its timeline, samples, context), then the details (tracebacks,
command output, check results) in preformatted blocks. Every piece of log
text goes through :func:`html.escape`.

It reads as well on a 360-pixel phone (Gmail's app) as at 1200 pixels: one
column of cards inside a container of limited width, built from single-column
tables (which every client lays out the same), and long unbroken tokens wrap.
Styles are inline because Gmail drops ``<style>`` blocks in several of its
clients.
"""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING

from .row import count_detail
from .safe_text import plural
from .timeline import strip_html

if TYPE_CHECKING:
    from .row import Row
    from .view import View

__all__ = ["html_part"]


def _h(value: str) -> str:
    """Escape text for HTML content and attribute values."""
    return html.escape(value, quote=True)


# Inline styles only: Gmail removes <style> blocks in several of its clients.
_FONT = "font-family:-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif"
_MONO = "font-family:SFMono-Regular,Menlo,Consolas,'Liberation Mono',monospace"
# Long unbroken tokens (URLs, ids, paths) wrap anywhere rather than widen the page:
# a table cell grows to its longest word unless the word may break.
_BREAK = "word-break:break-word;overflow-wrap:anywhere"
_WRAP = f"white-space:pre-wrap;{_BREAK}"
_TABLE = 'role="presentation" cellpadding="0" cellspacing="0" border="0" width="100%"'
_NOTICE = (
    "margin:0 0 12px;padding:10px 12px;background-color:#fff8c5;border:1px solid #d4a72c;"
    "border-left:4px solid #bf8700;font-weight:600"
)
_MUTED = "font-size:12px;color:#656d76"
_BADGE = "display:inline-block;padding:1px 6px;border-radius:3px;font-size:11px;font-weight:600"
_MARK = (
    "display:inline-block;padding:0 5px;margin:0 1px;border:1px solid #54aeff;border-radius:3px;"
    f"background-color:#ddf4ff;color:#0550ae;font-weight:600;{_MONO};font-size:0.85em;"
    "line-height:1.3"
)
_PRE = (
    f"margin:0;padding:8px 10px;{_MONO};font-size:12px;line-height:1.4;{_WRAP};"
    "background-color:#ffffff;border:1px solid #d0d7de;border-radius:4px;color:#1f2328"
)

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
        # A full-width table centres a container of limited width: max-width
        # alone is ignored by Outlook's engine, and the table keeps the page in one column.
        f'<table {_TABLE} style="width:100%;background-color:#f6f8fa"><tr>',
        '<td align="center" style="padding:12px 8px">',
        f'<table {_TABLE} style="width:100%;max-width:760px"><tr>',
        (
            f'<td style="text-align:left;{_FONT};font-size:14px;line-height:1.45;color:#1f2328;'
            f'{_BREAK}">'
        ),
        f'<h1 style="margin:0 0 12px;font-size:18px;font-weight:600">{_h(view.summary)}</h1>',
    ]
    out += [f'<div style="{_NOTICE}">&#9888; {_h(notice)}</div>' for notice in view.notices]
    if view.digest.dropped > 0:
        out.append(f'<div style="{_NOTICE}">&#9888; {_h(view.dropped_line())}</div>')
    for row in view.rows:
        out += _card(row, view)
    if view.hidden_problems:
        out.append(f'<p style="margin:8px 0;{_MUTED}">{_h(view.more_line())}</p>')
    if view.reduced:
        out.append(f'<p style="margin:8px 0;{_MUTED}">{_h(view.reduced_line())}</p>')
    out += _details(view)
    out += [
        (
            f'<p style="margin:24px 0 0;padding-top:8px;border-top:1px solid #d0d7de;{_MUTED}">'
            f"{_h(view.footer())}</p>"
        ),
        "</td></tr></table>",
        "</td></tr></table>",
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(out)


def _details(view: View) -> list[str]:
    """The Details section: each row's traceback, output or result, labelled as such."""
    rows = view.details()
    out: list[str] = []
    if rows:
        out.append('<h2 style="margin:24px 0 8px;font-size:16px;font-weight:600">Details</h2>')
    for row in rows:
        out += [
            '<div style="margin:0 0 16px">',
            (
                f'<div style="margin:0 0 4px"><span style="{_MUTED};font-weight:600">'
                f"{_h(row.detail_label)}</span><br>"
                f'<span style="font-weight:600">{row.number}. {_title(row)}</span> '
                f'<span style="{_MUTED}">{_h(row.location)}</span></div>'
            ),
            f'<pre style="{_PRE}">{_h(row.detail)}</pre>',
            "</div>",
        ]
    return out


def _card(row: Row, view: View) -> list[str]:
    """One problem's card: a single-column table with a border in its level's colour."""
    colour, _ = _level_colours(row.problem.alert.level)
    out = [
        (
            f'<table {_TABLE} style="width:100%;margin:0 0 12px;border-collapse:separate;'
            f"background-color:#ffffff;border:1px solid #d0d7de;border-left:4px solid {colour};"
            'border-radius:4px"><tr><td style="padding:10px 12px">'
        ),
        *_card_head(row, view),
        (
            f'<div style="margin:6px 0 2px;font-size:15px;font-weight:600;line-height:1.35">'
            f"{row.number}. {_title(row)}</div>"
        ),
        f'<div style="{_MUTED}">{_h(_seen(row))}</div>',
    ]
    if row.strip is not None:
        out += strip_html(row.strip, colour)
    out += _samples(row)
    if row.context:
        shown = "<br>".join(f"<b>{_h(key)}</b>: {_h(value)}" for key, value in row.context)
        out.append(f'<div style="margin:6px 0 0;font-size:12px;{_WRAP}">{shown}</div>')
    where = " \u00b7 ".join(
        part for part in (row.logger, row.location, f"id {row.problem.id}") if part
    )
    out += [f'<div style="margin:6px 0 0;{_MUTED}">{_h(where)}</div>', "</td></tr></table>"]
    return out


def _card_head(row: Row, view: View) -> list[str]:
    """The level badge, NEW, the count and the incident's total, and a bar of the count."""
    problem = row.problem
    background, foreground = _level_colours(problem.alert.level)
    new = (
        f' <span style="{_BADGE};background-color:#0969da;color:#ffffff">NEW</span>'
        if problem.is_new
        else ""
    )
    detail = count_detail(problem)
    total = f' <span style="{_MUTED}">\u00b7 {_h(detail)}</span>' if detail else ""
    percent = _bar_percent(problem.count, view.max_count)
    return [
        (
            f'<div><span style="{_BADGE};background-color:{background};color:{foreground}">'
            f"{_h(row.level)}</span>{new} "
            f'<span style="font-size:15px;font-weight:600">{problem.count:,}</span> '
            f"{'event' if problem.count == 1 else 'events'}{total}</div>"
        ),
        (
            '<div style="margin-top:4px;height:4px;background-color:#eaeef2;border-radius:2px">'
            f'<div role="img" aria-label="{_h(plural(problem.count, "event"))}" '
            f'style="height:4px;width:{percent}%;background-color:{background};border-radius:2px">'
            "</div></div>"
        ),
    ]


def _title(row: Row) -> str:
    """The title, its variable parts marked (a template's placeholders keep their names)."""
    return "".join(
        (
            f'<span title="varies" style="{_MARK}">{_h(text) if text else "&hellip;"}</span>'
            if variable
            else _h(text)
        )
        for text, variable in row.segments
    )


def _seen(row: Row) -> str:
    return " \u00b7 ".join(f"{label} {when}" for label, when in row.seen)


def _samples(row: Row) -> list[str]:
    """The sample messages, unless the only one says what the title already says."""
    if row.repeats_title:
        return []
    out = []
    for label, sample in row.samples:
        head = "" if label == "message" else f'<div style="{_MUTED}">{_h(label)}</div>'
        out.append(
            f'<div style="margin:6px 0 0">{head}<div style="{_MONO};font-size:12px;{_WRAP};'
            f'padding:4px 6px;background-color:#f6f8fa;border-radius:3px">{_h(sample)}</div></div>'
        )
    return out
