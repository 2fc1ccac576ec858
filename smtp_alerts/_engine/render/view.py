"""What both parts of an email show: the rows, notices and lines under one set of caps.

The plain-text part and the HTML part say the same things in two forms. A
:class:`View` is computed once per rendering from the digest, the context and
a :class:`Caps`, and holds everything both forms show, already cut to those
caps; the wording shared by the two parts (the "dropped at intake" line, the
"and N more" line, the footer...) is here too, so they never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..._store.others import OTHER_SOURCE
from ..._version import VERSION
from .row import make_row
from .safe_text import ELLIPSIS, one_line, plural
from .timeline import timeline_length

if TYPE_CHECKING:
    from ...models import Digest, Problem
    from .context import RenderContext
    from .row import Row

__all__ = [
    "HOSTNAME_MAX_CHARS",
    "ID_MAX_CHARS",
    "MAX_NOTICES",
    "MAX_ROWS",
    "NOTICE_MAX_CHARS",
    "SAMPLE_MAX_CHARS",
    "TRACEBACK_MAX_CHARS",
    "Caps",
    "View",
    "make_view",
]

HOSTNAME_MAX_CHARS = 64
"""Longest host name shown (a DNS label is at most 63 characters)."""

ID_MAX_CHARS = 64
"""Longest incident id used in Message-IDs and the ``X-Smtp-Alerts-Incident`` header."""

MAX_NOTICES = 20
"""Most notices shown; the engine sends one or two, this only bounds a bug."""

NOTICE_MAX_CHARS = 500
"""Longest notice."""

MAX_ROWS = 50
"""Most problem rows shown; the rest are counted in one "and N more" line."""

SAMPLE_MAX_CHARS = 2_000
"""Longest sample message shown; the start is kept."""

TRACEBACK_MAX_CHARS = 8_192
"""Longest traceback shown; the end is kept, where the exception and the
innermost frames are."""


@dataclass(frozen=True)
class Caps:
    """One set of caps; a zero (or False) removes the part altogether."""

    rows: int
    sample_chars: int
    traceback_chars: int
    notices: int = MAX_NOTICES
    notice_chars: int = NOTICE_MAX_CHARS
    timelines: bool = True


@dataclass(frozen=True)
class View:
    """What both parts show, computed once per rendering."""

    digest: Digest
    hostname: str
    summary: str
    notices: tuple[str, ...]
    shown: tuple[Problem, ...]
    rows: tuple[Row, ...]
    hidden_problems: int
    hidden_events: int
    max_count: int
    caps: Caps
    reduced: bool
    max_bytes: int

    def dropped_line(self) -> str:
        """The line that says how many records the intake dropped."""
        dropped = self.digest.dropped
        verb = "was" if dropped == 1 else "were"
        return (
            f"{plural(dropped, 'log record')} {verb} dropped at intake because the queue "
            "was full; they are not counted below."
        )

    def more_line(self) -> str:
        """The line that counts the rows the caps left out."""
        return (
            f"{ELLIPSIS} and {plural(self.hidden_problems, 'more problem')}, "
            f"{plural(self.hidden_events, 'event')} not shown."
        )

    def reduced_line(self) -> str:
        """The line that says details were left out to fit the size cap."""
        return f"Some details were left out to keep this email under {self.max_bytes:,} bytes."

    def footer(self) -> str:
        """The last line: host, incident, digest number and reason, library version."""
        digest = self.digest
        return (
            f"Host {self.hostname} \u00b7 incident {one_line(digest.incident_id, ID_MAX_CHARS)} "
            f"\u00b7 digest {digest.sequence} ({one_line(digest.reason, 20)}) "
            f"\u00b7 sent by smtp-alerts {VERSION}"
        )

    def details(self) -> list[Row]:
        """The shown rows that have details (a traceback, a command's output...)."""
        return [row for row in self.rows if row.detail]


def make_view(
    digest: Digest, context: RenderContext, summary: str, caps: Caps, *, reduced: bool
) -> View:
    """The view of ``digest`` under ``caps``; ``reduced`` when they are not the loosest."""
    shown, hidden = _rows(digest.problems, caps.rows)
    length = timeline_length(digest) if caps.timelines else 0
    return View(
        digest=digest,
        hostname=one_line(context.hostname, HOSTNAME_MAX_CHARS),
        summary=summary,
        notices=_notices(digest.notices, caps),
        shown=shown,
        rows=tuple(
            make_row(n, problem, digest, caps, length) for n, problem in enumerate(shown, 1)
        ),
        hidden_problems=len(hidden),
        hidden_events=sum(problem.count for problem in hidden),
        max_count=max((problem.count for problem in shown), default=0),
        caps=caps,
        reduced=reduced,
        max_bytes=context.max_bytes,
    )


def _rows(
    problems: tuple[Problem, ...], cap: int
) -> tuple[tuple[Problem, ...], tuple[Problem, ...]]:
    """The rows shown under ``cap`` and those left out.

    Other-problems rows (last in a digest) are shown even when the problems
    kept one by one fill the cap: what did not fit must be said, not hidden.
    """
    others = tuple(p for p in problems if p.alert.source == OTHER_SOURCE)
    if not others:
        return problems[:cap], problems[cap:]
    kept = tuple(p for p in problems if p.alert.source != OTHER_SOURCE)
    room = min(len(others), cap // 2)
    return kept[: cap - room] + others[:room], kept[cap - room :] + others[room:]


def _notices(notices: tuple[str, ...], caps: Caps) -> tuple[str, ...]:
    shown = [one_line(notice, caps.notice_chars) for notice in notices[: caps.notices]]
    if len(notices) > caps.notices:
        shown.append(f"{plural(len(notices) - caps.notices, 'more notice')} not shown.")
    return tuple(shown)
