"""One problem's row, as both parts of an email show it.

A :class:`Row` holds everything the plain-text and the HTML part say about one
problem, as safe text already cut to the rendering's caps: the title (its
message template with the variable parts marked, when there is one), the
samples, when it was seen, its timeline, its context, and its details (a
traceback, a command's output, a check's result) under a label that says
which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..._util.humanize import format_time
from .safe_text import clip_head, clip_tail, one_line, one_line_pieces
from .template import marked_text, template_segments
from .timeline import Strip, make_strip

if TYPE_CHECKING:
    from ...models import Alert, Digest, Problem
    from .template import Segments
    from .view import Caps

__all__ = [
    "CONTEXT_KEY_MAX_CHARS",
    "CONTEXT_VALUE_MAX_CHARS",
    "FIELD_MAX_CHARS",
    "Row",
    "count_detail",
    "detail_label",
    "fields",
    "make_row",
    "title_segments",
]

FIELD_MAX_CHARS = 300
"""Longest one-line field (title, logger, location, level, exception type)."""

CONTEXT_KEY_MAX_CHARS = 64
"""Longest context key shown."""

CONTEXT_VALUE_MAX_CHARS = 256
"""Longest context value shown (shorter under tighter caps)."""


@dataclass(frozen=True)
class Row:
    """What both parts show of one problem.

    Attributes:
        number: the row's number in the email, from 1.
        problem: the problem.
        level: its level's name.
        segments: the title as fixed and variable pieces (one fixed piece
            when the problem has no template).
        title: the title as plain text, variable parts shown as :data:`~.template.VARIABLE_MARK`.
        templated: whether the title is a template with variable parts.
        logger: the logger (check, job) name.
        location: where it was raised, or empty.
        seen: ``(label, time)`` lines: one ``seen`` line when the first and the
            last occurrence read the same, else ``first seen`` and ``last seen``.
        samples: ``(label, message)``: the first occurrence's message and a
            later one's when it differs; none under caps without samples.
        context: the context's ``(key, value)`` lines.
        strip: the timeline, or None.
        detail_label: what :attr:`detail` is: ``Traceback``, ``Command output``...
        detail: the traceback or details, clipped, or empty.
    """

    number: int
    problem: Problem
    level: str
    segments: Segments
    title: str
    templated: bool
    logger: str
    location: str
    seen: tuple[tuple[str, str], ...]
    samples: tuple[tuple[str, str], ...]
    context: tuple[tuple[str, str], ...]
    strip: Strip | None
    detail_label: str
    detail: str

    @property
    def repeats_title(self) -> bool:
        """Whether the only sample says no more than the title (so it need not be shown again)."""
        return not self.templated and len(self.samples) == 1 and self.samples[0][1] == self.title


def make_row(number: int, problem: Problem, digest: Digest, caps: Caps, length: int) -> Row:
    """The row of ``problem``, numbered ``number``, under ``caps``.

    ``length`` is how many intervals the digest's strips span
    (:func:`~.timeline.timeline_length`, computed once per digest).
    """
    level, _, logger, location = fields(problem)
    segments, templated = title_segments(problem)
    alert = problem.alert
    detail = ""
    if caps.traceback_chars and alert.traceback:
        detail = clip_tail(alert.traceback, caps.traceback_chars)
    return Row(
        number=number,
        problem=problem,
        level=level,
        segments=segments,
        title=marked_text(segments),
        templated=templated,
        logger=logger,
        location=location,
        seen=_seen(problem),
        samples=_samples(problem, caps, templated=templated),
        context=_context(problem, caps),
        strip=make_strip(problem, digest, length) if caps.timelines else None,
        detail_label=detail_label(alert),
        detail=detail,
    )


def title_segments(problem: Problem) -> tuple[Segments, bool]:
    """A problem's title as safe pieces, and whether it is a template with variable parts.

    Only a problem seen more than once has occurrences that may differ, and an
    exception's title is its type, not its message: those keep their title.
    """
    alert = problem.alert
    many = problem.total > 1 or problem.count > 1
    template = template_segments(alert) if many and alert.exc_type is None else None
    if template is None:
        return ((one_line(problem.alert.title, FIELD_MAX_CHARS), False),), False
    return one_line_pieces(template, FIELD_MAX_CHARS), True


def _seen(problem: Problem) -> tuple[tuple[str, str], ...]:
    first, last = format_time(problem.first_seen), format_time(problem.last_seen)
    if first == last:
        return (("seen", first),)
    return (("first seen", first), ("last seen", last))


def _samples(problem: Problem, caps: Caps, *, templated: bool) -> tuple[tuple[str, str], ...]:
    """The first occurrence's message, and a later one's when it is kept and differs."""
    if not caps.sample_chars:
        return ()
    first = problem.alert.message
    later = problem.last_message
    if not later or later == first:
        return (("example" if templated else "message", clip_head(first, caps.sample_chars)),)
    return (
        ("first", clip_head(first, caps.sample_chars)),
        ("later", clip_head(later, caps.sample_chars)),
    )


def _context(problem: Problem, caps: Caps) -> tuple[tuple[str, str], ...]:
    """A problem's context as safe ``(key, value)`` lines; none under caps without samples."""
    if not caps.sample_chars:
        return ()
    value_chars = max(40, min(CONTEXT_VALUE_MAX_CHARS, caps.sample_chars // 4))
    return tuple(
        (one_line(key, CONTEXT_KEY_MAX_CHARS), one_line(value, value_chars))
        for key, value in problem.alert.context
    )


def detail_label(alert: Alert) -> str:
    """What an alert's details are, named for what they hold."""
    text = alert.traceback or ""
    if alert.exc_type is not None or text.startswith("Traceback (most recent call last)"):
        return "Traceback"
    if alert.source == "check":
        return "Check result"
    if alert.source == "job" and alert.fingerprint[:1] == ("key",):
        key = alert.fingerprint[1] if len(alert.fingerprint) > 1 else ""
        if isinstance(key, str) and key.startswith("run:"):  # smtp-alerts run: a command's output
            return "Command output"
    if text.startswith("Stack (most recent call last)"):
        return "Stack"
    return "Details"


def count_detail(problem: Problem) -> str:
    """The incident's total next to the row's count, when they differ."""
    if problem.total != problem.count:
        return f"{problem.total:,} since the incident began"
    return ""


def fields(problem: Problem) -> tuple[str, str, str, str]:
    """A problem's level, title, logger and location as safe single lines."""
    alert = problem.alert
    return (
        one_line(alert.level_name, FIELD_MAX_CHARS),
        one_line(alert.title, FIELD_MAX_CHARS),
        one_line(alert.logger, FIELD_MAX_CHARS),
        one_line(alert.location, FIELD_MAX_CHARS),
    )
