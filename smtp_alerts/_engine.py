"""The engine: intake in the caller's thread, everything else on its own loop.

An :class:`Engine` is shared by the logging handler, the check and job hooks
and the crash hooks. Callers only ever touch the intake: a deque and a dict,
both safe to use from many threads under the GIL, with no lock on the way of a
repeat. Everything after that (counting, windows, quotas, rendering,
delivery) belongs to one daemon thread per engine running one asyncio loop.

The caller's cost is kept to the minimum DESIGN.md section 2 asks for:

- a repeat of a known problem costs one tuple, one dict lookup and one deque
  append (no formatting, no traceback, no lock, no system call);
- a new problem is captured once (message and traceback formatted while its
  arguments and frames are as they were) and wakes the loop;
- when the intake is full the record is counted as dropped, and the next
  digest says how many: nothing is lost silently.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._aggregator import Aggregator
from ._capture import (
    capture_record,
    exception_type_name,
    format_exception,
    innermost_frame,
    mask_variable_parts,
    record_fingerprint,
    record_key,
)
from ._clock import SYSTEM_CLOCK, Clock
from ._delivery import Delivery
from ._limits import EmailQuota
from ._loop import EngineLoop, WorkerPool
from ._render import RenderContext, render
from .models import Alert, Fingerprint, OutgoingMessage
from .settings import Settings

if TYPE_CHECKING:
    from .transports import Transport

__all__ = ["IGNORED_LOGGERS", "Engine", "EngineStats", "get_engine"]

log = logging.getLogger("smtp_alerts.engine")

#: Loggers whose records never become alerts: ours and those of what we run on,
#: so a failing delivery cannot alert about itself in a loop.
IGNORED_LOGGERS = ("smtp_alerts", "aiosmtplib", "apprise", "asyncio", "urllib3", "mail.log")

_IGNORED: Fingerprint = ("<ignored>",)

#: How often a busy engine takes what producers queued, in seconds.
DRAIN_INTERVAL = 0.02
#: Entries of the caller-side table of known problems (record keys and
#: fingerprints) before it is emptied; repeats of a forgotten problem are
#: captured again, never lost.
KNOWN_LIMIT = 40_000

TokenProvider = Callable[[], "str | Awaitable[str]"]
"""Returns a fresh OAuth2 access token for XOAUTH2, synchronously or as an awaitable."""
_Repeat = tuple[Fingerprint, float]


@dataclass(frozen=True, slots=True)
class EngineStats:
    """A snapshot of what an engine has done.

    Attributes:
        accepted: occurrences taken in by the engine (new problems and repeats).
        dropped: occurrences dropped at intake because it was full.
        digests: digests formed.
        sent: emails a channel accepted.
        failures: failed attempts by error type.
        undelivered: emails waiting for another attempt.
        open_incidents: groups with an open incident.
    """

    accepted: int
    dropped: int
    digests: int
    sent: int
    failures: dict[str, int] = field(default_factory=dict)
    undelivered: int = 0
    open_incidents: int = 0


class Engine:
    """Collects alerts, batches them into digests and delivers them in the background.

    The engine starts its thread on the first alert, so a program that never
    alerts never runs it, and a process that forks before that (a pre-fork
    server) starts its own in each child.

    Args:
        settings: the settings; read from the environment when omitted.
        transport: the channel to send through; SMTP per the settings when omitted.
        clock: the clock for windows and quotas.
        token_provider: for XOAUTH2, a callable returning a fresh access token
            (sync or async); used instead of the password.
        hostname: the name shown in subjects; the machine's when omitted.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        transport: Transport | None = None,
        clock: Clock = SYSTEM_CLOCK,
        token_provider: TokenProvider | None = None,
        hostname: str | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        self._clock = clock
        self._transport = transport
        self._token_provider = token_provider
        self._render_context = RenderContext.from_settings(self.settings, hostname=hostname)
        self._capacity = self.settings.queue_size
        # Past this many queued records a producer wakes the loop early, so the
        # intake drains long before it is full even between two polls.
        self._high_water = max(1, self._capacity // 8)
        self._reset()
        _ENGINES.add(self)

    def _reset(self) -> None:
        """(Re)create all per-process state: at construction and in a forked child."""
        settings = self.settings
        self._lock = threading.Lock()
        self._queue: deque[_Repeat | Alert] = deque()
        self._known: dict[Hashable, Fingerprint] = {}
        self._wake_pending = False
        self._busy = False  # records arrived recently: the loop polls, producers need not wake it
        self._dropped = 0
        self._accepting = True
        self._closing = False
        self._thread: threading.Thread | None = None
        self._loop: EngineLoop | None = None
        self._wake_event: asyncio.Event | None = None
        self._flush_requests: list[concurrent.futures.Future[bool]] = []
        self._run_task: asyncio.Task[None] | None = None
        self._transport_ready: asyncio.Future[Transport] | None = None
        self._aggregator = Aggregator(
            group_wait=settings.group_wait,
            group_interval=settings.group_interval,
            repeat_interval=settings.repeat_interval,
            clock=self._clock,
        )
        self._quota = EmailQuota(
            per_hour=settings.max_per_hour, per_day=settings.max_per_day, clock=self._clock
        )
        self._delivery: Delivery | None = None
        self._accepted = 0
        self._dropped_total = 0
        self._digests = 0
        self._last_ok = True

    def __repr__(self) -> str:
        state = "closed" if not self._accepting else "running" if self._thread else "idle"
        return f"<Engine {self.settings.host}:{self.settings.port} {state}>"

    # -- intake: any thread ---------------------------------------------------------

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
        # then looks at the queue again, so either it sees this item or we see
        # the flag down and wake it. A busy loop polls on its own (waking it per
        # record would cost a system call and a thread switch each time).
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

    # -- lifecycle: any thread ------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or not self._accepting:
                return
            thread = threading.Thread(target=self._main, name="smtp-alerts-engine", daemon=True)
            try:
                self._loop = EngineLoop(WorkerPool())
                self._wake_event = asyncio.Event()
                self._thread = thread
                thread.start()
            except RuntimeError as exc:
                # Python 3.12+ starts no thread once the interpreter is shutting
                # down: an engine whose first alert comes that late cannot send it.
                self._accepting = False
                self._thread = None
                _warn(f"smtp-alerts: cannot start ({exc}); the alert is dropped")

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything accepted so far now, ignoring the windows.

        Args:
            timeout: the most seconds to wait; None waits until every attempt
                has ended (each bounded by ``TIMEOUT``).

        Returns:
            Whether everything accepted so far was delivered.
        """
        if self._thread is None:
            return True
        if self._closing:
            # Closing already waits, bounded by SHUTDOWN_TIMEOUT; a flush after
            # it (logging's shutdown calls one) must not wait again, unbounded.
            return not self._thread.is_alive() and self._last_ok
        if threading.current_thread() is self._thread:
            return False
        request: concurrent.futures.Future[bool] = concurrent.futures.Future()
        with self._lock:
            self._flush_requests.append(request)
        self._wake()
        try:
            return request.result(timeout)
        except (concurrent.futures.TimeoutError, TimeoutError):
            return False

    def close(self, timeout: float | None = None) -> bool:
        """Deliver what is pending and stop; safe to call twice and from any thread.

        Args:
            timeout: the most seconds to wait; ``SHUTDOWN_TIMEOUT`` when omitted.

        Returns:
            Whether everything accepted was delivered.
        """
        if timeout is None:
            timeout = self.settings.shutdown_timeout
        with self._lock:
            self._accepting = False
            self._closing = True
            thread = self._thread
        # Repeats go through the known table; emptying it routes them to the
        # closed check, so nothing is queued after the last drain.
        self._known.clear()
        if thread is None:
            return True
        if threading.current_thread() is self._thread:
            return False
        self._arm_deadline(timeout)
        self._wake()
        thread.join(timeout)
        if thread.is_alive():
            _warn(f"smtp-alerts: gave up waiting after {timeout:g} s; undelivered alerts are lost")
            return False
        return self._last_ok

    def _arm_deadline(self, timeout: float) -> None:
        """Have the loop itself stop at the deadline, not only the caller stop waiting."""

        def cancel_until_done() -> None:
            # Again and again: before Python 3.12, asyncio.wait_for (which
            # aiosmtplib awaits every reply with) can swallow a cancellation.
            task = self._run_task
            if task is not None and not task.done():
                task.cancel()
                task.get_loop().call_later(0.05, cancel_until_done)

        def arm() -> None:
            task = self._run_task
            if task is not None and not task.done():
                task.get_loop().call_later(timeout, cancel_until_done)

        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed under us
                loop.call_soon_threadsafe(arm)

    def stats(self) -> EngineStats:
        """A snapshot of the engine's counters."""
        delivery = self._delivery
        return EngineStats(
            accepted=self._accepted,
            dropped=self._dropped_total + self._dropped,
            digests=self._digests,
            sent=delivery.sent if delivery else 0,
            failures=dict(delivery.failures) if delivery else {},
            undelivered=delivery.pending if delivery else 0,
            open_incidents=self._aggregator.stats.open_incidents,
        )

    # -- the engine's own thread ----------------------------------------------------

    def _main(self) -> None:
        loop = self._loop
        assert loop is not None  # set by _start  # noqa: S101
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._run())
        except Exception as exc:
            log.exception("the smtp-alerts engine stopped")
            _warn(f"smtp-alerts: the engine stopped and will send nothing more: {exc!r}")
            self._last_ok = False
        finally:
            with self._lock:
                self._accepting = False
            self._fail_flush_requests()
            _finish(loop)

    async def _run(self) -> None:
        event = self._wake_event
        assert event is not None  # set by _start  # noqa: S101
        self._run_task = asyncio.current_task()
        if self._transport is None:
            # Building the SMTP transport imports aiosmtplib and loads the CA
            # store: ~100 ms during which a flood would fill the intake if this
            # loop could not drain it. So it is built on a worker thread.
            loop = asyncio.get_running_loop()
            self._transport_ready = loop.run_in_executor(None, self._smtp_transport)
        try:
            await self._serve(event)
        except asyncio.CancelledError:
            # The close deadline passed (see _arm_deadline): say what is lost, stop.
            self._last_ok = False
            self._report_undelivered()
        finally:
            if self._delivery is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(self._delivery.transport.aclose(), 1.0)

    async def _get_delivery(self) -> Delivery:
        if self._delivery is None:
            if self._transport is not None:
                transport = self._transport
            else:
                assert self._transport_ready is not None  # set by _run  # noqa: S101
                transport = await self._transport_ready
            self._delivery = Delivery(transport, clock=self._clock, deadline=self.settings.timeout)
        return self._delivery

    async def _serve(self, event: asyncio.Event) -> None:
        while True:
            timeout = self._seconds_to_next()
            if not event.is_set() and (timeout is None or timeout > 0):
                with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout)
            event.clear()
            with self._lock:
                requests, self._flush_requests = self._flush_requests, []
                closing = self._closing
            self._drain()
            force = closing or bool(requests)
            ok = await self._dispatch(force=force)
            self._last_ok = ok
            for request in requests:
                if not request.done():
                    request.set_result(ok)
            if closing:
                self._drain()  # what raced in while we were sending
                if self._aggregator.pending_groups():
                    self._last_ok = await self._dispatch(force=True)
                self._report_undelivered()
                return

    def _smtp_transport(self) -> Transport:
        from .transports.smtp import SMTPTransport  # noqa: PLC0415 - aiosmtplib loads with the engine

        return SMTPTransport.from_settings(self.settings, token_provider=self._token_provider)

    def _seconds_to_next(self) -> float | None:
        candidates = [self._clock() + DRAIN_INTERVAL] if self._busy else []
        due = self._aggregator.next_due()
        if due is not None:
            candidates.append(max(due, self._quota.available_at()))
        if self._delivery is not None and self._delivery.next_retry_at is not None:
            candidates.append(self._delivery.next_retry_at)
        if not candidates:
            return None
        return max(0.0, min(candidates) - self._clock())

    def _drain(self) -> None:
        queue, aggregator = self._queue, self._aggregator
        if not queue:
            # Idle: lower the flag, then look again (see _put_repeat).
            self._busy = self._wake_pending = False
            if not queue:
                self._take_dropped(0)
                return
        # Busy: keep the flag up so producers do not wake us; poll instead.
        self._busy = self._wake_pending = True
        # Repeats carry the canonical fingerprint object from the known table,
        # so its id is a cheap key (a tuple's hash is computed anew every time).
        repeats: dict[int, list[Any]] = {}
        taken = 0
        # Only what is there now: a flood must not keep the loop here forever.
        for _ in range(len(queue)):
            item = queue.popleft()
            taken += 1
            if isinstance(item, Alert):
                aggregator.add(item)
                continue
            counted = repeats.get(id(item[0]))
            if counted is None:
                repeats[id(item[0])] = [item[0], 1, item[1]]
            else:
                counted[1] += 1
                counted[2] = item[1]
        lost = 0
        for fingerprint, count, last in repeats.values():
            if not aggregator.count(fingerprint, last, count):
                lost += count  # its sample was evicted: shown as dropped, not lost
        self._accepted += taken - lost
        self._take_dropped(lost)
        if aggregator.pop_evicted():
            self._known.clear()  # re-capture the evicted on their next occurrence

    def _take_dropped(self, lost: int) -> None:
        with self._lock:
            dropped, self._dropped = self._dropped + lost, 0
        if dropped:
            self._dropped_total += dropped
            self._aggregator.note_dropped(dropped)

    async def _dispatch(self, *, force: bool) -> bool:
        aggregator = self._aggregator
        if self._delivery is None and not aggregator.pending_groups():
            return True  # nothing to send yet; the transport may still be loading
        delivery = await self._get_delivery()
        due = set(aggregator.due())
        groups = aggregator.pending_groups() if force else sorted(due)
        messages: list[OutgoingMessage] = []
        held_back = False
        for group in groups:
            grant = self._quota.try_acquire()
            if grant is None:
                held_back = True
                break
            notices = []
            if grant.delayed_since is not None:
                notices.append(self._quota.delayed_notice(grant))
            if grant.last:
                notices.append(self._quota.notice(grant))
            digest = aggregator.form(
                group, reason=None if group in due else "flush", notices=tuple(notices)
            )
            if digest is None:
                continue
            self._digests += 1
            message = render(digest, self._render_context)
            if digest.sequence == 1:
                aggregator.set_thread_subject(digest.incident_id, message.title)
            messages.append(message)
        # Earlier failures first, and never a second try within one round.
        retried = await delivery.retry(force=force)
        ok = await delivery.deliver(messages) if messages else True
        return ok and retried and not held_back

    def _fail_flush_requests(self) -> None:
        with self._lock:
            requests, self._flush_requests = self._flush_requests, []
        for request in requests:
            if not request.done():
                request.set_result(False)

    def _report_undelivered(self) -> None:
        delivery = self._delivery
        lines = []
        if delivery is not None:
            if delivery.in_flight is not None:
                lines.append(f"  {delivery.in_flight.title}: still being sent at the deadline")
            lines += [f"  {m.title}: {error}" for m, error in delivery.undelivered()]
        events = self._aggregator.stats.pending
        if events:
            lines.append(f"  {events:,} events not yet in any email (email quota or deadline)")
        if lines:
            _warn("smtp-alerts: alerts not delivered at exit:\n" + "\n".join(lines))


def _finish(loop: EngineLoop) -> None:
    """Wind the loop down as ``asyncio.run`` does, then close it.

    asyncio closes a socket in a callback on the loop's next turn; stopping the
    loop right after a connection's close would leave the socket open.
    """
    try:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        for _ in range(3):  # connection_lost, then the TLS transport's own close
            loop.run_until_complete(asyncio.sleep(0))
        loop.run_until_complete(loop.shutdown_asyncgens())
    except Exception:
        log.debug("winding down the engine loop failed", exc_info=True)
    finally:
        loop.close()


def _warn(text: str) -> None:
    # stderr, not logging: at exit, logging may already be shut down, and our
    # own loggers never reach the alert handler anyway.
    with contextlib.suppress(Exception):
        print(text, file=sys.stderr, flush=True)


# -- process-wide: the default engine, forks and exit --------------------------------

_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()
_default_engine: Engine | None = None
_default_lock = threading.Lock()


def get_engine() -> Engine:
    """The process's default engine, built from the environment on first use.

    The handler (with no settings overrides), the check and job hooks and the
    crash hooks share it.

    Raises:
        ConfigurationError: the ``SMTP_ALERTS_*`` settings are missing or wrong.
    """
    global _default_engine  # noqa: PLW0603 - one default engine per process, like logging's root
    with _default_lock:
        if _default_engine is None or not _default_engine._accepting:  # noqa: SLF001
            _default_engine = Engine()
        return _default_engine


def swap_default_engine(engine: Engine | None) -> Engine | None:
    """Make ``engine`` the default engine; return the previous one (for testing helpers)."""
    global _default_engine
    with _default_lock:
        previous, _default_engine = _default_engine, engine
        return previous


def _after_fork_in_child() -> None:
    global _default_lock  # noqa: PLW0603 - a lock held at fork time stays held in the child
    _default_lock = threading.Lock()
    for engine in list(_ENGINES):
        engine._reset()  # noqa: SLF001


def _close_all_at_exit() -> None:
    engines = [engine for engine in list(_ENGINES) if engine._thread is not None]  # noqa: SLF001
    for engine in engines:
        with engine._lock:  # noqa: SLF001
            engine._accepting = False  # noqa: SLF001
            engine._closing = True  # noqa: SLF001
        engine._wake()  # noqa: SLF001
    # Close them side by side: the exit waits for the slowest, not for the sum.
    started = time.monotonic()
    for engine in engines:
        remaining = engine.settings.shutdown_timeout - (time.monotonic() - started)
        engine.close(max(0.0, remaining))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all_at_exit)
