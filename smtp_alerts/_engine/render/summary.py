"""The short summary of a digest, for channels that carry a few lines of text.

Chat, push and webhook channels cannot show an email: they get
:attr:`~smtp_alerts.models.OutgoingMessage.summary`, the summary line, the
notices and one line per problem, bounded in lines and characters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .row import fields, title_segments
from .safe_text import ellipsize, plural
from .template import marked_text

if TYPE_CHECKING:
    from ...models import Digest
    from .view import View

__all__ = ["SUMMARY_MAX_CHARS", "SUMMARY_MAX_PROBLEMS", "short_summary"]

SUMMARY_MAX_CHARS = 1_000
"""Longest :attr:`OutgoingMessage.summary` for chat and push channels."""

SUMMARY_MAX_PROBLEMS = 10
"""Most problem lines in :attr:`OutgoingMessage.summary`."""

_SUMMARY_LINE_MAX_CHARS = 160


def short_summary(view: View, digest: Digest) -> str:
    """The summary of ``digest``, with the summary line and notices of ``view``."""
    lines = [view.summary, *(f"! {notice}" for notice in view.notices)]
    if digest.dropped > 0:
        lines.append(f"! {view.dropped_line()}")
    for problem in digest.problems[:SUMMARY_MAX_PROBLEMS]:
        level, _, _, _ = fields(problem)
        title = marked_text(title_segments(problem)[0])
        new = " (new)" if problem.is_new else ""
        line = f"- {level} \u00d7{problem.count:,} {title}{new}"
        lines.append(ellipsize(line, _SUMMARY_LINE_MAX_CHARS))
    rest = digest.problems[SUMMARY_MAX_PROBLEMS:]
    if rest:
        events = sum(problem.count for problem in rest)
        lines.append(f"- and {plural(len(rest), 'more problem')}, {plural(events, 'event')}")
    return ellipsize("\n".join(lines), SUMMARY_MAX_CHARS)
