"""The intake: where alerts enter an engine, from any thread, without waiting.

Callers only ever touch the intake: a deque and a dict, both safe to use from
many threads under the GIL, with no lock on the way of a repeat. Everything
after it belongs to the engine's own thread (:mod:`smtp_alerts._engine.core`),
which takes what is queued.

The caller's cost is kept to the minimum docs/architecture.md ("Caller's cost") asks for:

- a repeat of a known problem costs one tuple, one dict lookup and one deque
  append (no formatting, no traceback, no lock, no system call);
- a repeat of text formatted before the call (an f-string) costs a look-up
  of its call site and a comparison with the shapes of text already masked
  there: the masking regex runs once per shape, not once per record;
- a new problem is captured once (its message formatted and its exception
  snapshot while its arguments and frames are as they were; its traceback is
  formatted later, on the engine's thread) and wakes the loop if it is idle;
- when the intake is full the record is counted as dropped, and the next
  digest says how many: nothing is lost silently;
- a record that comes after the engine closed (an ``atexit`` handler that
  runs after ours) cannot be sent: it is counted, and stderr says so once
  per burst, naming how many and the first one's message;
- nothing here raises for odd input: capture degrades the odd field (see
  :mod:`smtp_alerts._engine.capture`), and a capture that fails anyway
  still makes an alert.

This is the hot path (``AlertHandler.handle`` costs about as much as
``logging.NullHandler``): the intake is a base class of the engine, not an
object it holds, so a record costs no extra call or attribute hop.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, SupportsInt, cast

from .._store.others import PROBLEMS_PER_INCIDENT
from .._util.clock import Clock
from .._util.printable import printable, printable_repr
from .._util.stderr import warn
from .._util.tables import forget_oldest
from ..models import Alert, Fingerprint
from .capture import (
    DEFAULT_GROUP,
    MESSAGE_MAX_CHARS,
    TEMPLATE_MAX_CHARS,
    Light,
    PendingAlert,
    capture_failed,
    capture_light,
    capture_record,
    clip_traceback,
    exception_type_name,
    format_message,
    innermost_frame,
    key_fingerprint,
    mask_variable_parts,
    record_identity,
    record_key,
    record_site,
    scrub_context,
    shape_matches,
    snapshot,
    template_shape,
)
from .snapshot import Snapshot

if TYPE_CHECKING:  # the loop is the engine thread's, loaded there (see core)
    import asyncio

    from .loop import EngineLoop

__all__ = [
    "IGNORED_LOGGERS",
    "KNOWN_LIMIT",
    "REPORTED",
    "SHAPES_PER_SITE",
    "Intake",
    "Known",
    "Queued",
    "Repeat",
]

#: Loggers whose records never become alerts: ours and those of what we run on,
#: so a failing delivery cannot alert about itself in a loop.
IGNORED_LOGGERS = ("smtp_alerts", "aiosmtplib", "apprise", "asyncio", "urllib3", "mail.log")

_IGNORED: Fingerprint = ("<ignored>",)

REPORTED = "__smtp_alerts_reported__"
"""Set on an exception raised as an alert by :meth:`Intake.alert`, so the log
record a framework writes for the same exception is not a second problem; set
on a log record by an integration that reported its event already (structlog
over the standard library), so the record is not counted again either."""


class Known:
    """A problem the intake knows: its canonical fingerprint, until the engine forgets it.

    One object per problem, shared by every key it is known under (record
    keys, the fingerprint, call-site shapes), so the engine forgets a
    problem whose sample it evicted by clearing one attribute: repeats of it
    are captured again, and no other problem is forgotten with it.
    """

    __slots__ = ("canonical", "fingerprint", "last", "text", "wants_text")

    def __init__(self, fingerprint: Fingerprint) -> None:
        self.fingerprint: Fingerprint | None = fingerprint
        #: The same fingerprint, never cleared: what a queued repeat counts for.
        self.canonical = fingerprint
        #: When the latest queued repeat happened (set before it is queued).
        self.last = 0.0
        #: A later occurrence's text, the email's second sample: the first
        #: repeat after the engine took the last one gives it (so a repeat is
        #: formatted at most once per drain, not once per record).
        self.wants_text = True
        self.text = ""


_IGNORED_RECORD = Known(_IGNORED)

#: Entries of the caller-side table of known problems (record keys and
#: fingerprints), and of call sites with shapes, before the oldest quarter is
#: forgotten; repeats of a forgotten problem are captured again, never lost.
KNOWN_LIMIT = 30_000

#: New problems captured whole before the engine's first word on room (see
#: :meth:`Intake._give_room`): as many as one incident keeps.
FIRST_ROOM = PROBLEMS_PER_INCIDENT

#: Longest later sample kept from a repeat (the email shows 2,000 characters).
SAMPLE_TEXT_MAX_CHARS = 2_000

#: Shapes of pre-formatted text remembered per call site; a site that logs
#: more shapes than this has the rest masked each time (still one problem per shape).
SHAPES_PER_SITE = 8


def _own_references() -> int:
    """What :func:`sys.getrefcount` says of a deque only :meth:`Intake._take_queued` holds.

    Measured the way that method looks (a pair popped from a list, unpacked
    into locals), so an interpreter that counts references on its stack
    differently (borrowed references) agrees with it.
    """
    waiting: list[tuple[deque[Repeat], int]] = [(deque(), 0)]
    batch, _start = waiting.pop()
    return sys.getrefcount(batch)


Repeat = Known
"""A queued repeat of a known problem: the problem's cell itself (its :attr:`Known.last`
says when the latest happened). No object is made per repeat: a tuple per
record made the garbage collector run a third more often and walk the queue."""

_TAKER_REFERENCES = _own_references()

Batch = tuple["deque[Repeat]", int, int, bool]
"""Repeats the loop counts: a deque, the part of it to count (start, stop), and whether
no producer holds it any more (then all of it from start is final)."""

Queued = Light | Alert | PendingAlert
"""What the intake queues for a new problem: its capture (light, plain or pending)."""

Shapes = list[tuple[str, str, int, str | None, tuple[str, ...] | None, "Known"]]
"""A call site's shapes of pre-formatted text: a template's fixed start and end, its
least length (a character per variable part), the fixed piece between its two
variable parts when it has two, or else all its fixed pieces when it has more;
and the problem it is."""


class Intake:
    """The caller's side of an engine: :meth:`submit_record` and :meth:`alert`.

    The engine core subclasses it: it starts the loop on the first new
    problem (:meth:`_start`), sets :attr:`_thread`, :attr:`_loop` and
    :attr:`_wake_event` when it does, and takes what is queued
    (:meth:`_take_queued`, :meth:`_pop_dropped`).

    Args:
        capacity: the most items queued at once (``QUEUE_SIZE``).
        clock: the time of a direct alert.
    """

    def __init__(self, *, capacity: int, clock: Clock) -> None:
        self._clock = clock
        self._capacity = capacity
        # Past this many queued records a producer wakes the loop early, so the
        # intake drains long before it is full even between two polls.
        self._high_water = max(1, capacity // 8)
        # Repeats wake it later: a flood of repeats alone is drained less often
        # (the runner's REPEATS_INTERVAL, see _arm_new_wake), and a queued
        # repeat is a pointer.
        self._repeats_high_water = max(1, capacity // 4)
        self._reset_intake()

    def _reset_intake(self) -> None:
        """(Re)create the intake's state: at construction and in a forked child."""
        # Re-entrant: a signal handler that logs runs in the thread it
        # interrupted, maybe while that thread holds this lock (starting the
        # engine, counting a drop); a plain lock would deadlock it.
        self._lock = threading.RLock()
        self._starting = False
        # New problems and repeats queue apart: the engine's thread counts a
        # batch of repeats in C (see Drain.take), which a mixed queue would
        # not allow. It takes the repeats' length first and the new
        # problems' after, so a repeat is never counted before its capture.
        self._queue: deque[Queued] = deque()
        self._repeats: deque[Repeat] = deque()
        # Repeats swapped out while a producer still held them, and how many
        # of each the loop counted (see _take_queued).
        self._held: list[tuple[deque[Repeat], int]] = []
        # Canonical fingerprints (the objects the engine counts by identity)
        # by record key and by fingerprint, and shapes of text by call site.
        self._known: dict[Hashable, Known] = {}
        self._sites: dict[Hashable, Shapes] = {}
        # The engine's word on which groups fold their new problems (None:
        # all of them); their captures are light. Replaced whole, never changed.
        self._full_groups: frozenset[str] | None = frozenset()
        # New problems captured whole so far (producers count them), and the
        # count past which no incident could keep another one before the
        # engine looks again (its word at each drain): past it, a flood of
        # distinct problems is captured lightly from its first record on, not
        # only once the engine has seen the incident fill up.
        self._captured = 0
        self._whole_until = FIRST_ROOM
        self._captured_at_take = 0
        self._wake_pending = False
        self._busy = False  # records arrived recently: the loop polls, producers need not wake it
        self._wake_on_new = False  # the loop waits long: a new problem wakes it (_arm_new_wake)
        self._repeats_swapped = 0  # deques of repeats the loop took: the current one's number
        self._woken_at_mark = -1  # the deque (its number) whose high water mark woke the loop
        self._dropped = 0
        self._late = 0  # records after close, since the last report
        self._late_total = 0
        self._late_first: str | None = None
        self._accepting = True
        # The loop side's, read here: producers wake its loop and never alert
        # from its thread.
        self._thread: threading.Thread | None = None
        self._engine_ident: int | None = None  # the engine's thread's, set by that thread
        self._loop: EngineLoop | None = None
        self._wake_event: asyncio.Event | None = None

    def _start(self) -> None:
        """Start the loop that takes what is queued (the engine core does)."""
        raise NotImplementedError

    # -- any thread -------------------------------------------------------------------

    def submit_record(self, record: logging.LogRecord) -> bool:  # noqa: PLR0912 - one frame: the hot path
        """Take a log record; never blocks, never raises for a well-formed record.

        Returns:
            False when the record was dropped (intake full, engine closed) or
            ignored (a library logger); True otherwise.
        """
        msg = record.msg
        site: Hashable = None
        raw_key: Hashable = None
        if (
            msg.__class__ is str
            and not record.exc_info
            and getattr(record, "alert_group", None) is None
            and getattr(record, "alert_key", None) is None
        ):
            # A plain record. Most have a template and its arguments: their
            # record key decides. Text without arguments is most often
            # formatted before the call (an f-string): its call site is the
            # cheap key, and a shape of text already masked there decides; a
            # text with nothing to mask is known by its record key.
            if not record.args:
                site = (record.name, record.levelno, record.pathname, record.lineno)
        else:
            # An exception, a group or a key of its own: the record key has
            # them; with text formatted before the call, its site is that key
            # without the text.
            raw_key = record_key(record)
            if msg.__class__ is str and not record.args:
                site = record_site(raw_key)
        known: Known | None = None
        if site is not None:
            for first, last, least, middle, pieces, shaped in self._sites.get(site, ()):
                if (
                    len(msg) >= least
                    and (not first or msg.startswith(first))
                    and (not last or msg.endswith(last))
                    # The fixed piece between two variable parts: somewhere in
                    # between, as the least length leaves room for it (the call
                    # site decides, DESIGN section 4; this only tells its shapes apart).
                    and (middle is None or middle in msg)
                    and (pieces is None or shape_matches(msg, pieces))
                ):
                    if shaped.fingerprint is not None:
                        known = shaped
                    break  # else forgotten by the engine: captured again
        if known is None:
            if raw_key is None:  # a plain record's key: what record_key(record) is for it
                raw_key = (record.name, record.levelno, record.pathname, record.lineno, msg)
            known = self._known.get(raw_key)
            if known is None or known.fingerprint is None:
                return self._submit_new_record(record, raw_key, site)
            if known.fingerprint is _IGNORED:
                return False
            if known.wants_text:
                _give_text(known, record)
        elif known.wants_text:
            _give_text(known, msg)
        # A repeat: what _put_repeat does, written out (the hot path saves a call).
        queue = self._repeats
        queued = len(queue)
        if queued >= self._repeats_high_water and not self._make_room(queued):
            return False
        known.last = record.created
        queue.append(known)
        if not self._wake_pending:
            self._raise_wake()
        return True

    def alert(
        self,
        message: str,
        *,
        level: int = logging.ERROR,
        name: str = "alert",
        key: str | None = None,
        details: str | None = None,
        exc: BaseException | None = None,
        group: str = DEFAULT_GROUP,
        source: str = "alert",
        context: Mapping[str, object] | None = None,
    ) -> bool:
        """Raise an alert directly; never blocks, never raises for odd text.

        Args:
            message: what happened, in a sentence.
            level: a :mod:`logging` level; CRITICAL skips the group wait.
            name: who raises it (shown where a logger name would be).
            key: what makes two alerts the same problem (it replaces the
                fingerprint); the message with its numbers masked when omitted.
            details: longer text shown like a traceback.
            exc: an exception whose traceback to include; a log record of the same
                exception (a framework logging what it caught) is not counted again.
            group: the notification group: its own incident, digests and thread.
            source: ``alert``, ``check``, ``job`` or ``crash``.
            context: a mapping shown in the email, secrets masked.

        Returns:
            False when the alert was dropped (intake full or engine closed).
        """
        failure = None
        try:
            fingerprint, alert_level, error, group_name = _direct_identity(
                message, level=level, name=name, key=key, exc=exc, group=group, source=source
            )
        except Exception as exc_:  # noqa: BLE001 - odd input degrades, never raises
            failure = f"<the level, key or group could not be read: {printable_repr(exc_)}>"
            fingerprint, alert_level, error = ("alert-failed", source), logging.ERROR, None
            group_name = DEFAULT_GROUP
        if exc is not None:
            # A framework often logs what its integration reported: not twice.
            with contextlib.suppress(Exception):
                setattr(exc, REPORTED, True)
        now = self._clock()
        known = self._known.get(fingerprint)
        if known is not None and known.fingerprint is not None:
            return self._put_repeat(known, now, message)
        shown = None if details is None else printable(details)
        if failure is not None:
            shown = f"{shown}\n\n{failure}" if shown else failure
        alert = Alert(
            fingerprint=fingerprint,
            level=alert_level,
            logger=printable(name, 500),
            message=printable(message, MESSAGE_MAX_CHARS),
            created=now,
            source=source,
            exc_type=exception_type_name(type(exc)) if exc is not None else None,
            traceback=clip_traceback(shown),
            group=group_name,
            context=scrub_context(context),
        )
        if error is not None:  # formatted on the engine's thread, after the details
            return self._put_new(PendingAlert(alert, error, None, shown), ())
        return self._put_new(alert, ())

    def _submit_new_record(
        self, record: logging.LogRecord, raw_key: Hashable, site: Hashable
    ) -> bool:
        exc_info = record.exc_info
        if (exc_info and getattr(exc_info[1], REPORTED, False)) or getattr(record, REPORTED, False):
            return False  # raised as an alert already (an integration): not twice
        ignored = _IGNORED_NAMES.get(record.name)
        if ignored is None:
            ignored = _ignored_logger(record.name)
        if ignored:
            self._known[raw_key] = _IGNORED_RECORD
            return False
        if threading.get_ident() == self._engine_ident:
            return False  # the engine's own thread: never alert about ourselves
        msg = record.msg
        try:
            fingerprint, inferred, group = record_identity(record)
            known = self._known.get(fingerprint)
            if known is not None and known.fingerprint is not None:
                if inferred and site is not None:
                    self._remember_shape(site, msg, fingerprint[4], known)
                elif not inferred:
                    self._known[raw_key] = known
                return self._put_repeat(known, record.created, record)
            full = self._full_groups
            if full is None or self._captured >= self._whole_until or (full and group in full):
                captured: Alert | PendingAlert | Light = capture_light(record, fingerprint, group)
            else:
                self._captured += 1  # a race between producers loses a count: one more whole
                captured = capture_record(record, fingerprint, group)
        except Exception as error:  # noqa: BLE001 - capture degrades, never raises
            return self._put_new(capture_failed(record, error), ())
        # The record key holds the message itself: a huge one is not kept in
        # the known table (its repeats are fingerprinted again, from a prefix).
        remember = not inferred and not (type(msg) is str and len(msg) > 1_000)
        shape = (site, msg, fingerprint[4]) if inferred and site is not None else None
        return self._put_new(captured, (raw_key,) if remember else (), shape)

    def _remember_shape(self, site: Hashable, text: str, template: object, known: Known) -> None:
        """Remember ``template`` (masked from ``text``) as a shape its call site logs."""
        shapes = self._sites.get(site)
        if shapes is None:
            if len(self._sites) > KNOWN_LIMIT:
                forget_oldest(self._sites)
            shapes = self._sites[site] = []
        elif len(shapes) >= SHAPES_PER_SITE:  # make room: drop what the engine forgot
            shapes[:] = [shape for shape in shapes if shape[5].fingerprint is not None]
        if len(shapes) < SHAPES_PER_SITE and isinstance(template, str):
            pieces = template_shape(template)
            if len(pieces) in {2, 3} and len(text) <= TEMPLATE_MAX_CHARS:
                # One or two variable parts (most f-strings): a fixed start and
                # end, and the piece between them, are compared in C.
                first, last = pieces[0], pieces[-1]
                middle = pieces[1] if len(pieces) == 3 else None
                # A character per variable part: as long as the template.
                shapes.append((first, last, len(template), middle, None, known))
            else:
                shapes.append(("", "", 0, None, pieces, known))

    def _put_repeat(self, known: Known, created: float, text: logging.LogRecord | object) -> bool:
        """Queue a repeat of ``known`` at ``created``.

        Its ``text`` (a record, or the message itself) becomes the problem's
        later sample when the engine asked for one (see :class:`Known`).
        """
        if known.wants_text:
            _give_text(known, text)
        queue = self._repeats
        queued = len(queue)
        if queued >= self._repeats_high_water and not self._make_room(queued):
            return False
        known.last = created
        queue.append(known)
        # Append first, then look at the flag: an idle loop lowers the flag and
        # then looks at the queue again (see _take_queued), so either it sees
        # this item or we see the flag down and wake it. A busy loop polls on
        # its own (waking it per record would cost a system call and a thread
        # switch each time).
        if not self._wake_pending:
            self._raise_wake()
        return True

    def _make_room(self, queued: int) -> bool:
        """Past the repeats' high water mark: wake the loop, once per deque of repeats.

        Returns:
            Whether the repeat may still be queued (else it is dropped, and counted).
        """
        if queued >= self._capacity:
            return self._drop()
        self._starting_up()
        # Once per deque (the loop starts a new one when it takes them): at
        # the mark itself two producers could both pass it unseen.
        # By number, not id(): a deque counted and freed may leave its id to the next.
        marker = self._repeats_swapped
        if self._woken_at_mark != marker:
            self._woken_at_mark = marker
            self._raise_wake()
        return True

    def _raise_wake(self) -> None:
        """Wake the loop, and keep the flag up once a wake reached one.

        Raised only once a wake reached a loop: before the engine's thread
        has made its loop, every producer tries again, or a flood that
        starts with the thread would never wake it.
        """
        self._wake_pending = True
        if not self._wake():
            # No loop yet: the next producer tries again. (Not the wake's
            # result itself: a loop woken may have taken everything and
            # lowered the flag by now, and must stay wakeable.)
            self._wake_pending = False

    def _put_new(
        self,
        captured: Alert | PendingAlert | Light,
        raw_keys: tuple[Hashable, ...],
        shape: tuple[Hashable, str, object] | None = None,
    ) -> bool:
        if self._thread is None:
            self._start()
        if isinstance(captured, tuple):
            fingerprint, message = captured[0], captured[3]
        else:
            alert = captured.alert if isinstance(captured, PendingAlert) else captured
            fingerprint, message = alert.fingerprint, alert.message
        if not self._accepting:
            return self._late_alert(message)
        queue = self._queue
        queued = len(queue)
        if queued >= self._high_water:
            if queued >= self._capacity:
                return self._drop()
            self._starting_up()
        queue.append(captured)
        # Known only once the capture is queued, so no repeat can overtake it.
        table = self._known
        if len(table) > KNOWN_LIMIT:
            forget_oldest(table)  # bounded memory; the forgotten are only re-captured
        known = Known(fingerprint)
        table[fingerprint] = known
        for raw_key in raw_keys:
            table[raw_key] = known
        if shape is not None:
            self._remember_shape(*shape, known)
        # Wake an idle loop, and one that waits long in a flood of repeats
        # (see _arm_new_wake); a busy one polls (many new problems at once
        # must not cost a system call each).
        if not self._wake_pending or queued == self._high_water or self._wake_on_new:
            self._wake_on_new = False
            self._raise_wake()
        return True

    def _forget(self, fingerprints: list[Fingerprint]) -> None:
        """Forget problems whose samples the engine evicted (the engine's thread calls it).

        Their repeats are captured again; every other problem stays known.
        """
        table = self._known
        for fingerprint in fingerprints:
            known = table.pop(fingerprint, None)
            if known is not None:
                known.fingerprint = None

    def _starting_up(self) -> None:
        """Yield to the engine's thread while it starts and the intake fills (a flood at start).

        Until its loop runs, the engine's thread opens the store and pushes
        what it took, while its runner loads on a worker, and drains less
        often: a logging thread that never lets go of the GIL would fill the
        intake and drop what follows. Past the high water mark, and only
        then, each record lets the other threads run for a moment (no lock,
        no I/O: a scheduling point); once the loop runs, the drain keeps up
        on its own.
        """
        if self._loop is None and self._thread is not None:
            time.sleep(0)

    def _drop(self) -> bool:
        with self._lock:
            self._dropped += 1
        return False

    def _late_alert(self, message: str) -> bool:
        """Count an alert that came after close; the first of a burst is said at once."""
        with self._lock:
            self._late += 1
            self._late_total += 1
            first = self._late == 1
            if first:
                self._late_first = message
        if first:
            warn(
                "smtp-alerts: a record was logged after the engine closed and will not be "
                f"sent: {_quoted(message)} (later ones are counted and reported at exit)"
            )
        return False

    def report_late(self) -> None:
        """Say on stderr how many records came after close since the last report.

        Called by the engine's flush and close (``logging.shutdown`` calls
        both at exit), so a burst of late records gets one line with its count.
        """
        with self._lock:
            late, first = self._late, self._late_first
            self._late, self._late_first = 0, None
        if late > 1:
            warn(
                f"smtp-alerts: {late:,} records were logged after the engine closed and "
                f"were not sent; the first: {_quoted(first or '')}"
            )

    @property
    def late_records(self) -> int:
        """Records (and direct alerts) that came after the engine closed, all told."""
        return self._late_total

    def _wake(self) -> bool:
        """Wake the loop; whether it has one to wake (not before its thread made it)."""
        loop, event = self._loop, self._wake_event
        if loop is None or event is None:
            return False
        with contextlib.suppress(RuntimeError):  # the loop closed under us
            loop.call_soon_threadsafe(event.set)
        return True

    # -- the engine's thread ----------------------------------------------------------

    def _take_queued(self) -> tuple[list[Batch], int]:
        """The repeats the loop counts now, and how many new problems it takes.

        The loop's half of the wake handshake. Idle (nothing queued): lower
        the flags so that the next producer wakes the loop, then look again
        (see :meth:`_put_repeat`). Busy: keep them up so that producers do
        not wake it; the loop polls instead. Only what is queued now is
        taken: a flood must not hold the loop.

        The repeats are handed over whole: the intake starts a new deque, and
        the loop counts the old one in C (``deque.count`` for a flood of one
        problem, 2-3 ns a repeat). A producer may still hold it, between
        reading :attr:`_repeats` and appending to it: then the loop counts
        what it holds now, and the rest at its next takes, until no producer
        holds it. The repeats are swapped first and the new problems measured
        after, so a repeat taken is never counted before its problem's capture.
        """
        queue = self._queue
        self._captured_at_take = self._captured
        if not self._repeats and not queue and not self._held:
            self._busy = self._wake_pending = False
            if not self._repeats and not queue:
                return [], 0
        self._busy = self._wake_pending = True
        waiting, self._held = self._held, []
        if self._repeats:
            waiting.append((self._repeats, 0))
            self._repeats = deque()
            self._repeats_swapped += 1
        new = len(queue)
        batches: list[Batch] = []
        while waiting:
            batch, start = waiting.pop()
            # Held by a producer: one reference more than this method's own
            # (under the GIL, after the swap above no producer reads it again).
            free = sys.getrefcount(batch) <= _TAKER_REFERENCES
            stop = len(batch)  # after the look: a free deque no longer grows
            if stop > start:
                batches.append((batch, start, stop, free))
            if not free:
                self._held.append((batch, stop))
        return batches, new

    def _arm_new_wake(self) -> bool:
        """Have the next new problem wake the loop; whether none is queued now.

        Before a long wait in a flood of repeats: their counts keep until the
        next push, but a new problem should not wait for it. Raise the flag,
        then look at the queue: either the loop sees a new problem queued, or
        its producer sees the flag up and wakes the loop (see :meth:`_put_new`).
        """
        self._wake_on_new = True
        return not self._queue

    def _give_room(self, room: int) -> None:
        """Let producers capture ``room`` more new problems whole, from those taken last.

        The engine's word after a drain: how many new problems an incident
        could still keep. Those captured since the drain measured the queue
        count against it, as they are taken next.
        """
        self._whole_until = self._captured_at_take + room

    def _queued(self) -> int:
        """Items queued and not yet taken (any thread; for flushes and tests)."""
        held = sum(len(batch) - counted for batch, counted in self._held)
        return len(self._repeats) + held + len(self._queue)

    def _pop_dropped(self) -> int:
        """The occurrences dropped since the last call."""
        with self._lock:
            dropped, self._dropped = self._dropped, 0
        return dropped


def _direct_identity(
    message: object,
    *,
    level: object,
    name: object,
    key: object,
    exc: BaseException | None,
    group: object,
    source: str,
) -> tuple[Fingerprint, int, Snapshot | None, str]:
    """A direct alert's fingerprint, level, exception snapshot and group, from odd input too."""
    group_name = DEFAULT_GROUP if group is None else printable(group, 200) or DEFAULT_GROUP
    alert_level = int(cast("SupportsInt", level))  # an IntEnum becomes its plain number
    exc_type = exception_type_name(type(exc)) if exc is not None else None
    if key is not None:
        fingerprint = key_fingerprint(printable(key, 500), group_name)
    else:
        template = mask_variable_parts(printable(message, MESSAGE_MAX_CHARS))
        inner = innermost_frame(exc.__traceback__) if exc is not None else None
        fingerprint = (source, printable(name, 500), alert_level, template, exc_type, inner)
        if group_name != DEFAULT_GROUP:
            fingerprint += ("group", group_name)
    error = snapshot(type(exc), exc, exc.__traceback__) if exc is not None else None
    return fingerprint, alert_level, error, group_name


_IGNORED_NAMES: dict[str, bool] = {}


def _ignored_logger(name: str) -> bool:
    """Whether records of the logger ``name`` are ignored (:data:`IGNORED_LOGGERS`), remembered."""
    ignored = name in IGNORED_LOGGERS or name.partition(".")[0] in IGNORED_LOGGERS
    if len(_IGNORED_NAMES) >= KNOWN_LIMIT:
        _IGNORED_NAMES.clear()
    _IGNORED_NAMES[name] = ignored
    return ignored


def _give_text(known: Known, source: logging.LogRecord | object) -> None:
    """Keep a repeat's text as ``known``'s later sample (a record's formatted message)."""
    known.wants_text = False
    if isinstance(source, logging.LogRecord):
        known.text = format_message(source, SAMPLE_TEXT_MAX_CHARS)
    else:
        known.text = printable(source, SAMPLE_TEXT_MAX_CHARS)


def _quoted(message: str) -> str:
    """A message's first line, short, for one line on stderr."""
    first = message.partition("\n")[0]
    return repr(first[:200] + ("..." if len(first) > 200 else ""))
