"""The data that crosses layers: a captured alert, a problem row, a digest.

These are plain, immutable values with no I/O. An :class:`Alert` is captured
once per new problem in the caller's thread (repeats are only counted); the
engine folds alerts into :class:`Problem` rows and forms a :class:`Digest`; the
renderer turns a digest into an :class:`OutgoingMessage` for the transports.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from email.message import EmailMessage
    from email.policy import EmailPolicy

    EMAIL_POLICY: EmailPolicy

__all__ = [
    "EMAIL_POLICY",
    "Alert",
    "Digest",
    "Fingerprint",
    "OutgoingMessage",
    "Problem",
    "fingerprint_id",
]


def __getattr__(name: str) -> object:
    """``EMAIL_POLICY``, made on first use: the email package loads with the engine only.

    How every email of ours is built, serialised and parsed again: CRLF line
    ends, as on the wire, and no header folding. The renderer builds with it,
    the spool stores and parses with it, so a stored message comes back byte
    for byte. The values here are captured in every caller's thread, which
    must not pay for the email package (about 3 MiB) to attach a handler.
    """
    if name != "EMAIL_POLICY":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import email.policy  # noqa: PLC0415 - see above

    # RFC 5322's own line limit. At the default 78 the email package folds a
    # subject that starts with "[" right after "Subject:", and clients then show
    # a leading space; our headers are capped far below 998, so they are never folded.
    policy = email.policy.SMTP.clone(max_line_length=998)
    globals()["EMAIL_POLICY"] = policy  # later look-ups are plain reads
    return policy


Fingerprint = tuple[Hashable, ...]
"""The identity of a problem: equal for every occurrence of the same problem."""

Context = tuple[tuple[str, str], ...]
"""A problem's context as shown in the email: ``(key, value)`` lines, secrets masked."""


def fingerprint_id(fingerprint: Fingerprint) -> str:
    """A short, stable hex id for a fingerprint, equal across processes and hosts."""
    import hashlib  # noqa: PLC0415 - on the engine's side only; it loads OpenSSL (3.7 MiB)

    return hashlib.blake2b(repr(fingerprint).encode(), digest_size=6).hexdigest()


@dataclass(frozen=True, slots=True)
class Alert:
    """One occurrence of a problem, captured with everything a digest shows.

    Attributes:
        fingerprint: the problem's identity (see :mod:`smtp_alerts._fingerprint`).
        level: a :mod:`logging` level number.
        logger: the logger (or check, or job) name.
        message: the formatted message of this occurrence.
        created: when it happened, in seconds since the epoch.
        source: ``log``, ``alert``, ``check``, ``crash`` or ``meta``.
        location: ``path:line in function``, when known.
        exc_type: the exception's qualified type name, when there was one.
        traceback: the formatted traceback, when there was one.
        group: the notification group; each group has its own windows.
        context: what the caller attached (``context=`` or ``alert_context``),
            as safe ``(key, value)`` lines with secrets masked.
    """

    fingerprint: Fingerprint
    level: int
    logger: str
    message: str
    created: float
    source: str = "log"
    location: str = ""
    exc_type: str | None = None
    traceback: str | None = None
    group: str = "default"
    context: Context = ()

    @property
    def level_name(self) -> str:
        """The level's name, e.g. ``ERROR``."""
        return logging.getLevelName(self.level)

    @property
    def title(self) -> str:
        """A short label: ``KeyError in shop.api`` or the message's first line."""
        if self.exc_type:
            return f"{self.exc_type} in {self.logger}"
        first_line = self.message.strip().split("\n", 1)[0]
        return first_line or self.logger


@dataclass(frozen=True, slots=True)
class Problem:
    """One row of a digest: a problem with its counts and times.

    Attributes:
        alert: the sample occurrence (the first one of the incident).
        count: occurrences since the previous digest of this incident.
        total: occurrences since the incident began.
        first_seen: the first occurrence in this incident, epoch seconds.
        last_seen: the latest occurrence, epoch seconds.
        is_new: whether no earlier digest of this incident showed the problem.
        timeline: occurrences per interval of the incident, oldest first: entry
            ``i`` counts those from ``Digest.timeline_start + i * Digest.timeline_step``
            on (empty when the store keeps no timeline).
        last_message: the message of a later occurrence, a second sample beside
            :attr:`alert`'s (empty when none was kept or it is the same text).
    """

    alert: Alert
    count: int
    total: int
    first_seen: float
    last_seen: float
    is_new: bool
    timeline: tuple[int, ...] = ()
    last_message: str = ""

    @property
    def id(self) -> str:
        """The fingerprint's short stable id."""
        return fingerprint_id(self.alert.fingerprint)


@dataclass(frozen=True, slots=True)
class Digest:
    """What one notification says: the problems of one group since the last one.

    Attributes:
        group: the notification group.
        incident_id: stable id of the incident; digests of one incident thread together.
        sequence: 1 for the incident's first digest, then 2, 3...
        problems: the rows, most severe and newest first.
        created: when the digest was formed, epoch seconds.
        reason: why it was sent now: ``new``, ``update``, ``repeat``, ``critical``, ``flush``.
        dropped: records dropped at intake (queue full) since the previous digest.
        notices: lines the reader must see first (a quota reached, alerts held back).
        thread_subject: the subject of the incident's first digest, for follow-ups.
        timeline_start: where every problem's :attr:`Problem.timeline` starts, epoch seconds.
        timeline_step: the length of one timeline interval, in seconds (0: no timeline).
    """

    group: str
    incident_id: str
    sequence: int
    problems: tuple[Problem, ...]
    created: float
    reason: str = "new"
    dropped: int = 0
    notices: tuple[str, ...] = ()
    thread_subject: str | None = None
    timeline_start: float = 0.0
    timeline_step: float = 0.0

    @property
    def events(self) -> int:
        """Occurrences reported by this digest (since the previous one)."""
        return sum(problem.count for problem in self.problems)

    @property
    def max_level(self) -> int:
        """The most severe level among the problems."""
        return max((problem.alert.level for problem in self.problems), default=logging.ERROR)


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A rendered digest, ready for any channel.

    Email channels send :attr:`email`; channels that carry short text (chat,
    push, webhooks) use :attr:`title` and :attr:`summary`.

    Attributes:
        message_id: the email's Message-ID, also the digest's stable identity.
        email: the complete email, headers included.
        sender: the envelope sender.
        recipients: the envelope recipients (at most 100).
        title: a one-line title for non-email channels.
        summary: a short plain-text body for non-email channels.
        digest: the digest this message renders.
    """

    message_id: str
    email: EmailMessage = field(repr=False)
    sender: str
    recipients: tuple[str, ...]
    title: str
    summary: str = field(repr=False)
    digest: Digest | None = field(default=None, repr=False, compare=False)
