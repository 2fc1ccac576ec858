"""Deduplication and Alertmanager-style notification windows, without I/O.

The engine's background thread feeds an :class:`Aggregator` with occurrences
(:meth:`Aggregator.add` for a captured alert, :meth:`Aggregator.count` for
repeats of a known one), asks it when to wake up (:meth:`Aggregator.next_due`)
and which groups to notify (:meth:`Aggregator.due`), and has it form the
:class:`~smtp_alerts.models.Digest` of a group (:meth:`Aggregator.form`).

Each group has at most one open *incident*. Its life, as in Alertmanager:

- the first occurrence opens it; the first digest is due ``group_wait`` later,
  so a burst arrives as one email;
- after a digest, the next one is due ``group_interval`` after it if a problem
  not yet shown in this incident joined, or ``repeat_interval`` after it if
  only repeats of shown problems are pending;
- a new problem at ``CRITICAL`` or from a crash is due at once;
- an incident that was notified and stays quiet for ``repeat_interval`` closes:
  the next occurrence opens a new incident (new id, ``group_wait`` again).

Per problem the state is a handful of numbers, so a million identical errors
are one row with a count of a million; beside them, its occurrences per
interval of the incident (at most ``MAX_BUCKETS`` counts, see
:mod:`smtp_alerts._store.timeline`) and a later captured text. Memory is
bounded whatever the number of distinct problems: an incident keeps at most
``problems_per_incident`` of them one by one (and the aggregator
``problems_in_all`` across its incidents); past that, a new problem's
occurrences are counted in its logger's "other problems" row (see
:mod:`smtp_alerts._store.others`). Captured alerts (the heavy part: message,
traceback) are also bounded by ``max_samples``; see :class:`Aggregator`.
The class is not thread-safe: one thread (the engine's) owns it. All time
comes from the injected clock, or from the occurrences' own ``created`` times.
"""

from __future__ import annotations

import heapq
import logging
import math
import secrets
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from smtp_alerts._store import timeline
from smtp_alerts._store.others import (
    EXAMPLES,
    NEVER_FOLDED,
    OTHER_SOURCE,
    PROBLEMS_IN_ALL,
    PROBLEMS_PER_INCIDENT,
    example_of,
    is_other,
    other_key,
    other_row,
    with_examples,
)
from smtp_alerts._store.windows import (
    REASON_CRITICAL,
    REASON_FLUSH,
    REASON_NEW,
    REASON_REPEAT,
    REASON_UPDATE,
    Windows,
    reason,
    severity_order,
)
from smtp_alerts._util.tables import forget_oldest
from smtp_alerts.models import Alert, Digest, Problem

if TYPE_CHECKING:
    from collections.abc import Callable

    from smtp_alerts._util.clock import Clock
    from smtp_alerts.models import Fingerprint

    from .capture import Light

__all__ = [
    "DEFAULT_GROUP",
    "DEFAULT_MAX_SAMPLES",
    "REASON_CRITICAL",
    "REASON_FLUSH",
    "REASON_NEW",
    "REASON_REPEAT",
    "REASON_UPDATE",
    "Aggregator",
    "AggregatorStats",
]

DEFAULT_GROUP = "default"
"""The group that reports dropped records when no other group has anything pending."""

DEFAULT_MAX_SAMPLES = PROBLEMS_IN_ALL
"""How many captured alerts (one per fingerprint) an aggregator keeps by default."""

FOLDED_LIMIT = 30_000
"""Folded fingerprints remembered, so their repeats count in their other-problems row
(as many as the intake's table of known problems routes as repeats); one forgotten and
seen again is counted as a distinct problem again."""

_HeapItem = tuple[float, int, "Fingerprint"]


def _new_incident_id() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class AggregatorStats:
    """A snapshot of an aggregator's state, for health reports and tests.

    Attributes:
        open_incidents: groups with an open incident.
        samples: captured alerts held (at most ``max_samples`` unless pending
            problems need more).
        problems: fingerprints known, with or without a sample.
        occurrences: occurrences counted since the aggregator was created.
        pending: occurrences counted but not yet formed into a digest.
        dropped: records dropped at intake, not yet reported by a digest.
    """

    open_incidents: int
    samples: int
    problems: int
    occurrences: int
    pending: int
    dropped: int


@dataclass(slots=True, eq=False)
class _Entry:
    """A known fingerprint: its sample and its state in its group's incident."""

    fingerprint: Fingerprint
    group: str
    # None once evicted from an open incident: the row keeps the incident's
    # counts and "shown" state, and the next occurrence is re-captured.
    alert: Alert | None
    in_incident: bool = False
    pending: int = 0  # occurrences since the previous digest
    total: int = 0  # occurrences since the incident opened
    first_seen: float = 0.0
    last_seen: float = 0.0
    shown_in: int = 0  # sequence of the digest that first showed it; 0 = never
    token: int = 0  # identifies its one valid eviction-heap item; 0 = none
    others: _Others | None = None  # set on an other-problems row
    # Occurrences per interval at its incident's step (see _store.timeline):
    # since the last push on a shared store, over the incident otherwise.
    buckets: timeline.Buckets | None = None
    later: str = ""  # the newest captured message unlike the sample's, this incident
    untold: str = ""  # the newest captured message not yet pushed to a store


@dataclass(slots=True, eq=False)
class _Others:
    """What an other-problems row says besides its counts."""

    examples: list[str]
    cap: int  # the incident's cap, which the row's title names
    distinct: int = 1


@dataclass(slots=True, eq=False)
class _Incident:
    """One group's open incident."""

    group: str
    incident_id: str
    opened_at: float
    sequence: int = 0  # digests formed (and not restored as the latest)
    last_notified: float | None = None
    members: dict[Fingerprint, _Entry] = field(default_factory=dict)
    pending: dict[Fingerprint, _Entry] = field(default_factory=dict)
    new_pending: int = 0  # pending entries never shown in this incident
    critical_at: float | None = None  # earliest pending new critical/crash
    drops_pending: bool = False  # carries dropped records although no problem is pending
    thread_subject: str | None = None
    # The interval indexes its members' buckets span, at ``step``; None: none yet.
    step: int = timeline.STEPS[0]
    low: int | None = None
    high: int = 0
    whole: bool = False  # formed with its whole timeline: members keep buckets
    # The interval of the latest occurrence counted, [t_from, t_to) at ``step``.
    t_from: float = math.inf
    t_to: float = -math.inf
    t_index: int = 0

    @property
    def has_pending(self) -> bool:
        return bool(self.pending) or self.drops_pending


def _problem(entry: _Entry, low: int, high: int, *, delta: bool) -> Problem:
    # Only sampled entries become pending: count() refuses the others.
    assert entry.alert is not None  # noqa: S101 - an invariant, not input validation
    alert = entry.alert
    if entry.others is not None:
        alert = with_examples(alert, entry.others.examples, entry.others.distinct, entry.others.cap)
    if delta:  # the store compares it with its own sample's text
        last_message, entry.untold = entry.untold, ""
    else:
        last_message = entry.later if entry.later != alert.message else ""
    return Problem(
        alert=alert,
        count=entry.pending,
        total=entry.total,
        first_seen=entry.first_seen,
        last_seen=entry.last_seen,
        is_new=entry.shown_in == 0,
        timeline=timeline.dense(entry.buckets, low, high),
        last_message=last_message,
    )


class Aggregator:
    """Counts occurrences per fingerprint and decides when each group's digest is due.

    Args:
        group_wait: seconds a new incident waits to collect its burst.
        group_interval: least seconds between two digests of one incident when
            a new problem joined.
        repeat_interval: seconds after which an unchanged incident with pending
            repeats is notified again; also how long a notified incident must
            stay quiet to close.
        clock: returns the current time in epoch seconds.
        max_samples: how many captured alerts to keep. Beyond it, fingerprints
            in no open incident are forgotten first (least recently seen
            first); then fingerprints of open incidents with nothing pending
            lose their sample but keep their few numbers (counts, first seen,
            shown), so a re-captured occurrence continues the same row.
            Pending samples are never evicted: counts are never lost.
        new_incident_id: makes the id of a new incident.
        problems_per_incident: problems an incident keeps one by one; the
            occurrences of further ones are counted in their logger's
            other-problems row (never those of a crash, check, job or meta-alert).
        problems_in_all: the same bound across all open incidents.

    Raises:
        ValueError: a negative duration, or a ``max_samples`` or cap below 1.
    """

    __slots__ = (
        "_clock",
        "_dropped",
        "_entries",
        "_evicted",
        "_folded",
        "_group_interval",
        "_group_wait",
        "_idle",
        "_in_all",
        "_incidents",
        "_max_samples",
        "_new_incident_id",
        "_next_token",
        "_occurrences",
        "_pending_occurrences",
        "_per_incident",
        "_quiet",
        "_repeat_interval",
        "_samples",
        "_windows",
    )

    def __init__(
        self,
        *,
        group_wait: float,
        group_interval: float,
        repeat_interval: float,
        clock: Clock,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        new_incident_id: Callable[[], str] = _new_incident_id,
        problems_per_incident: int = PROBLEMS_PER_INCIDENT,
        problems_in_all: int = PROBLEMS_IN_ALL,
    ) -> None:
        for name, value, least, unit in (
            ("group_wait", group_wait, 0, " seconds"),
            ("group_interval", group_interval, 0, " seconds"),
            ("repeat_interval", repeat_interval, 0, " seconds"),
            ("max_samples", max_samples, 1, ""),
            ("problems_per_incident", problems_per_incident, 1, ""),
            ("problems_in_all", problems_in_all, 1, ""),
        ):
            if value < least:
                raise ValueError(f"{name} must be >= {least}{unit}, got {value!r}")
        self._per_incident = problems_per_incident
        self._in_all = problems_in_all
        # Folded fingerprint -> its other-problems row (oldest forgotten first).
        self._folded: dict[Fingerprint, Fingerprint] = {}
        self._group_wait = float(group_wait)
        self._group_interval = float(group_interval)
        self._repeat_interval = float(repeat_interval)
        self._windows = Windows(self._group_wait, self._group_interval, self._repeat_interval)
        self._clock = clock
        self._max_samples = max_samples
        self._new_incident_id = new_incident_id
        self._entries: dict[Fingerprint, _Entry] = {}
        self._samples = 0  # entries whose alert is not None
        self._incidents: dict[str, _Incident] = {}
        # Eviction candidates as lazy heaps ordered by last_seen: an item is
        # valid only while its token is the entry's current one, so a state
        # change invalidates it in O(1) instead of searching the heap.
        self._idle: list[_HeapItem] = []  # entries in no open incident
        self._quiet: list[_HeapItem] = []  # sampled open-incident entries, nothing pending
        self._next_token = 0
        self._evicted: list[Fingerprint] = []
        self._dropped = 0
        self._occurrences = 0
        self._pending_occurrences = 0

    def __repr__(self) -> str:
        return (
            f"Aggregator(group_wait={self._group_wait!r}, "
            f"group_interval={self._group_interval!r}, "
            f"repeat_interval={self._repeat_interval!r}, "
            f"incidents={len(self._incidents)}, samples={self._samples})"
        )

    # -- input ---------------------------------------------------------------

    def add(self, alert: Alert) -> None:
        """Count one captured occurrence, keeping it as the sample if none is known.

        An already-known fingerprint keeps its sample and its group: the
        occurrence is counted in the group it was first captured in. A new
        problem past the caps is counted in its logger's other-problems row.

        Args:
            alert: the occurrence, with its details captured.
        """
        entry = self._entries.get(alert.fingerprint)
        if entry is None:
            folded = self._folded.get(alert.fingerprint)
            if folded is not None or self._over_cap(alert.source, alert.group, alert.created):
                self._fold(
                    alert.fingerprint,
                    alert.group,
                    alert.logger,
                    alert.level,
                    alert.created,
                    alert.message,
                    folded,
                )
                return
            entry = _Entry(fingerprint=alert.fingerprint, group=alert.group, alert=None)
            self._entries[alert.fingerprint] = entry
        is_new_sample = entry.alert is None
        if is_new_sample:
            entry.alert = alert
            self._samples += 1
        self._occur(entry, alert.created, 1, alert.level, alert.source)
        # After _occur: joining an incident forgets the texts of the one before.
        entry.untold = alert.message
        if not is_new_sample:
            entry.later = alert.message
        if is_new_sample:
            self._evict()

    def add_lights(self, captured: list[Light]) -> None:
        """Count new problems captured lightly (the intake's word: their incident was full).

        Folded as :meth:`add` would fold them, without building alerts, and
        counted in each other-problems row once per batch (a flood of
        distinct problems costs a few dict operations each). One already
        kept (its incident had room when it came) is counted as such; one
        whose incident has room now is kept as a problem of its own with
        what was captured.
        """
        folded, entries = self._folded, self._entries
        full: dict[str, bool] = {}  # per group, judged once per batch
        # Per (group, logger, level), the row its new problems fold into and
        # what the row says: a flood folds thousands of problems into a few rows.
        made: dict[tuple[str, str, int], tuple[Fingerprint, _Others]] = {}
        rows: dict[
            Fingerprint, list[Any]
        ] = {}  # row -> [first, last, n, level, group, logger, message]
        # The last light's row, and what it said: in a flood the next one
        # has the same group, logger and level (the same objects), and no
        # key is built or hashed for it.
        last: tuple[str, str, int, Fingerprint, _Others] | None = None
        folding: list[Light] = []  # new problems of the last row, folded together
        seen: list[Any] = []
        for light in captured:
            fingerprint, level, logger, message, created, group, _ = light
            row_key = folded.get(fingerprint)
            if row_key is None:
                entry = entries.get(fingerprint)
                if entry is not None and entry.alert is not None:
                    self._occur(entry, created, 1, level, entry.alert.source)
                    continue
                if last is not None and last[0] is group and last[1] is logger and last[2] == level:
                    row_key = last[3]
                    folding.append(light)
                else:
                    self._fold_folding(last, folding)
                    folding = []
                    row_key = self._fold_light(light, full, made)
                    if row_key is None:
                        continue  # kept: its incident has room
                    making = made.get((group, logger, level))
                    last = None if making is None else (group, logger, level, *making)
            if seen and seen[7] is row_key:
                seen[2] += 1
            else:
                seen = rows.get(row_key) or rows.setdefault(
                    row_key, [created, created, 0, level, group, logger, message, row_key]
                )
                seen[2] += 1
            if created > seen[1]:
                seen[1] = created
            elif created < seen[0]:
                seen[0] = created
        self._fold_folding(last, folding)
        for row_key, (first, last_at, n, level, group, logger, message, _) in rows.items():
            row = self._other_row(row_key, group, logger, level, message, first)
            self._occur(row, first, 1, level, OTHER_SOURCE)
            if n > 1:
                self._occur(row, last_at, n - 1, level, OTHER_SOURCE)

    def _fold_folding(
        self, last: tuple[str, str, int, Fingerprint, _Others] | None, folding: list[Light]
    ) -> None:
        """Fold the new problems of one row that add_lights collected, together."""
        if last is not None and folding:
            messages = [light[3] for light in folding[:EXAMPLES]]
            self._fold_many(last[3], last[4], [light[0] for light in folding], messages)

    def _fold_light(
        self,
        light: Light,
        full: dict[str, bool],
        made: dict[tuple[str, str, int], tuple[Fingerprint, _Others]],
    ) -> Fingerprint | None:
        """The row a light capture not folded yet folds into; None when it is kept apart.

        One whose incident has room now is kept as a problem of its own.
        """
        fingerprint, level, logger, message, created, group, exc_type = light
        over = full.get(group)
        if over is None:
            over = full[group] = self._over_cap("log", group, created)
        if not over:
            alert = Alert(fingerprint, level, logger, message, created, group=group)
            self.add(replace(alert, exc_type=exc_type) if exc_type else alert)
            return None
        making = made.get((group, logger, level))
        if making is None:
            row_key = self._remember_folded(fingerprint, group, logger, level, message, created)
            others = self._entries[row_key].others
            if others is not None:
                made[group, logger, level] = (row_key, others)
            return row_key
        row_key, others = making
        self._fold_into(fingerprint, row_key, others, message)
        return row_key

    def _over_cap(self, source: str, group: str, at: float) -> bool:
        """Whether a new problem must be folded: its incident (or all of them) is full."""
        if source in NEVER_FOLDED:
            return False
        incident = self._incidents.get(group)
        if incident is not None and len(incident.members) >= self._per_incident:
            return not self._closable(incident, at)
        if len(self._entries) < self._in_all:
            return False
        return self._kept() >= self._in_all

    def _kept(self) -> int:
        """The problems the open incidents keep, all told (the cap across incidents counts them)."""
        return sum(len(i.members) for i in self._incidents.values())

    def _fold(  # noqa: PLR0917 - one occurrence's fields
        self,
        fingerprint: Fingerprint,
        group: str,
        logger: str,
        level: int,
        created: float,
        message: str,
        row_key: Fingerprint | None,
    ) -> None:
        """Count an occurrence in its other-problems row (made on the first fold)."""
        if row_key is None:
            row_key = self._remember_folded(fingerprint, group, logger, level, message, created)
        row = self._other_row(row_key, group, logger, level, message, created)
        self._occur(row, created, 1, level, OTHER_SOURCE)

    def _remember_folded(  # noqa: PLR0917 - one occurrence's fields
        self,
        fingerprint: Fingerprint,
        group: str,
        logger: str,
        level: int,
        message: str,
        created: float,
    ) -> Fingerprint:
        """Fold a problem not seen before: its row counts one more distinct problem."""
        row_key = other_key(group, logger, level)
        row = self._other_row(row_key, group, logger, level, message, created)
        if row.others is None:
            row.others = _Others(examples=[], cap=self._per_incident, distinct=0)
        self._fold_into(fingerprint, row_key, row.others, message)
        return row_key

    def _fold_into(
        self, fingerprint: Fingerprint, row_key: Fingerprint, others: _Others, message: str
    ) -> None:
        """Count ``fingerprint`` in the row ``row_key`` from now on: one more distinct problem."""
        self._fold_many(row_key, others, [fingerprint], [message])

    def _fold_many(
        self,
        row_key: Fingerprint,
        others: _Others,
        fingerprints: list[Fingerprint],
        messages: list[str],
    ) -> None:
        """Count ``fingerprints`` in the row ``row_key`` from now on, each once.

        A batch at once: one dict update, however many there are (a flood of
        distinct problems folds thousands into one row per drain).
        ``messages`` are the first of their messages, examples for the row.
        """
        fresh = dict.fromkeys(fingerprints, row_key)
        folded = self._folded
        folded.update(fresh)
        while len(folded) > FOLDED_LIMIT:
            forget_oldest(folded)
        others.distinct += len(fresh)
        room = EXAMPLES - len(others.examples)
        if room > 0:
            others.examples.extend(example_of(message) for message in messages[:room])

    def _other_row(  # noqa: PLR0917 - the row's identity and a sample's fields
        self,
        row_key: Fingerprint,
        group: str,
        logger: str,
        level: int,
        message: str,
        created: float,
    ) -> _Entry:
        """The other-problems row ``row_key``, made (with its sample) when missing."""
        row = self._entries.get(row_key)
        if row is None:
            row = self._entries[row_key] = _Entry(fingerprint=row_key, group=group, alert=None)
        if row.alert is None:
            sample = Alert(row_key, level, logger, message, created, group=group)
            row.alert = other_row(sample, cap=self._per_incident)
            self._samples += 1
        return row

    def count(self, fingerprint: Fingerprint, created: float, n: int = 1, text: str = "") -> bool:
        """Count ``n`` more occurrences of a captured fingerprint, the last at ``created``.

        Args:
            fingerprint: the problem's identity.
            created: when the latest of these occurrences happened.
            n: how many occurrences.
            text: one of these occurrences' message, when the intake kept one:
                the problem's later sample.

        Returns:
            False, counting nothing, when no sample is known for the fingerprint
            (it was evicted): the caller must re-capture it and :meth:`add` it.

        Raises:
            ValueError: ``n`` below 1.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n!r}")
        entry = self._entries.get(fingerprint)
        if entry is None:
            row_key = self._folded.get(fingerprint)
            if row_key is None:
                return False
            entry = self._entries.get(row_key)
            if entry is None or entry.alert is None:
                return False  # the row was evicted: its problems are re-captured
        elif entry.alert is None:
            return False
        elif text:
            entry.untold = entry.later = text
        self._occur(entry, created, n, entry.alert.level, entry.alert.source)
        return True

    def note_dropped(self, n: int) -> None:
        """Record ``n`` records dropped at intake.

        The next digest formed, of whichever group, reports them. When no group
        has anything pending, the ``default`` group becomes pending for them
        (as if a new problem joined it), so they are reported even then.

        Args:
            n: how many records were dropped.

        Raises:
            ValueError: ``n`` is negative.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n!r}")
        if n:
            self._dropped += n
            self._carry_dropped()

    def set_thread_subject(self, incident_id: str, subject: str) -> None:
        """Remember the subject of an incident's first digest, for its follow-ups.

        Ignored when that incident has closed.

        Args:
            incident_id: the incident, as in :attr:`Digest.incident_id`.
            subject: the first digest's subject line.
        """
        for incident in self._incidents.values():
            if incident.incident_id == incident_id:
                incident.thread_subject = subject
                return

    def forget_notifications(self) -> None:
        """Judge every open incident's window as if no digest had gone out yet.

        While the engine pushes to a shared store, each push is formed here and
        counts as a notification, though only the store decides what is sent.
        When the store refuses and the engine sends on its own, the pushes must
        not hold its first email back by ``group_interval``: ``group_wait``
        applies again (a digest the store already sent may be sent twice:
        duplicates, never silence).
        """
        for incident in self._incidents.values():
            incident.last_notified = None

    def restore(self, digest: Digest) -> None:
        """Put a digest that no channel took back as pending, so nothing is lost.

        The counts become pending again and are reported by a later digest. A
        problem that this digest was the first to show is new again. If the
        digest was its incident's latest, the sequence steps back so the
        reader's first email still has sequence 1. The digest's formation time
        still counts as the last notification, so the group waits at least
        ``group_interval`` before the next attempt: a failing channel is not
        hammered. If the incident closed meanwhile, the counts join the
        group's current (or a new) incident.

        Args:
            digest: a digest formed by this aggregator.
        """
        now = self._clock()
        touched: dict[str, _Incident] = {}
        for problem in digest.problems:
            fingerprint = problem.alert.fingerprint
            entry = self._entries.get(fingerprint)
            if entry is None:
                entry = _Entry(fingerprint=fingerprint, group=digest.group, alert=None)
                self._entries[fingerprint] = entry
            if entry.alert is None:  # evicted since: the digest still holds the sample
                entry.alert = problem.alert
                self._samples += 1
            incident = self._incident_for(entry.group, now)
            same_incident = incident.incident_id == digest.incident_id
            if not entry.in_incident:
                self._join(incident, entry, problem.first_seen)
                entry.total = problem.total if same_incident else problem.count
            elif not same_incident:
                entry.total += problem.count
            if same_incident and problem.is_new and entry.shown_in == digest.sequence:
                entry.shown_in = 0
            entry.first_seen = min(entry.first_seen, problem.first_seen)
            entry.last_seen = max(entry.last_seen, problem.last_seen)
            if entry.pending == 0:
                incident.pending[fingerprint] = entry
                entry.token = 0
            entry.pending += problem.count
            self._pending_occurrences += problem.count
            self._retally(incident, entry, problem, digest)
            entry.untold = entry.untold or problem.last_message
            touched[incident.group] = incident
        for incident in touched.values():
            incident.new_pending = sum(1 for e in incident.pending.values() if e.shown_in == 0)
        incident_now = self._incidents.get(digest.group)
        if (
            incident_now is not None
            and incident_now.incident_id == digest.incident_id
            and incident_now.sequence == digest.sequence
        ):
            incident_now.sequence -= 1
            if incident_now.sequence == 0:
                # The first email never went out: its subject heads no thread.
                incident_now.thread_subject = None
        if digest.dropped:
            self._dropped += digest.dropped
            self._carry_dropped()
        self._evict()

    # -- output --------------------------------------------------------------

    def next_due(self) -> float | None:
        """The earliest time any group is due, or None when none is.

        Returns:
            Epoch seconds, possibly in the past (then a group is due now).
        """
        times = [t for t in map(self._due_at, self._incidents.values()) if t is not None]
        return min(times, default=None)

    def due(self, now: float | None = None) -> list[str]:
        """The groups whose digest is due, earliest first.

        Also closes incidents that stayed quiet for ``repeat_interval``.

        Args:
            now: the time to judge by; the clock's time when None.

        Returns:
            Group names.
        """
        if now is None:
            now = self._clock()
        self._expire(now)
        ready = [
            (at, name)
            for name, incident in self._incidents.items()
            if (at := self._due_at(incident)) is not None and at <= now
        ]
        return [name for _, name in sorted(ready)]

    def full_groups(self) -> frozenset[str] | None:
        """The groups whose new problems are folded now; None when all groups' are.

        The intake reads it to capture such problems lightly (their message
        only: an other-problems row shows no more).
        """
        if self._kept() >= self._in_all:
            return None
        return frozenset(
            name
            for name, incident in self._incidents.items()
            if len(incident.members) >= self._per_incident
        )

    def room(self) -> int:
        """How many more new problems could be kept, at most, in any one incident now.

        The intake captures new problems past this many (since its last
        drain) lightly: however they spread over groups, no incident could
        keep more. An incident not opened yet has room for its whole cap.
        """
        return max(0, min(self._per_incident, self._in_all - self._kept()))

    def pending_groups(self) -> list[str]:
        """The groups with anything pending, due or not (for a flush)."""
        return [name for name, incident in self._incidents.items() if incident.has_pending]

    def form(
        self,
        group: str,
        *,
        reason: str | None = None,
        notices: tuple[str, ...] = (),
        delta: bool = False,
    ) -> Digest | None:
        """Form the digest of everything pending in ``group``, due or not.

        Marks the group notified now and resets its pending counts. The digest
        also reports all records dropped at intake not yet reported, whatever
        their group.

        Args:
            group: the group's name.
            reason: overrides the computed reason (the engine passes ``flush``);
                computed: ``critical`` when a problem not yet shown at
                ``CRITICAL`` or from a crash is pending, else ``new`` for an
                incident's first digest, ``update`` when another new problem
                (or only dropped records) is pending, ``repeat`` otherwise.
            notices: lines the reader must see first.
            delta: form a delta for a shared store: each problem's timeline
                counts only what is pending (the store adds it to its own),
                and its ``last_message`` is the newest captured text not yet
                pushed (the store compares it with its own sample). Otherwise
                the timelines cover the incident up to now, as an email shows
                them (on a store's delta that went before, from when this
                engine stopped pushing).

        Returns:
            The digest, or None when nothing is pending in the group. A digest
            that only reports dropped records has no problems.
        """
        incident = self._incidents.get(group)
        if incident is None or not incident.has_pending:
            return None
        now = self._clock()
        sequence = incident.sequence + 1
        if reason is None:
            reason = self._reason(incident, sequence)
        start, step, problems = self._rows(incident, now, delta=delta)
        for entry in incident.pending.values():
            if entry.shown_in == 0:
                entry.shown_in = sequence
            self._pending_occurrences -= entry.pending
            entry.pending = 0
            self._push(self._quiet, entry)
        incident.pending = {}
        incident.new_pending = 0
        incident.critical_at = None
        incident.sequence = sequence
        incident.last_notified = now
        return Digest(
            group=group,
            incident_id=incident.incident_id,
            sequence=sequence,
            problems=tuple(problems),
            created=now,
            reason=reason,
            dropped=self._take_dropped(),
            notices=notices,
            thread_subject=incident.thread_subject,
            timeline_start=start,
            timeline_step=step,
        )

    def _rows(
        self, incident: _Incident, now: float, *, delta: bool
    ) -> tuple[float, float, list[Problem]]:
        """The pending problems with their timelines, and where those start and their step.

        A delta's timelines span what is pending, and its buckets are handed
        over; a digest's span the incident up to ``now``, and stay.
        """
        if not delta:
            incident.whole = True
            now_at = timeline.index_of(now, incident.step)
            if incident.low is None or now_at > incident.high:  # never back: odd times
                self._cover(incident, now_at)
        step, low, high = incident.step, incident.low, incident.high
        if low is None:  # nothing counted (only dropped records): no timeline
            step, low, high = 0, 0, -1
        problems = sorted(
            (_problem(e, low, high, delta=delta) for e in incident.pending.values()),
            key=severity_order,
        )
        if delta:
            handed = incident.members.values() if incident.whole else incident.pending.values()
            for entry in handed:
                entry.buckets = None
            incident.step, incident.low, incident.whole = timeline.STEPS[0], None, False
            incident.t_to = -math.inf
        return float(low * step), float(step), problems

    def pop_evicted(self) -> list[Fingerprint]:
        """The fingerprints evicted since the last call, for the intake to forget."""
        evicted, self._evicted = self._evicted, []
        return evicted

    @property
    def stats(self) -> AggregatorStats:
        """Counts of incidents, samples and occurrences, as of the clock's time."""
        now = self._clock()
        return AggregatorStats(
            open_incidents=sum(
                not self._closable(incident, now) for incident in self._incidents.values()
            ),
            samples=self._samples,
            problems=len(self._entries),
            occurrences=self._occurrences,
            pending=self._pending_occurrences,
            dropped=self._dropped,
        )

    # -- internals -----------------------------------------------------------

    def _occur(self, entry: _Entry, created: float, n: int, level: int, source: str) -> None:
        incident = self._incident_for(entry.group, created)
        if not entry.in_incident:
            self._join(incident, entry, created)
        if entry.pending == 0:
            incident.pending[entry.fingerprint] = entry
            entry.token = 0  # no longer an eviction candidate
            if entry.shown_in == 0:
                incident.new_pending += 1
        entry.pending += n
        entry.total += n
        entry.first_seen = min(entry.first_seen, created)
        entry.last_seen = max(entry.last_seen, created)
        # Most occurrences fall in the interval of the one before: two comparisons.
        if incident.t_from <= created < incident.t_to:
            index = incident.t_index
        else:
            index = self._interval(incident, created, clamp=True)
        buckets = entry.buckets
        if buckets is None:
            entry.buckets = {index: n}
        else:
            buckets[index] = buckets.get(index, 0) + n
        if entry.shown_in == 0 and (level >= logging.CRITICAL or source == "crash"):
            critical_at = incident.critical_at
            incident.critical_at = created if critical_at is None else min(critical_at, created)
        self._occurrences += n
        self._pending_occurrences += n

    def _interval(self, incident: _Incident, at: float, *, clamp: bool) -> int:
        """The index of ``at``'s interval, the incident widened (coarser if need be) to it.

        With ``clamp``, a time before the incident opened (at its first
        occurrence) counts in its first interval: a record with an odd
        ``created`` would stretch every timeline of the incident. The interval
        is remembered for the next occurrences.
        """
        if clamp and not at >= incident.opened_at:  # NaN too
            at = incident.opened_at
        step = incident.step
        index = timeline.index_of(at, step)
        if incident.low is None or not incident.low <= index <= incident.high:
            index = self._cover(incident, index)
            step = incident.step
        incident.t_from, incident.t_to, incident.t_index = index * step, (index + 1) * step, index
        return index

    @staticmethod
    def _cover(incident: _Incident, index: int, least: int = 0) -> int:
        """Widen the incident's intervals to ``index``, coarser when they would be too many.

        Args:
            incident: the incident.
            index: an interval index at the incident's step.
            least: a step the incident must be at least at (a ladder value).

        Returns:
            ``index``'s interval at the incident's step afterwards.
        """
        step, low = incident.step, incident.low
        if low is None:
            low = high = index
        else:
            low, high = min(low, index), max(incident.high, index)
        new = timeline.fitting_step(low, high, step, least=least)
        if new != step:
            for member in incident.members.values():
                if member.buckets:
                    member.buckets = timeline.rekey(member.buckets, step, new)
            low, high, index = (low * step) // new, (high * step) // new, (index * step) // new
            incident.t_to = -math.inf  # the interval remembered was at the old step
        incident.step, incident.low, incident.high = new, low, high
        return index

    def _retally(
        self, incident: _Incident, entry: _Entry, problem: Problem, digest: Digest
    ) -> None:
        """Count a restored delta's timeline again, at the incident's step (or the delta's)."""
        step = int(digest.timeline_step)
        if not problem.timeline or step < 1:
            return
        start = digest.timeline_start
        if step > incident.step and step % incident.step == 0:
            self._cover(incident, timeline.index_of(start, incident.step), step)
        for offset, count in enumerate(problem.timeline):
            if count:
                # First: widening the incident may re-key the entry's buckets.
                index = self._interval(incident, start + offset * step, clamp=False)
                buckets = {} if entry.buckets is None else entry.buckets
                buckets[index] = buckets.get(index, 0) + count
                entry.buckets = buckets

    def _incident_for(self, group: str, at: float) -> _Incident:
        """The group's open incident at ``at``, opening one (first occurrence at ``at``)."""
        incident = self._incidents.get(group)
        if incident is not None and self._closable(incident, at):
            self._close(incident)
            incident = None
        if incident is None:
            incident = _Incident(group=group, incident_id=self._new_incident_id(), opened_at=at)
            self._incidents[group] = incident
        return incident

    def _join(self, incident: _Incident, entry: _Entry, at: float) -> None:
        entry.in_incident = True
        entry.total = 0
        entry.first_seen = at
        entry.last_seen = at
        entry.shown_in = 0
        entry.token = 0
        entry.buckets = None
        entry.later = entry.untold = ""
        incident.members[entry.fingerprint] = entry

    def _closable(self, incident: _Incident, at: float) -> bool:
        return self._windows.closable(
            last_notified=incident.last_notified, pending=incident.has_pending, at=at
        )

    def _close(self, incident: _Incident) -> None:
        if any(is_other(fingerprint) for fingerprint in incident.members):
            # A new incident keeps its problems one by one again.
            group = incident.group
            self._folded = {fp: row for fp, row in self._folded.items() if row[1] != group}
        for entry in incident.members.values():
            entry.in_incident = False
            entry.buckets = None
            if entry.alert is None:
                # Its sample was already evicted (and reported); without an
                # incident the row holds nothing worth keeping.
                del self._entries[entry.fingerprint]
            else:
                self._push(self._idle, entry)
        del self._incidents[incident.group]

    def _expire(self, now: float) -> None:
        for incident in [i for i in self._incidents.values() if self._closable(i, now)]:
            self._close(incident)

    def _due_at(self, incident: _Incident) -> float | None:
        if not incident.has_pending:
            return None
        return self._windows.due_at(
            opened_at=incident.opened_at,
            last_notified=incident.last_notified,
            news=bool(incident.new_pending or incident.drops_pending),
            critical_at=incident.critical_at,
        )

    def _reason(self, incident: _Incident, sequence: int) -> str:
        return reason(
            critical=incident.critical_at is not None,
            sequence=sequence,
            news=bool(incident.new_pending or incident.drops_pending),
        )

    def _carry_dropped(self) -> None:
        """Make sure some group is pending while dropped records wait to be reported."""
        if self._dropped and not any(i.has_pending for i in self._incidents.values()):
            self._incident_for(DEFAULT_GROUP, self._clock()).drops_pending = True

    def _take_dropped(self) -> int:
        dropped, self._dropped = self._dropped, 0
        for incident in list(self._incidents.values()):
            incident.drops_pending = False
            if not incident.pending and incident.last_notified is None:
                # Opened only to carry the drops, which another digest took.
                del self._incidents[incident.group]
        return dropped

    def _push(self, heap: list[_HeapItem], entry: _Entry) -> None:
        self._next_token += 1
        entry.token = self._next_token
        heapq.heappush(heap, (entry.last_seen, entry.token, entry.fingerprint))
        if len(heap) > 2 * len(self._entries) + 64:
            # Stale items pile up as entries change state; drop them now and
            # then so the heaps stay proportional to the samples held.
            heap[:] = [item for item in heap if self._is_valid(item)]
            heapq.heapify(heap)

    def _is_valid(self, item: _HeapItem) -> bool:
        entry = self._entries.get(item[2])
        return entry is not None and entry.token == item[1]

    def _evict(self) -> None:
        if self._samples <= self._max_samples:
            return
        self._expire(self._clock())  # quiet incidents free their samples first
        for heap in (self._idle, self._quiet):
            while self._samples > self._max_samples and heap:
                item = heapq.heappop(heap)
                if not self._is_valid(item):
                    continue
                entry = self._entries[item[2]]
                if not entry.in_incident:
                    del self._entries[entry.fingerprint]
                entry.alert = None
                entry.token = 0
                self._samples -= 1
                self._evicted.append(entry.fingerprint)
