"""Turn a :class:`~smtp_alerts.models.Digest` into an alert email.

Pure and free of I/O: the same digest and context always give the same bytes
(apart from the MIME boundary), so rendering is tested with plain calls and a
spooled digest re-renders to the same Message-ID.

What the renderer guarantees:

- **No header injection.** Everything that reaches a header from log text
  (the headline's message, logger name, exception type) has its control and
  line-separator characters replaced by spaces and is length-limited; the
  recipients come only from :class:`RenderContext`, whose addresses are checked.
- **Escaped HTML.** Every piece of log text is passed through
  :func:`html.escape`; the styles are inline because Gmail drops ``<style>``
  blocks in many of its clients.
- **Bounded size.** Samples, tracebacks and the number of rows are capped; if the
  message is still larger than :attr:`RenderContext.max_bytes` it is rendered
  again with tighter caps (tracebacks shortened, then dropped, then rows).
- **Threading.** Digests of one incident share a thread: deterministic
  Message-IDs ``<incident.sequence@sender-domain>``, ``In-Reply-To`` and
  ``References`` to the earlier ones, and ``Re: <first subject>`` because Gmail
  only threads messages whose subjects match.
"""

from __future__ import annotations

import html
import logging
import re
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING

from .._util.humanize import format_time
from .._version import VERSION
from ..models import EMAIL_POLICY, Digest, OutgoingMessage, Problem

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ..settings import Settings

__all__ = ["RenderContext", "render"]

# --- caps ------------------------------------------------------------------------------

DEFAULT_MAX_BYTES = 1_000_000
"""Default cap on the serialised message: far below Gmail's 25 MB, quick to send."""

MIN_MAX_BYTES = 65_536
"""Smallest accepted ``max_bytes``: the tightest rendering (headers, up to 100
recipients, notices, summary, no rows) always fits in it."""

MAX_TO_RECIPIENTS = 100
"""Most addresses listed in ``To:``; beyond it ``To: undisclosed-recipients:;``
is used and the envelope alone carries the recipients (Gmail accepts at most
100 recipients per message, so the transport sends such a message in batches)."""

SUBJECT_MAX_CHARS = 150
"""Longest subject, ``Re:`` included; longer ones end with an ellipsis."""

HOSTNAME_MAX_CHARS = 64
"""Longest host name shown (a DNS label is at most 63 characters)."""

ID_MAX_CHARS = 64
"""Longest incident id used in Message-IDs and the ``X-Smtp-Alerts-Incident`` header."""

MAX_REFERENCES = 20
"""Most Message-IDs in ``References``: the incident's first one plus the latest ones
(RFC 5322 section 3.6.4 suggests this trimming for long threads)."""

FIELD_MAX_CHARS = 300
"""Longest one-line field (title, logger, location, level, exception type)."""

MAX_NOTICES = 20
"""Most notices shown; the engine sends one or two, this only bounds a bug."""

NOTICE_MAX_CHARS = 500
"""Longest notice."""

# Notices under the tightest caps, chosen so that rendering fits in MIN_MAX_BYTES
# even with 4-byte characters, base64 and both parts.
_TIGHT_NOTICES = 5
_TIGHT_NOTICE_CHARS = 200

MAX_ROWS = 50
"""Most problem rows shown; the rest are counted in one "and N more" line."""

SAMPLE_MAX_CHARS = 2_000
"""Longest sample message shown; the start is kept."""

TRACEBACK_MAX_CHARS = 8_192
"""Longest traceback shown; the end is kept, where the exception and the
innermost frames are."""

SUMMARY_MAX_CHARS = 1_000
"""Longest :attr:`OutgoingMessage.summary` for chat and push channels."""

SUMMARY_MAX_PROBLEMS = 10
"""Most problem lines in :attr:`OutgoingMessage.summary`."""

_SUMMARY_LINE_MAX_CHARS = 160


@dataclass(frozen=True)
class _Caps:
    """One set of caps; a zero removes the part altogether."""

    rows: int
    sample_chars: int
    traceback_chars: int
    notices: int = MAX_NOTICES
    notice_chars: int = NOTICE_MAX_CHARS


# Tried in order until the message fits in ``max_bytes``: tracebacks give way
# first (they are the bulk, and the logs still have them), then samples, then rows.
_CAP_LEVELS = (
    _Caps(rows=MAX_ROWS, sample_chars=SAMPLE_MAX_CHARS, traceback_chars=TRACEBACK_MAX_CHARS),
    _Caps(rows=MAX_ROWS, sample_chars=1_000, traceback_chars=2_048),
    _Caps(rows=MAX_ROWS, sample_chars=500, traceback_chars=0),
    _Caps(rows=20, sample_chars=200, traceback_chars=0),
    _Caps(
        rows=0,
        sample_chars=0,
        traceback_chars=0,
        notices=_TIGHT_NOTICES,
        notice_chars=_TIGHT_NOTICE_CHARS,
    ),
)

# --- text cleaning -----------------------------------------------------------------------

# Anything a header folder or a mail client might take for a line break or use to
# disguise text: C0 and C1 controls (CR, LF, NUL, NEL...), DEL, the Unicode line and
# paragraph separators, and the bidirectional overrides used to spoof subjects.
_HEADER_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]+"
)
_SPACE_RUN = re.compile(" {2,}")
_NEWLINE = re.compile("\r\n?")
# C0 controls except TAB and LF (CR is turned into LF first), DEL and C1 controls.
_BODY_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]+")
_ID_UNSAFE = re.compile("[^A-Za-z0-9_-]+")
_DOMAIN_UNSAFE = re.compile("[^A-Za-z0-9.-]+")
# Same shape as the settings' check: local@domain, no spaces, separators,
# quotes, brackets or controls, so an address cannot add a recipient or a header.
_ADDRESS = re.compile(
    r"^[^@\s<>,;:\"'()\[\]\\\x00-\x1f\x7f]+@[^@\s<>,;:\"'()\[\]\\\x00-\x1f\x7f]+$"
)
_RE_PREFIX = re.compile(r"^(?:\s*re\s*:\s*)+", re.IGNORECASE)
_ELLIPSIS = "\u2026"


def _ellipsize(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters, ending with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + _ELLIPSIS


def _one_line(value: str, limit: int) -> str:
    """Make ``value`` a single safe line of at most ``limit`` characters.

    Used for everything that may reach a header or stand for a row's title.
    """
    # Only a bounded prefix is cleaned: a 10 MB message must not cost 10 MB of work.
    head = value[: 4 * limit + 16]
    text = _SPACE_RUN.sub(" ", _HEADER_UNSAFE.sub(" ", head)).strip()
    if len(head) < len(value) and len(text) <= limit:
        text += _ELLIPSIS
    return _ellipsize(text, limit)


def _clean_body(value: str) -> str:
    """Keep text, newlines and tabs; drop NUL and every other control character."""
    return _BODY_UNSAFE.sub("", _NEWLINE.sub("\n", value))


def _clip_head(value: str, limit: int) -> str:
    """Keep the first ``limit`` characters of ``value``, saying how much was cut."""
    if len(value) <= limit:
        return _clean_body(value).rstrip()
    cut = len(value) - limit
    return f"{_clean_body(value[:limit]).rstrip()}\n[{_ELLIPSIS} {cut:,} more characters cut]"


def _clip_tail(value: str, limit: int) -> str:
    """Keep the last ``limit`` characters of ``value``, saying how much was cut."""
    if len(value) <= limit:
        return _clean_body(value).rstrip()
    tail = value[-limit:]
    # Start on a whole line when one begins soon: half a frame line only confuses.
    newline = tail.find("\n", 0, 200)
    if newline != -1:
        tail = tail[newline + 1 :]
    cut = len(value) - len(tail)
    return f"[{_ELLIPSIS} {cut:,} earlier characters cut]\n{_clean_body(tail).rstrip()}"


def _h(value: str) -> str:
    """Escape text for HTML content and attribute values."""
    return html.escape(value, quote=True)


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    """``1 event``, ``2,051 events``."""
    word = singular if count == 1 else (plural or singular + "s")
    return f"{count:,} {word}"


# --- context ------------------------------------------------------------------------------


def _short_hostname() -> str:
    # gethostname() reads a kernel value; getfqdn() would ask DNS, which can block.
    return socket.gethostname().split(".", 1)[0] or "localhost"


@dataclass(frozen=True)
class RenderContext:
    """Everything a rendering needs besides the digest itself.

    Args:
        sender: the From: and envelope sender address.
        recipients: the envelope recipients; listed in To: when there are at most 100.
        hostname: short name of the machine that raised the alerts.
        subject_prefix: put before every subject; None means ``[hostname]``,
            an empty string means no prefix.
        max_bytes: cap on the whole serialised message, at least 64 KiB.

    Raises:
        ValueError: an address is not a plain ``local@domain`` address, there is
            no recipient, or ``max_bytes`` is below 64 KiB.
    """

    sender: str
    recipients: tuple[str, ...]
    hostname: str
    subject_prefix: str | None = None
    max_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        # Checked here and not only in Settings: a context built by hand must
        # not be able to carry a header or an extra recipient either.
        for address in (self.sender, *self.recipients):
            if not _ADDRESS.match(address):
                raise ValueError(f"{address!r} is not a plain email address (local@domain)")
        if not self.recipients:
            raise ValueError("a RenderContext needs at least one recipient")
        if self.max_bytes < MIN_MAX_BYTES:
            raise ValueError(
                f"max_bytes must be at least {MIN_MAX_BYTES:,}, not {self.max_bytes:,}"
            )

    @classmethod
    def from_settings(cls, settings: Settings, *, hostname: str | None = None) -> RenderContext:
        """Build the context for the configured sender, recipients and prefix.

        Args:
            settings: the library's settings.
            hostname: the host name to show; defaults to the short form of
                :func:`socket.gethostname`.

        Returns:
            A context with the default ``max_bytes``.
        """
        return cls(
            sender=settings.sender,
            recipients=tuple(settings.to),
            hostname=hostname if hostname is not None else _short_hostname(),
            subject_prefix=settings.subject_prefix,
        )


# --- headers ------------------------------------------------------------------------------


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
        return f"[{_one_line(context.hostname, HOSTNAME_MAX_CHARS)}]"
    return _one_line(context.subject_prefix, SUBJECT_MAX_CHARS // 3)


def _headline(problems: Sequence[Problem]) -> Problem:
    """The problem a subject names: the most severe, then the most frequent.

    ``max`` keeps the first of equals, and the digest lists the newest first.
    """
    return max(problems, key=lambda problem: (problem.alert.level, problem.count))


def _summary_line(digest: Digest, context: RenderContext) -> str:
    """``[web-1] 3 problems, 2,051 events: KeyError in shop.api``, one safe line."""
    if digest.problems:
        title = _one_line(_headline(digest.problems).alert.title, SUBJECT_MAX_CHARS)
        what = f"{_plural(len(digest.problems), 'problem')}, {_plural(digest.events, 'event')}"
        if title:
            what += f": {title}"
    elif digest.notices:
        what = _one_line(digest.notices[0], SUBJECT_MAX_CHARS)
    elif digest.dropped:
        what = f"{_plural(digest.dropped, 'log record')} dropped at intake"
    else:
        what = "no new problems"
    prefix = _prefix(context)
    return _ellipsize(f"{prefix} {what}" if prefix else what, SUBJECT_MAX_CHARS)


def _thread_title(thread_subject: str) -> str:
    """The first digest's subject without any ``Re:``, as one safe line."""
    return _RE_PREFIX.sub("", _one_line(thread_subject, SUBJECT_MAX_CHARS)) or "alerts"


# --- the parts ------------------------------------------------------------------------


@dataclass(frozen=True)
class _View:
    """What both parts show, computed once per rendering."""

    digest: Digest
    hostname: str
    summary: str
    notices: tuple[str, ...]
    shown: tuple[Problem, ...]
    hidden_problems: int
    hidden_events: int
    max_count: int
    caps: _Caps
    reduced: bool
    max_bytes: int


def _view(digest: Digest, context: RenderContext, summary: str, level: int) -> _View:
    caps = _CAP_LEVELS[level]
    shown = digest.problems[: caps.rows]
    hidden = digest.problems[caps.rows :]
    return _View(
        digest=digest,
        hostname=_one_line(context.hostname, HOSTNAME_MAX_CHARS),
        summary=summary,
        notices=_notices(digest.notices, caps),
        shown=shown,
        hidden_problems=len(hidden),
        hidden_events=sum(problem.count for problem in hidden),
        max_count=max((problem.count for problem in shown), default=0),
        caps=caps,
        reduced=level > 0,
        max_bytes=context.max_bytes,
    )


def _notices(notices: tuple[str, ...], caps: _Caps) -> tuple[str, ...]:
    shown = [_one_line(notice, caps.notice_chars) for notice in notices[: caps.notices]]
    if len(notices) > caps.notices:
        shown.append(f"{_plural(len(notices) - caps.notices, 'more notice')} not shown.")
    return tuple(shown)


def _dropped_line(dropped: int) -> str:
    verb = "was" if dropped == 1 else "were"
    return (
        f"{_plural(dropped, 'log record')} {verb} dropped at intake because the queue "
        "was full; they are not counted below."
    )


def _more_line(view: _View) -> str:
    return (
        f"{_ELLIPSIS} and {_plural(view.hidden_problems, 'more problem')}, "
        f"{_plural(view.hidden_events, 'event')} not shown."
    )


def _reduced_line(view: _View) -> str:
    return f"Some details were left out to keep this email under {view.max_bytes:,} bytes."


def _count_detail(problem: Problem) -> str:
    if problem.total != problem.count:
        return f"{problem.total:,} since the incident began"
    return ""


def _footer(view: _View) -> str:
    digest = view.digest
    return (
        f"Host {view.hostname} \u00b7 incident {_one_line(digest.incident_id, ID_MAX_CHARS)} "
        f"\u00b7 digest {digest.sequence} ({_one_line(digest.reason, 20)}) "
        f"\u00b7 sent by smtp-alerts {VERSION}"
    )


def _fields(problem: Problem) -> tuple[str, str, str, str]:
    """A problem's level, title, logger and location as safe single lines."""
    alert = problem.alert
    return (
        _one_line(alert.level_name, FIELD_MAX_CHARS),
        _one_line(alert.title, FIELD_MAX_CHARS),
        _one_line(alert.logger, FIELD_MAX_CHARS),
        _one_line(alert.location, FIELD_MAX_CHARS),
    )


def _indent(text: str, prefix: str, first: str | None = None) -> str:
    """Indent every line, so no log line can pose as a line of the email's own."""
    lines = text.split("\n")
    head = prefix if first is None else first
    return "\n".join([head + lines[0], *(prefix + line for line in lines[1:])])


def _text_part(view: _View) -> str:
    out: list[str] = [view.summary, ""]
    attention = [f"!! {notice}" for notice in view.notices]
    if view.digest.dropped > 0:
        attention.append(f"!! {_dropped_line(view.digest.dropped)}")
    if attention:
        out += [*attention, ""]
    if view.shown:
        out += ["PROBLEMS", ""]
    for number, problem in enumerate(view.shown, 1):
        out += _text_row(number, problem, view.caps)
    if view.hidden_problems:
        out += [_more_line(view), ""]
    if view.reduced:
        out += [_reduced_line(view), ""]
    tracebacks = _traceback_problems(view)
    if tracebacks:
        out += ["TRACEBACKS", ""]
    for number, problem, traceback in tracebacks:
        _, title, _, location = _fields(problem)
        where = f" ({location})" if location else ""
        out += [f"{number}. {title}{where}", _indent(traceback, "    "), ""]
    out += ["-- ", _footer(view), ""]
    return "\n".join(out)


def _text_row(number: int, problem: Problem, caps: _Caps) -> list[str]:
    level, title, logger, location = _fields(problem)
    new = "  [new]" if problem.is_new else ""
    detail = _count_detail(problem)
    events = _plural(problem.count, "event") + (f" ({detail})" if detail else "")
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
    if caps.sample_chars:
        sample = _clip_head(problem.alert.message, caps.sample_chars)
        lines.append(_indent(sample, "               | ", first="   message     | "))
    lines.append("")
    return lines


def _traceback_problems(view: _View) -> list[tuple[int, Problem, str]]:
    if not view.caps.traceback_chars:
        return []
    return [
        (number, problem, _clip_tail(problem.alert.traceback, view.caps.traceback_chars))
        for number, problem in enumerate(view.shown, 1)
        if problem.alert.traceback
    ]


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


def _html_part(view: _View, subject: str) -> str:
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
        out.append(f'<div style="{_NOTICE}">&#9888; {_h(_dropped_line(view.digest.dropped))}</div>')
    if view.shown:
        out += _html_table(view)
    if view.hidden_problems:
        out.append(f'<p style="margin:8px 0;{_MUTED}">{_h(_more_line(view))}</p>')
    if view.reduced:
        out.append(f'<p style="margin:8px 0;{_MUTED}">{_h(_reduced_line(view))}</p>')
    tracebacks = _traceback_problems(view)
    if tracebacks:
        out.append('<h2 style="margin:24px 0 8px;font-size:16px;font-weight:600">Tracebacks</h2>')
    for number, problem, traceback in tracebacks:
        _, title, _, location = _fields(problem)
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
    out += [
        (
            f'<p style="margin:24px 0 0;padding-top:8px;border-top:1px solid #d0d7de;{_MUTED}">'
            f"{_h(_footer(view))}</p>"
        ),
        "</div>",
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(out)


def _html_table(view: _View) -> list[str]:
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


def _html_row(number: int, problem: Problem, view: _View) -> list[str]:
    level, title, logger, location = _fields(problem)
    background, foreground = _level_colours(problem.alert.level)
    detail = _count_detail(problem)
    percent = _bar_percent(problem.count, view.max_count)
    new = (
        ' <span style="display:inline-block;padding:0 5px;border-radius:3px;'
        'background-color:#0969da;color:#ffffff;font-size:11px;font-weight:600">NEW</span>'
        if problem.is_new
        else ""
    )
    where = " \u00b7 ".join(part for part in (logger, location, f"id {problem.id}") if part)
    out = [
        "<tr>",
        (
            f'<td style="{_TD};white-space:nowrap">'
            '<span style="display:inline-block;padding:1px 6px;'
            f"border-radius:3px;background-color:{background};color:{foreground};font-size:11px;"
            f'font-weight:600">{_h(level)}</span></td>'
        ),
        f'<td style="{_TD};width:110px">',
        f'<div style="font-size:15px;font-weight:600">{problem.count:,}</div>',
    ]
    if detail:
        out.append(f'<div style="{_MUTED}">{_h(detail)}</div>')
    out += [
        (
            '<div style="margin-top:4px;height:6px;background-color:#eaeef2;border-radius:3px">'
            f'<div role="img" aria-label="{_h(_plural(problem.count, "event"))}" '
            f'style="height:6px;width:{percent}%;background-color:{background};border-radius:3px">'
            "</div></div>"
        ),
        "</td>",
        f'<td style="{_TD}">',
        f'<div style="font-weight:600">{number}. {_h(title)}{new}</div>',
    ]
    if view.caps.sample_chars:
        sample = _clip_head(problem.alert.message, view.caps.sample_chars)
        out.append(f'<div style="margin:4px 0;{_MONO};font-size:12px;{_WRAP}">{_h(sample)}</div>')
    out += [
        f'<div style="{_MUTED}">{_h(where)}</div>',
        "</td>",
        (
            f'<td style="{_TD};font-size:12px;white-space:nowrap">'
            f"first {_h(format_time(problem.first_seen))}<br>"
            f"last {_h(format_time(problem.last_seen))}</td>"
        ),
        "</tr>",
    ]
    return out


# --- the summary for short-text channels ----------------------------------------------------


def _short_summary(view: _View, digest: Digest) -> str:
    lines = [view.summary, *(f"! {notice}" for notice in view.notices)]
    if digest.dropped > 0:
        lines.append(f"! {_dropped_line(digest.dropped)}")
    for problem in digest.problems[:SUMMARY_MAX_PROBLEMS]:
        level, title, _, _ = _fields(problem)
        new = " (new)" if problem.is_new else ""
        line = f"- {level} \u00d7{problem.count:,} {title}{new}"
        lines.append(_ellipsize(line, _SUMMARY_LINE_MAX_CHARS))
    rest = digest.problems[SUMMARY_MAX_PROBLEMS:]
    if rest:
        events = sum(problem.count for problem in rest)
        lines.append(f"- and {_plural(len(rest), 'more problem')}, {_plural(events, 'event')}")
    return _ellipsize("\n".join(lines), SUMMARY_MAX_CHARS)


# --- assembly -------------------------------------------------------------------------------


def _email(headers: Iterable[tuple[str, str]], text: str, page: str) -> EmailMessage:
    # EMAIL_POLICY: CRLF line ends, as on the wire. The transfer encoding is left to
    # the email package (7bit, 8bit for lines up to 998 octets, else quoted-printable
    # or base64), which keeps every line within SMTP's limits whatever the logs contain.
    msg = EmailMessage(policy=EMAIL_POLICY)
    for name, value in headers:
        msg[name] = value
    msg.set_content(text, subtype="plain", charset="utf-8")
    msg.add_alternative(page, subtype="html", charset="utf-8")
    for part in msg.iter_parts():
        # add_alternative builds the part as an EmailMessage, which stamps a
        # MIME-Version of its own; it belongs on the top level only.
        del part["MIME-Version"]
    return msg


def _fit(
    digest: Digest,
    context: RenderContext,
    headers: Sequence[tuple[str, str]],
    summary: str,
    subject: str,
) -> tuple[EmailMessage, _View]:
    """Render with the loosest caps under which the message fits in ``max_bytes``."""
    for level in range(len(_CAP_LEVELS) - 1):
        view = _view(digest, context, summary, level)
        text, page = _text_part(view), _html_part(view, subject)
        # Encoding only adds bytes, so a body already too large as plain UTF-8 is
        # passed over without building and serialising the message.
        if len(text.encode()) + len(page.encode()) > context.max_bytes:
            continue
        msg = _email(headers, text, page)
        if len(msg.as_bytes()) <= context.max_bytes:
            return msg, view
    # The tightest caps show no log text but the notices, and always fit in
    # MIN_MAX_BYTES: see that constant.
    view = _view(digest, context, summary, len(_CAP_LEVELS) - 1)
    return _email(headers, _text_part(view), _html_part(view, subject)), view


def render(digest: Digest, context: RenderContext) -> OutgoingMessage:
    """Render a digest as an email with plain-text and HTML parts.

    Args:
        digest: what to report.
        context: who sends it, to whom, from which host, and the size cap.

    Returns:
        The message, with a deterministic Message-ID, ready for any channel.

    Raises:
        ValueError: ``digest.created`` is not a valid timestamp.
    """
    token = _incident_token(digest.incident_id)
    domain = _domain(context.sender)
    sequence = max(1, digest.sequence)
    message_id = _message_id(token, sequence, domain)
    summary = _summary_line(digest, context)
    if digest.thread_subject:
        title = _thread_title(digest.thread_subject)
        subject = _ellipsize(f"Re: {title}", SUBJECT_MAX_CHARS)
    else:
        title = subject = summary
    try:
        created = datetime.fromtimestamp(digest.created, tz=timezone.utc)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"digest.created is not a valid timestamp: {digest.created!r}") from exc

    many = len(context.recipients) > MAX_TO_RECIPIENTS
    headers = [
        ("From", context.sender),
        ("To", "undisclosed-recipients:;" if many else ", ".join(context.recipients)),
        ("Subject", subject),
        ("Date", format_datetime(created)),
        ("Message-ID", message_id),
    ]
    if sequence > 1:
        references = _references(token, sequence, domain)
        headers += [("In-Reply-To", references[0]), ("References", " ".join(references))]
    headers += [
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

    msg, view = _fit(digest, context, headers, summary, subject)
    return OutgoingMessage(
        message_id=message_id,
        email=msg,
        sender=context.sender,
        recipients=context.recipients,
        title=title,
        summary=_short_summary(view, digest),
        digest=digest,
    )
