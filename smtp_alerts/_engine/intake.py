"""The intake: where alerts enter an engine, from any thread, without waiting.

Callers only ever touch the intake: a deque and a dict, both safe to use from
many threads under the GIL, with no lock on the way of a repeat. Everything
after it belongs to the engine's own thread (:mod:`smtp_alerts._engine.core`),
which takes what is queued.

The caller's cost is kept to the minimum docs/architecture.md ("Caller's cost") asks for:

- a repeat of a known problem costs one tuple, one dict lookup and one deque
  append (no formatting, no traceback, no lock, no system call);
- a new problem is captured once (message and traceback formatted while its
  arguments and frames are as they were) and wakes the loop;
- when the intake is full the record is counted as dropped, and the next
  digest says how many: nothing is lost silently.

This is the hot path (``AlertHandler.handle`` costs about as much as
``logging.NullHandler``): the intake is a base class of the engine, not an
object it holds, so a record costs no extra call or attribute hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Hashable

from .._util.clock import Clock
from ..models import Alert, Fingerprint
from .capture import (
    capture_record,
    exception_type_name,
    format_exception,
    innermost_frame,
    mask_variable_parts,
    record_fingerprint,
    record_key,
)
from .loop import EngineLoop

__all__ = ["IGNORED_LOGGERS", "KNOWN_LIMIT", "Intake", "Repeat"]

#: Loggers whose records never become alerts: ours and those of what we run on,
#: so a failing delivery cannot alert about itself in a loop.
IGNORED_LOGGERS = ("smtp_alerts", "aiosmtplib", "apprise", "asyncio", "urllib3", "mail.log")

_IGNORED: Fingerprint = ("<ignored>",)

#: Entries of the caller-side table of known problems (record keys and
#: fingerprints) before it is emptied; repeats of a forgotten problem are
#: captured again, never lost.
KNOWN_LIMIT = 40_000

Repeat = tuple[Fingerprint, float]
"""A queued repeat of a known problem: its canonical fingerprint and when it happened."""


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
        self._reset_intake()

    def _reset_intake(self) -> None:
        """(Re)create the intake's state: at construction and in a forked child."""
        self._lock = threading.Lock()
        self._queue: deque[Repeat | Alert] = deque()
        self._known: dict[Hashable, Fingerprint] = {}
        self._wake_pending = False
        self._busy = False  # records arrived recently: the loop polls, producers need not wake it
        self._dropped = 0
        self._accepting = True
        # The loop side's, read here: producers wake its loop and never alert
        # from its thread.
        self._thread: threading.Thread | None = None
        self._loop: EngineLoop | None = None
        self._wake_event: asyncio.Event | None = None

    def _start(self) -> None:
        """Start the loop that takes what is queued (the engine core does)."""
        raise NotImplementedError

    # -- any thread -------------------------------------------------------------------

    def submit_record(self, record: logging.LogRecord) -> bool:
        """Take a log record; never blocks, never raises for a well-formed record.

        Returns:
            False when the record was dropped (intake full, engine closed) or
            ignored (a library logger); True otherwise.
        """
        raw_key = record_key(record)
        fingerprint = self._known.get(raw_key)
        if fingerprint is not None:
            if fingerprint is _IGNORED:
                return False
            return self._put_repeat(fingerprint, record.created)
        return self._submit_new_record(record, raw_key)

    def alert(
        self,
        message: str,
        *,
        level: int = logging.ERROR,
        name: str = "alert",
        key: str | None = None,
        details: str | None = None,
        exc: BaseException | None = None,
        group: str = "default",
        source: str = "alert",
    ) -> bool:
        """Raise an alert directly; never blocks.

        Args:
            message: what happened, in a sentence.
            level: a :mod:`logging` level; CRITICAL skips the group wait.
            name: who raises it (shown where a logger name would be).
            key: what makes two alerts the same problem; the message with its
                numbers masked when omitted.
            details: longer text shown like a traceback.
            exc: an exception whose traceback to include.
            group: the notification group.
            source: ``alert``, ``check``, ``job`` or ``crash``.

        Returns:
            False when the alert was dropped (intake full or engine closed).
        """
        template = key if key is not None else mask_variable_parts(message)
        exc_type = exception_type_name(type(exc)) if exc is not None else None
        inner = innermost_frame(exc.__traceback__) if exc is not None else None
        fingerprint: Fingerprint = (source, name, level, template, exc_type, inner)
        now = self._clock()
        if fingerprint in self._known:
            return self._put_repeat(fingerprint, now)
        text = details
        if exc is not None:
            formatted = format_exception(type(exc), exc, exc.__traceback__)
            text = f"{details}\n\n{formatted}" if details else formatted
        alert = Alert(
            fingerprint=fingerprint,
            level=level,
            logger=name,
            message=message,
            created=now,
            source=source,
            exc_type=exc_type,
            traceback=text,
            group=group,
        )
        return self._put_new(alert, ())

    def _submit_new_record(self, record: logging.LogRecord, raw_key: Hashable) -> bool:
        if record.name.startswith(IGNORED_LOGGERS) and (
            record.name in IGNORED_LOGGERS or record.name.partition(".")[0] in IGNORED_LOGGERS
        ):
            self._known[raw_key] = _IGNORED
            return False
        if threading.current_thread() is self._thread:
            return False  # the engine's own thread: never alert about ourselves
        fingerprint, inferred = record_fingerprint(record)
        if fingerprint in self._known:
            if not inferred:
                self._known[raw_key] = fingerprint
            return self._put_repeat(fingerprint, record.created)
        group = getattr(record, "alert_group", "default")
        alert = capture_record(record, fingerprint, group=str(group))
        return self._put_new(alert, () if inferred else (raw_key,))

    def _put_repeat(self, fingerprint: Fingerprint, created: float) -> bool:
        queue = self._queue
        queued = len(queue)
        if queued >= self._capacity:
            return self._drop()
        queue.append((fingerprint, created))
        # Append first, then look at the flag: an idle loop lowers the flag and
        # then looks at the queue again (see _take_queued), so either it sees
        # this item or we see the flag down and wake it. A busy loop polls on
        # its own (waking it per record would cost a system call and a thread
        # switch each time).
        if not self._wake_pending or queued == self._high_water:
            self._wake_pending = True
            self._wake()
        return True

    def _put_new(self, alert: Alert, raw_keys: tuple[Hashable, ...]) -> bool:
        if self._thread is None:
            self._start()
        if not self._accepting:
            return self._drop()
        queue = self._queue
        if len(queue) >= self._capacity:
            return self._drop()
        queue.append(alert)
        # Known only once the capture is queued, so no repeat can overtake it.
        known = self._known
        if len(known) > KNOWN_LIMIT:
            known.clear()  # bounded memory; what is dropped from it is only re-captured
        known[alert.fingerprint] = alert.fingerprint
        for raw_key in raw_keys:
            known[raw_key] = alert.fingerprint
        self._wake_pending = True
        self._wake()
        return True

    def _drop(self) -> bool:
        with self._lock:
            self._dropped += 1
        return False

    def _wake(self) -> None:
        loop, event = self._loop, self._wake_event
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed under us
                loop.call_soon_threadsafe(event.set)

    # -- the engine's thread ----------------------------------------------------------

    def _take_queued(self) -> int:
        """How many queued items the loop takes now: its half of the wake handshake.

        Idle (nothing queued): lower the flags so that the next producer
        wakes the loop, then look again (see :meth:`_put_repeat`). Busy: keep
        them up so that producers do not wake it; the loop polls instead.
        Only what is queued now is taken: a flood must not hold the loop.
        """
        queue = self._queue
        if not queue:
            self._busy = self._wake_pending = False
            if not queue:
                return 0
        self._busy = self._wake_pending = True
        return len(queue)

    def _pop_dropped(self) -> int:
        """The occurrences dropped since the last call."""
        with self._lock:
            dropped, self._dropped = self._dropped, 0
        return dropped
