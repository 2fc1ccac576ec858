"""The headers of an alert email: subject, Message-ID, threading, and nothing injectable.

- **Subject.** ``[host] 3 problems, 2,051 events: KeyError in shop.api``: it
  always names the most severe problem (then the most frequent), so a
  CRITICAL is never hidden. Follow-ups are ``Re: <first subject>``, because
  Gmail only threads messages whose subjects match.
- **Threading.** Digests of one incident share a thread: deterministic
  Message-IDs ``<incident.sequence@sender-domain>``, so a spooled digest
  rendered again keeps its id, and ``In-Reply-To`` and ``References`` to the
  earlier ones.
- **No header injection.** Everything that reaches a header from log text
  passes through :func:`~.safe_text.one_line` and is length-limited; the
  addresses come only from the checked :class:`~.context.RenderContext`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import TYPE_CHECKING

from ..._store.others import OTHER_SOURCE
from ..._version import VERSION
from .row import title_segments
from .safe_text import ellipsize, one_line, plural
from .template import marked_text
from .view import HOSTNAME_MAX_CHARS, ID_MAX_CHARS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ...models import Digest, Problem
    from .context import RenderContext

__all__ = [
    "MAX_REFERENCES",
    "MAX_TO_RECIPIENTS",
    "SUBJECT_MAX_CHARS",
    "Headers",
    "make_headers",
]

MAX_TO_RECIPIENTS = 100
"""Most addresses listed in ``To:``; beyond it ``To: undisclosed-recipients:;``
is used and the envelope alone carries the recipients (Gmail accepts at most
100 recipients per message, so the transport sends such a message in batches)."""

SUBJECT_MAX_CHARS = 150
"""Longest subject, ``Re:`` included; longer ones end with an ellipsis."""

HEADLINE_MAX_CHARS = 90
"""Longest headline title in a subject, so the counts after it stay in view."""

MAX_REFERENCES = 20
"""Most Message-IDs in ``References``: the incident's first one plus the latest ones
(RFC 5322 section 3.6.4 suggests this trimming for long threads)."""

_ID_UNSAFE = re.compile("[^A-Za-z0-9_-]+")
_DOMAIN_UNSAFE = re.compile("[^A-Za-z0-9.-]+")
_RE_PREFIX = re.compile(r"^(?:\s*re\s*:\s*)+", re.IGNORECASE)


@dataclass(frozen=True)
class Headers:
    """The headers of one rendering, and the lines derived with them.

    Attributes:
        items: (name, value) pairs, in the order they are written.
        message_id: the Message-ID, also the message's identity in the spool.
        subject: the Subject.
        title: the one-line title for non-email channels: the thread's title.
        summary: the summary line, the first line of both parts.
    """

    items: tuple[tuple[str, str], ...]
    message_id: str
    subject: str
    title: str
    summary: str


def make_headers(digest: Digest, context: RenderContext) -> Headers:
    """The headers of the email that renders ``digest`` in ``context``.

    Raises:
        ValueError: ``digest.created`` is not a valid timestamp.
    """
    token = _incident_token(digest.incident_id)
    domain = _domain(context.sender)
    sequence = max(1, digest.sequence)
    message_id = _message_id(token, sequence, domain)
    summary = _summary_line(digest, context)
    if digest.thread_subject and not _news(digest):
        # Nothing new: the follow-up joins the incident's thread (Gmail threads
        # equal subjects). A new problem gets a subject of its own that names
        # it, so a CRITICAL is never hidden behind an earlier subject; the
        # References header still threads it in clients that read headers.
        title = _thread_title(digest.thread_subject)
        subject = ellipsize(f"Re: {title}", SUBJECT_MAX_CHARS)
    else:
        title = subject = summary
    try:
        created = datetime.fromtimestamp(digest.created, tz=timezone.utc)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"digest.created is not a valid timestamp: {digest.created!r}") from exc

    many = len(context.recipients) > MAX_TO_RECIPIENTS
    items = [
        ("From", context.sender),
        ("To", "undisclosed-recipients:;" if many else ", ".join(context.recipients)),
        ("Subject", subject),
        ("Date", format_datetime(created)),
        ("Message-ID", message_id),
    ]
    if sequence > 1:
        references = _references(token, sequence, domain)
        items += [("In-Reply-To", references[0]), ("References", " ".join(references))]
    items += _fixed_headers(token)
    return Headers(tuple(items), message_id, subject, title, summary)


def _fixed_headers(token: str) -> list[tuple[str, str]]:
    """The headers every alert email carries, whatever it says."""
    return [
        # RFC 3834: tells vacation responders and the like not to answer.
        ("Auto-Submitted", "auto-generated"),
        # Exchange and Outlook ignore Auto-Submitted; this stops their out-of-office replies.
        ("X-Auto-Response-Suppress", "All"),
        # No "Precedence: bulk": it is non-standard (RFC 2076 discourages it), the two
        # headers above already silence responders, and it marks the mail as bulk for
        # filters, which is the wrong signal for an alert a person must read.
        ("X-Mailer", f"smtp-alerts/{VERSION}"),
        ("X-Smtp-Alerts-Incident", token),
    ]


def _domain(address: str) -> str:
    """The sender's domain, reduced to what a Message-ID may hold."""
    domain = _DOMAIN_UNSAFE.sub("-", address.rpartition("@")[2]).strip(".-")
    return domain or "smtp-alerts.invalid"


def _incident_token(incident_id: str) -> str:
    """The incident id, reduced to characters safe in a Message-ID and a header."""
    return _ID_UNSAFE.sub("-", incident_id)[:ID_MAX_CHARS].strip("-") or "incident"


def _message_id(token: str, sequence: int, domain: str) -> str:
    return f"<{token}.{sequence}@{domain}>"


def _references(token: str, sequence: int, domain: str) -> list[str]:
    """The ids of the incident's earlier digests: the first one and the latest ones."""
    earlier = range(1, sequence)
    if len(earlier) > MAX_REFERENCES:
        earlier = range(sequence - MAX_REFERENCES + 1, sequence)
        return [_message_id(token, n, domain) for n in (1, *earlier)]
    return [_message_id(token, n, domain) for n in earlier]


def _prefix(context: RenderContext) -> str:
    if context.subject_prefix is None:
        return f"[{one_line(context.hostname, HOSTNAME_MAX_CHARS)}]"
    return one_line(context.subject_prefix, SUBJECT_MAX_CHARS // 3)


def _news(digest: Digest) -> bool:
    """Whether a new problem (WARNING or worse: not a recovery notice) is in the digest."""
    return any(p.is_new and p.alert.level >= logging.WARNING for p in digest.problems)


def _headline(problems: Sequence[Problem]) -> Problem:
    """The problem a subject names: the most severe new one, then the most frequent.

    Only when none is new, the most severe of all. A problem kept one by one
    before any other-problems row; ``max`` keeps the first of equals, and the
    digest lists the newest first.
    """
    new = [problem for problem in problems if problem.is_new] or list(problems)
    return max(
        new,
        key=lambda problem: (
            problem.alert.source != OTHER_SOURCE,
            problem.alert.level,
            problem.count,
        ),
    )


def _summary_line(digest: Digest, context: RenderContext) -> str:
    """``[web-1] ERROR: KeyError in shop.api (3 problems, 2,051 events)``, one safe line.

    The level and the title first, as a phone's notification cuts the end.
    """
    problems = digest.problems
    if problems:
        headline = _headline(problems)
        # The row's own title: a template with its varying parts marked says
        # "order" and a marked part where one sample would say "order 0" for all.
        segments, _ = title_segments(headline)
        title = ellipsize(one_line(marked_text(segments), SUBJECT_MAX_CHARS), HEADLINE_MAX_CHARS)
        level = one_line(headline.alert.level_name, 20)
        events = plural(digest.events, "event")
        counts = events if len(problems) == 1 else f"{plural(len(problems), 'problem')}, {events}"
        what = f"{level}: {title} ({counts})" if title else f"{level} ({counts})"
    elif digest.notices:
        what = one_line(digest.notices[0], SUBJECT_MAX_CHARS)
    elif digest.dropped:
        what = f"{plural(digest.dropped, 'log record')} dropped at intake"
    else:
        what = "no new problems"
    prefix = _prefix(context)
    return ellipsize(f"{prefix} {what}" if prefix else what, SUBJECT_MAX_CHARS)


def _thread_title(thread_subject: str) -> str:
    """The first digest's subject without any ``Re:``, as one safe line."""
    return _RE_PREFIX.sub("", one_line(thread_subject, SUBJECT_MAX_CHARS)) or "alerts"
