"""The plain-text part of an alert email.

Readable in any client and in a terminal: the summary, the notices marked
``!!``, one block per problem, the tracebacks, and a footer after the ``-- ``
signature separator. Every line taken from a log is indented, so no log line
can pose as a line of the email's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._util.humanize import format_time
from .safe_text import clip_head, plural
from .view import context_lines, count_detail, fields

if TYPE_CHECKING:
    from ...models import Problem
    from .view import Caps, View

__all__ = ["text_part"]


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
    if view.shown:
        out += ["PROBLEMS", ""]
    for number, problem in enumerate(view.shown, 1):
        out += _text_row(number, problem, view.caps)
    if view.hidden_problems:
        out += [view.more_line(), ""]
    if view.reduced:
        out += [view.reduced_line(), ""]
    tracebacks = view.tracebacks()
    if tracebacks:
        out += ["TRACEBACKS", ""]
    for number, problem, traceback in tracebacks:
        _, title, _, location = fields(problem)
        where = f" ({location})" if location else ""
        out += [f"{number}. {title}{where}", _indent(traceback, "    "), ""]
    out += ["-- ", view.footer(), ""]
    return "\n".join(out)


def _text_row(number: int, problem: Problem, caps: Caps) -> list[str]:
    level, title, logger, location = fields(problem)
    new = "  [new]" if problem.is_new else ""
    detail = count_detail(problem)
    events = plural(problem.count, "event") + (f" ({detail})" if detail else "")
    lines = [
        f"{number}. [{level}] {title}{new}",
        f"   events      {events}",
        f"   first seen  {format_time(problem.first_seen)}",
        f"   last seen   {format_time(problem.last_seen)}",
        f"   logger      {logger}",
    ]
    if location:
        lines.append(f"   location    {location}")
    lines.append(f"   id          {problem.id}")
    for index, (key, value) in enumerate(context_lines(problem, caps)):
        label = "context" if index == 0 else ""
        lines.append(f"   {label:<12}{key}: {value}")
    if caps.sample_chars:
        sample = clip_head(problem.alert.message, caps.sample_chars)
        lines.append(_indent(sample, "               | ", first="   message     | "))
    lines.append("")
    return lines
