"""The plain-text part of an alert email.

Readable in any client and in a terminal: the summary, the notices marked
``!!``, one block per problem (its timeline as a sparkline), the details
(tracebacks, command output, check results), and a footer after the ``-- ``
signature separator. Every line taken from a log is indented, so no log line
can pose as a line of the email's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .row import count_detail
from .safe_text import plural
from .timeline import sparkline

if TYPE_CHECKING:
    from .row import Row
    from .view import View

__all__ = ["text_part"]

_LABEL_WIDTH = 12  # "   events      2,000": labels in a column, values after them


def _indent(text: str, prefix: str, first: str | None = None) -> str:
    """Indent every line, so no log line can pose as a line of the email's own."""
    lines = text.split("\n")
    head = prefix if first is None else first
    return "\n".join([head + lines[0], *(prefix + line for line in lines[1:])])


def text_part(view: View) -> str:
    """The plain-text body of the email that ``view`` describes."""
    out: list[str] = [view.summary, ""]
    attention = [f"!! {notice}" for notice in view.notices]
    if view.digest.dropped > 0:
        attention.append(f"!! {view.dropped_line()}")
    if attention:
        out += [*attention, ""]
    if view.rows:
        out += ["PROBLEMS", ""]
    for row in view.rows:
        out += _text_row(row)
    if view.hidden_problems:
        out += [view.more_line(), ""]
    if view.reduced:
        out += [view.reduced_line(), ""]
    details = view.details()
    if details:
        out += ["DETAILS", ""]
    for row in details:
        where = f" ({row.location})" if row.location else ""
        out += [
            f"{row.number}. {row.detail_label}: {row.title}{where}",
            _indent(row.detail, "    "),
            "",
        ]
    out += ["-- ", view.footer(), ""]
    return "\n".join(out)


def _field(label: str, value: str) -> str:
    return f"   {label:<{_LABEL_WIDTH}}{value}"


def _text_row(row: Row) -> list[str]:
    problem = row.problem
    new = "  [new]" if problem.is_new else ""
    detail = count_detail(problem)
    events = plural(problem.count, "event") + (f" ({detail})" if detail else "")
    lines = [f"{row.number}. [{row.level}] {row.title}{new}", _field("events", events)]
    lines += [_field(label, when) for label, when in row.seen]
    if row.strip is not None:
        strip = row.strip
        lines += [
            _field("timeline", f"|{sparkline(strip)}|"),
            _field("", f"{strip.start_label} \u2192 {strip.end_label}, {strip.scale}"),
        ]
    lines.append(_field("logger", row.logger))
    if row.location:
        lines.append(_field("location", row.location))
    lines.append(_field("id", problem.id))
    for index, (key, value) in enumerate(row.context):
        lines.append(_field("context" if index == 0 else "", f"{key}: {value}"))
    for label, sample in row.samples:
        lines.append(
            _indent(sample, f"   {'':<{_LABEL_WIDTH}}| ", first=f"   {label:<{_LABEL_WIDTH}}| ")
        )
    lines.append("")
    return lines
