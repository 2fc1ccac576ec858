"""The engine core: its lifecycle, and its own thread that turns the intake into emails.

:class:`EngineCore` is the :class:`~smtp_alerts._engine.intake.Intake` (what
callers touch, from any thread) plus everything after it, which belongs to
one daemon thread per engine running one asyncio loop: taking what is
queued into the aggregator, forming digests when their windows are due,
within the quotas, and delivering them each round (the spool first, then
the fallback chain), with the auth watcher's probes and meta-alerts in
between (:mod:`smtp_alerts._engine.logins`).

The core knows none of its front-ends: jobs, heartbeats and checks use the
:class:`~smtp_alerts._engine.sink.AlertSink` it offers, and keep their
per-engine state in its extensions. The public :class:`~smtp_alerts.Engine`
adds them on top.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .._delivery.chain import ChannelStats
from .._delivery.channels import prepare_channels
from .._delivery.rounds import Delivery, SpoolLike
from .._delivery.spool import Spool
from .._store import IncidentStore, SqliteStore, Windows
from .._store.failover import FailoverStore
from .._store.silences import SilenceBook, SqliteSilences
from .._util.clock import SYSTEM_CLOCK, Clock
from .._util.stderr import warn
from ..models import OutgoingMessage
from ..settings import Settings
from . import process
from .aggregator import Aggregator
from .capture import Light, PendingAlert
from .intake import Intake
from .limits import EmailQuota
from .logins import LoginWatcher, MetaHook
from .loop import EngineLoop, WorkerPool
from .outbox import Rerender, build_delivery, spool_has_entries
from .render import RenderContext, render
from .shared import StoreLink, StoreUnavailableError
from .silencing import Silencer

if TYPE_CHECKING:
    from ..transports import Transport
    from ..transports.xoauth2 import TokenProvider
    from .sink import AlertSink, EngineExtension

__all__ = ["DRAIN_INTERVAL", "EngineCore", "EngineStats", "MetaHook"]

log = logging.getLogger("smtp_alerts.engine")

#: How often a busy engine takes what producers queued, in seconds.
DRAIN_INTERVAL = 0.02
#: The longest a count stays in this process only before it is pushed to the store.
PUSH_INTERVAL = 0.25
#: How often an idle engine looks at the store for windows its siblings opened.
STORE_POLL = 1.0

T = TypeVar("T")
E = TypeVar("E", bound="EngineExtension")


@dataclass(frozen=True, slots=True)
class EngineStats:
    """A snapshot of what an engine has done.

    Attributes:
        accepted: occurrences taken in by the engine (new problems and repeats).
        dropped: occurrences dropped at intake because it was full.
        digests: digests formed.
        sent: emails a channel accepted.
        failures: failed attempts by error type.
        undelivered: digests waiting in the spool for another attempt.
        open_incidents: groups with an open incident.
        suppressed: occurrences counted into an existing problem (duplicates).
        channels: per channel: emails taken, failures by type, breaker state.
        meta_alerts: meta-alerts raised (a login stopped working, or works again).
        resting_logins: logins refused repeatedly and not used until a probe succeeds.
        late: records and alerts that came after the engine closed (not sent; stderr said so).
    """

    accepted: int
    dropped: int
    digests: int
    sent: int
    failures: dict[str, int] = field(default_factory=dict)
    undelivered: int = 0
    open_incidents: int = 0
    suppressed: int = 0
    channels: dict[str, ChannelStats] = field(default_factory=dict)
    meta_alerts: int = 0
    resting_logins: tuple[str, ...] = ()
    late: int = 0


class EngineCore(Intake):
    """Collects alerts, batches them into digests and delivers them in the background.

    The engine without its front-ends: :class:`smtp_alerts.Engine` adds jobs,
    heartbeats and checks on top, and is what users and front-ends get.

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
        spool: keep undelivered digests in ``SPOOL_DIR`` (on disk, across
            restarts); False keeps them in memory only.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        transport: Transport | None = None,
        clock: Clock = SYSTEM_CLOCK,
        token_provider: TokenProvider | None = None,
        hostname: str | None = None,
        spool: bool = True,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        if token_provider is not None:
            self.settings.check_token_provider()  # no token in clear text: refuse now
        super().__init__(capacity=self.settings.queue_size, clock=clock)
        self._transport = transport
        self._use_spool = spool
        self._token_provider = token_provider
        self._render_context = RenderContext.from_settings(self.settings, hostname=hostname)
        self._rerender = Rerender(self._render_context, clock)
        self._meta_hooks: list[MetaHook] = []
        # Kept across a fork: a child's heartbeat monitor keeps its registrations.
        self._extensions: dict[Callable[[AlertSink], EngineExtension], EngineExtension] = {}
        self._extensions_lock = threading.RLock()
        self._reset_loop_side()
        process.register(self)
        if spool and spool_has_entries(self.settings.spool_path):
            self.start()  # an earlier process left digests: send them without waiting
        elif spool and self.settings.redis_url is not None:
            self.start()  # a fleet member: it claims what dead members left in Redis

    def _reset_loop_side(self) -> None:
        """(Re)create what the loop owns: at construction and in a forked child."""
        settings = self.settings
        self._closing = False
        self._finish_by: float | None = None
        self._flush_requests: list[concurrent.futures.Future[bool]] = []
        self._run_task: asyncio.Task[None] | None = None
        self._dispatch_event: asyncio.Event | None = None
        self._ready: asyncio.Future[Delivery] | None = None
        self._started_at = self._clock()
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
        self._link: StoreLink | None = None
        self._logins = LoginWatcher(
            settings, clock=self._clock, context=self._render_context, hooks=self._meta_hooks
        )
        self._accepted = 0
        self._took_new = False  # the last drains took a new problem, not only repeats
        self._suppressed = 0
        self._dropped_total = 0
        self._digests = 0
        self._last_ok = True
        self._extensions_closed = False

    def __repr__(self) -> str:
        state = "closed" if not self._accepting else "running" if self._thread else "idle"
        return f"<{type(self).__name__} {self.settings.host}:{self.settings.port} {state}>"

    # -- lifecycle: any thread ------------------------------------------------------

    @property
    def clock(self) -> Clock:
        """The engine's clock (for front-ends that keep their own windows)."""
        return self._clock

    @property
    def started(self) -> bool:
        """Whether the engine's thread was started (in this process)."""
        return self._thread is not None

    @property
    def closed(self) -> bool:
        """Whether the engine takes no more alerts (it was closed, or its thread ended)."""
        return not self._accepting

    def start(self) -> None:
        """Start the background thread now (otherwise it starts on the first alert)."""
        self._start()

    def _start(self) -> None:
        with self._lock:  # re-entrant: a signal handler may log while we start
            if self._thread is not None or self._starting or not self._accepting:
                return
            self._starting = True
            thread = threading.Thread(target=self._main, name="smtp-alerts-engine", daemon=True)
            try:
                if self._transport is None:
                    prepare_channels(self.settings)  # in this thread: shutdown may begin any time
                if self.settings.redis_url is not None:
                    _prepare_redis()  # the same reason
                self._loop = EngineLoop(WorkerPool())
                self._wake_event = asyncio.Event()
                self._thread = thread
                thread.start()
                if self._queue:
                    self._wake()  # what a signal handler queued while we started
            except RuntimeError as exc:
                # Python 3.12+ starts no thread once the interpreter is shutting
                # down: an engine whose first alert comes that late cannot send it.
                self._accepting = False
                self._thread = None
                warn(f"smtp-alerts: cannot start ({exc}); the alert is dropped")
            finally:
                self._starting = False

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything accepted so far now, ignoring the windows.

        Args:
            timeout: the most seconds to wait; None waits until every attempt
                has ended (each bounded by ``TIMEOUT``).

        Returns:
            Whether everything accepted so far was delivered.
        """
        self.report_late()
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

    def begin_close(self) -> None:
        """Stop taking alerts and have the loop deliver what is pending and stop.

        Returns at once; :meth:`close` waits. The exit hook begins closing
        every engine before it waits for any, so they close side by side.
        """
        self._stop_accepting()
        self._wake()

    def close(self, timeout: float | None = None) -> bool:
        """Deliver what is pending and stop; safe to call twice and from any thread.

        Then the engine's extensions are closed (see
        :class:`~smtp_alerts._engine.sink.EngineExtension`), also when the
        wait ran out.

        Args:
            timeout: the most seconds to wait; ``SHUTDOWN_TIMEOUT`` when omitted.

        Returns:
            Whether everything accepted was delivered.
        """
        if timeout is None:
            timeout = self.settings.shutdown_timeout
        thread = self._stop_accepting()
        self._finish_by = min(self._finish_by or math.inf, time.monotonic() + timeout)
        self.report_late()
        try:
            if thread is None:
                return True
            if threading.current_thread() is thread:
                return False
            self._arm_deadline(timeout)
            self._wake()
            thread.join(timeout)
            if thread.is_alive():
                warn(
                    f"smtp-alerts: stopped waiting for delivery after {timeout:g} s "
                    "(SHUTDOWN_TIMEOUT)"
                )
                return False
            return self._last_ok
        finally:
            self._close_extensions()

    def _stop_accepting(self) -> threading.Thread | None:
        with self._lock:
            self._accepting = False
            self._closing = True
            thread = self._thread
            if self._finish_by is None:  # the channels share what is left of it
                self._finish_by = time.monotonic() + self.settings.shutdown_timeout
        # Repeats go through the known tables; emptying them routes them to
        # the closed check, so nothing is queued after the last drain.
        self._known.clear()
        self._sites.clear()
        return thread

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

    def after_fork(self) -> None:
        """Start afresh in a forked child; the process's fork hook calls it.

        The parent's thread and loop do not exist in the child: the intake
        and the loop side are made anew (the child's first alert starts its
        own thread), then every extension forgets the parent's locks and tasks.
        """
        self._reset_intake()
        self._reset_loop_side()
        self._extensions_lock = threading.RLock()
        for extension in list(self._extensions.values()):
            _quietly(extension.after_fork, "resetting %r in a forked child failed", extension)

    # -- what front-ends use (the AlertSink) ------------------------------------------

    def run_coroutine(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coroutine`` on the engine's loop (starting the engine if needed).

        For the front-ends that work on the loop (check runners, heartbeat
        watchers): the coroutine is cancelled when the engine closes.

        Returns:
            A future for its result, usable from any thread.

        Raises:
            RuntimeError: the engine is closed or could not start.
        """
        if self._thread is None:
            self._start()
        loop = self._loop
        if loop is None or not self._accepting:
            coroutine.close()
            raise RuntimeError("the smtp-alerts engine is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, loop)

    def extension(self, factory: Callable[[AlertSink], E]) -> E:
        """The engine's one ``factory(engine)``, made on first use (see ``AlertSink``).

        Args:
            factory: makes the extension from the engine; also its key.

        Returns:
            The extension: closed with the engine, reset in a forked child.
        """
        with self._extensions_lock:
            extension = self._extensions.get(factory)
            if extension is None:
                extension = self._extensions[factory] = factory(self)
        return cast("E", extension)  # keyed by its factory, so made by it

    def _close_extensions(self) -> None:
        with self._extensions_lock:
            if self._extensions_closed:
                return
            self._extensions_closed = True
            extensions = list(self._extensions.values())
        for extension in reversed(extensions):  # a later one may use an earlier one
            _quietly(extension.close, "closing %r failed", extension)

    def on_meta_alert(self, hook: MetaHook) -> MetaHook:
        """Call ``hook`` with every meta-alert and recovery notice; usable as a decorator.

        The hook runs in a worker thread (an ``async def`` hook on the engine's
        loop), bounded by ``TIMEOUT``; what it raises is logged, never
        propagated. Meta-alerts say that a login stopped working (what is
        wrong, what to do) or works again: see :class:`MetaAlert`.

        Returns:
            ``hook``, unchanged.
        """
        self._meta_hooks.append(hook)
        return hook

    def stats(self) -> EngineStats:
        """A snapshot of the engine's counters."""
        delivery = self._delivery
        return EngineStats(
            accepted=self._accepted,
            dropped=self._dropped_total + self._dropped,
            digests=self._digests,
            sent=delivery.sent if delivery else 0,
            failures=_failures(delivery),
            undelivered=delivery.pending if delivery else 0,
            channels=delivery.chain.stats() if delivery is not None else {},
            open_incidents=self._aggregator.stats.open_incidents,
            suppressed=self._suppressed,
            meta_alerts=self._logins.raised,
            resting_logins=self._logins.resting(),
            late=self.late_records,
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
            warn(f"smtp-alerts: the engine stopped and will send nothing more: {exc!r}")
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
        # Building the channels imports aiosmtplib and loads the CA store, and
        # opening the spool touches the disk: ~100 ms during which a flood would
        # fill the intake if this loop could not drain it. So it happens on a
        # worker thread, and digests an earlier process left are sent first.
        loop = asyncio.get_running_loop()
        dispatch = self._dispatch_event = asyncio.Event()
        self._ready = loop.run_in_executor(None, self._build_delivery)
        self._ready.add_done_callback(lambda _: dispatch.set())
        # Two tasks: the intake is drained whatever the dispatcher is waiting
        # for; a send that takes seconds must not let a flood overflow it.
        drainer = loop.create_task(self._drain_forever(event, dispatch))
        try:
            await self._serve(dispatch)
        except asyncio.CancelledError:
            # The close deadline passed (see _arm_deadline): say what is lost, stop.
            self._last_ok = False
            self._report_undelivered()
        finally:
            drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drainer
            if self._delivery is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(self._delivery.chain.aclose(), 1.0)
                self._delivery.close()

    def _build_delivery(self) -> Delivery:
        """The chain and the spool; runs on a worker thread (see _run)."""
        return build_delivery(
            self.settings,
            transport=self._transport,
            token_provider=self._token_provider,
            clock=self._clock,
            started=self._started_at,
            gate=self._logins.watch,
            rerender=self._rerender,
            use_spool=self._use_spool,
            on_spool=self._open_store,
        )

    async def _get_delivery(self) -> Delivery:
        if self._delivery is None:
            assert self._ready is not None  # set by _run  # noqa: S101
            self._delivery = await self._ready
            self._delivery.chain.finish_by = lambda: self._finish_by
            # Whatever an earlier process left goes out now, marked as delayed.
            await self._delivery.retry(force=True)
        return self._delivery

    def _open_store(self, spool: SpoolLike) -> None:
        """Open the store beside the spool (on the build's worker thread).

        No link (per-process sending) when the spool is in memory or the store
        cannot be used. Set before the delivery is: the loop reads it only once
        the delivery is ready.
        """
        if not isinstance(spool, Spool):
            return
        settings = self.settings
        windows = Windows(settings.group_wait, settings.group_interval, settings.repeat_interval)
        try:
            store: IncidentStore = SqliteStore(spool, windows, clock=self._clock)
            book: SilenceBook = SqliteSilences(spool, clock=self._clock)
        except (OSError, sqlite3.Error) as exc:
            warn(f"smtp-alerts: the shared store is not usable ({exc}); sending per process")
            return
        if settings.redis_url is not None:
            try:
                store, book = _through_redis(settings, spool, store, windows, self._clock)
            except (ImportError, RuntimeError) as exc:  # RuntimeError: loading at shutdown
                warn(f"smtp-alerts: Redis cannot be used ({exc}); this host sends on its own")
        context = self._render_context
        self._link = StoreLink(
            store,
            self._aggregator,
            lambda digest: render(digest, context),
            self._quota,
            self._clock,
            silencer=Silencer(book),
        )
        self._wake()  # what was drained before the store opened goes to it now

    def _shared(self) -> StoreLink | None:
        # A method, not the attribute: mypy would keep the narrowing of an
        # earlier check across the await that may have set it.
        return self._link

    async def _drain_forever(self, wake: asyncio.Event, dispatch: asyncio.Event) -> None:
        """Take in what producers queued: on a wake, and every DRAIN_INTERVAL while busy.

        On a shared store it also pushes the counts every PUSH_INTERVAL, here
        and not in the dispatcher: a send that hangs must not keep them in
        this process only.
        """
        pushed_at = float("-inf")  # the first push goes at once
        pushing: asyncio.Task[None] | None = None
        while True:
            if not wake.is_set():
                with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                    await asyncio.wait_for(wake.wait(), self._drain_timeout())
            wake.clear()
            took = self._drain()
            # Real time, not the engine's clock: a tick is a bound on loss, not a window.
            if self._link is not None and time.monotonic() - pushed_at >= PUSH_INTERVAL:
                pushed_at = time.monotonic()
                # A task: the SQLite work is on a worker thread, draining goes on.
                if pushing is None or pushing.done():
                    pushing = asyncio.get_running_loop().create_task(self._push_quietly())
            # New work may be due sooner than the dispatcher planned: let it look.
            # On a shared store only a new problem can: repeats reach the store
            # with the next push, and the dispatcher wakes for that on its own
            # (a claim per drain would be a write transaction every 20 ms of a
            # flood, taking GIL time from the program).
            took_new, self._took_new = self._took_new, False
            if self._flush_requests or self._closing or (took and (self._link is None or took_new)):
                dispatch.set()

    def _drain_timeout(self) -> float | None:
        if self._busy:
            return DRAIN_INTERVAL
        if self._link is not None and self._aggregator.pending_groups():
            return PUSH_INTERVAL
        return None

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
            if closing and self._ready is not None:
                await self._get_delivery()  # opens the store: the exit rule depends on it
            link = self._link
            if closing and link is not None:
                ok = await self._close_round(link)
                self._last_ok = ok
                self._report_undelivered()
                return
            ok = await self._round(force=closing or bool(requests))
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

    async def _round(self, *, force: bool) -> bool:
        """One delivery round: digests that are due, retries, then the logins' turn."""
        try:
            ok = await self._dispatch(force=force)
            if self._delivery is not None:
                ok = await self._logins.run(self._delivery) and ok
        except Exception as exc:
            # One bad round must not end the engine: what was formed is in
            # the spool, the rest is still counted; say so and go on.
            log.exception("a delivery round failed")
            warn(f"smtp-alerts: a delivery round failed and will be retried: {exc!r}")
            await asyncio.sleep(1.0)  # no hot loop if it fails every time
            return False
        return ok

    def _seconds_to_next(self) -> float | None:
        candidates = []
        due = self._aggregator.next_due()
        if self._link is not None:
            # Local counts go to the store within a tick; the store decides when.
            now = self._clock()
            if self._aggregator.pending_groups():
                candidates.append(now + PUSH_INTERVAL)
            candidates.append(now + STORE_POLL)
            due = self._link.next_due()
        if due is not None:
            candidates.append(max(due, self._quota.available_at()))
        if self._delivery is not None and self._delivery.next_retry_at is not None:
            candidates.append(self._delivery.next_retry_at)
        probe_at = self._logins.watch.next_probe_at()
        if self._delivery is not None and probe_at is not None:
            candidates.append(probe_at)
        if not candidates:
            return None
        return max(0.0, min(candidates) - self._clock())

    def _drain(self) -> int:
        """Take in what producers queued; returns how many items."""
        count = self._take_queued()
        if not count:
            self._take_dropped(0)
            return 0
        queue, aggregator = self._queue, self._aggregator
        # Repeats carry the canonical fingerprint object from the known table,
        # so its id is a cheap key (a tuple's hash is computed anew every time).
        repeats: dict[int, list[Any]] = {}
        lights: list[Light] = []
        for _ in range(count):
            item = queue.popleft()
            if not isinstance(item, tuple):
                aggregator.add(item.finish() if isinstance(item, PendingAlert) else item)
                self._took_new = True
                continue
            if len(item) != 2:  # a new problem captured lightly: its incident is full
                lights.append(item)
                continue
            fingerprint, created = item
            counted = repeats.get(id(fingerprint))
            if counted is None:
                repeats[id(fingerprint)] = [fingerprint, 1, created]
            else:
                counted[1] += 1
                counted[2] = created
        if lights:
            aggregator.add_lights(lights)
            self._took_new = True
        lost = 0
        for fingerprint, repeated, last in repeats.values():
            if not aggregator.count(fingerprint, last, repeated):
                lost += repeated  # its sample was evicted: shown as dropped, not lost
        self._accepted += count - lost
        self._suppressed += sum(repeated for _, repeated, _ in repeats.values()) - lost
        self._take_dropped(lost)
        evicted = aggregator.pop_evicted()
        if evicted:
            self._forget(evicted)  # re-capture the evicted on their next occurrence
        # Incidents fill up as problems arrive and empty when they close.
        self._full_groups = aggregator.full_groups()
        return count

    def _take_dropped(self, lost: int) -> None:
        dropped = self._pop_dropped() + lost
        if dropped:
            self._dropped_total += dropped
            self._aggregator.note_dropped(dropped)

    async def _dispatch(self, *, force: bool) -> bool:
        if self._link is not None:
            return await self._dispatch_shared(self._link, force=force)
        aggregator = self._aggregator
        due = set(aggregator.due())
        groups = aggregator.pending_groups() if force else sorted(due)
        ready = self._ready is not None and self._ready.done()
        if self._delivery is None and not (groups or force or ready):
            # Nothing to send, and the channels are still loading: go back to
            # draining. Something due, a flush or a close waits for them instead
            # (the spool may hold an earlier run's work).
            return True
        delivery = await self._get_delivery()
        if self._drain():
            # What came in while the channels loaded joins this round: every
            # digest of a round is spooled before the first attempt of any.
            due = set(aggregator.due())
            groups = aggregator.pending_groups() if force else sorted(due)
        link = self._shared()
        if link is not None:  # the store was opened just now by _get_delivery
            return await self._dispatch_shared(link, force=force)
        messages, held_back = self._form_digests(groups, due)
        # Earlier failures first, and never a second try within one round. The
        # spool is only touched when a retry is due: a busy loop polls often.
        sent_before = delivery.sent
        retry_at = delivery.next_retry_at
        retried = True
        if force or (retry_at is not None and retry_at <= self._clock()):
            retried = await delivery.retry(force=force)
        ok = await delivery.deliver(messages) if messages else True
        if messages or delivery.sent != sent_before or force:
            self._save_counters(delivery)
        return ok and retried and not held_back

    # -- the shared store ---------------------------------------------------------------

    def _unshare(self, exc: Exception) -> None:
        """The store refused: send on our own from now on (duplicates, never loss)."""
        warn(f"smtp-alerts: the shared store is busy or read-only ({exc}); sending per process")
        self._link = None
        self._aggregator.forget_notifications()

    async def _push_quietly(self) -> None:
        link = self._link
        if link is not None:
            try:
                await link.push()
            except StoreUnavailableError as exc:
                self._unshare(exc)

    async def _dispatch_shared(self, link: StoreLink, *, force: bool) -> bool:
        """Push, claim what the store says is due, send it: the round on a shared store."""
        delivery = await self._get_delivery()
        try:
            entries, held_back = await link.claim(force=force)
        except StoreUnavailableError as exc:
            self._unshare(exc)
            return await self._dispatch(force=force)
        self._digests += len(entries)
        retry_at = delivery.next_retry_at
        retrying = force or (retry_at is not None and retry_at <= self._clock())
        if retrying:
            await delivery.retry(force=force)  # the round's own entries are claimed: skipped
        ok = await delivery.send_spooled(entries) if entries else True
        if entries or force:
            self._save_counters(delivery)
        return ok and not held_back and (not retrying or delivery.settled())

    async def _close_round(self, link: StoreLink) -> bool:
        """At exit: push, hand over to a live sibling or send all, wait for our own work only."""
        try:
            stays = await link.leave()
        except StoreUnavailableError as exc:
            self._unshare(exc)
            stays = False
        ok = await self._dispatch(force=not stays)
        if self._delivery is not None:
            ok = await self._logins.run(self._delivery) and ok
        return ok

    def _form_digests(self, groups: list[str], due: set[str]) -> tuple[list[OutgoingMessage], bool]:
        """The digests of ``groups`` rendered, within the quotas; and whether one was held back."""
        aggregator = self._aggregator
        messages: list[OutgoingMessage] = []
        for group in groups:
            grant = self._quota.try_acquire()
            if grant is None:
                return messages, True
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
        return messages, False

    def _save_counters(self, delivery: Delivery) -> None:
        """Keep the counters in the spool for ``smtp-alerts spool list``."""
        if not isinstance(delivery.spool, Spool):
            return
        stats = self.stats()
        counters = {
            "accepted": stats.accepted,
            "suppressed": stats.suppressed,
            "dropped": stats.dropped,
            "digests": stats.digests,
            "sent": stats.sent,
            "spooled": stats.undelivered,
        }
        for channel, channel_stats in stats.channels.items():
            counters[f"sent via {channel}"] = channel_stats.sent
        for reason, count in stats.failures.items():
            counters[f"failed: {reason}"] = count
        try:
            delivery.spool.save_counters(counters)
        except Exception:
            log.debug("could not save the counters", exc_info=True)

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
            waiting = delivery.undelivered()
            lines += [
                f"  {title}: {error or 'was being sent when time ran out'}"
                for title, error in waiting
            ]
            if delivery.in_memory:
                lines.append(
                    f"  {delivery.in_memory} of them only in memory: the disk at "
                    f"{self.settings.spool_path} had no room; lost as this process ends"
                )
            if waiting and isinstance(delivery.spool, Spool):
                lines.append(
                    f"  kept in the spool at {self.settings.spool_path}: the next start sends them"
                )
            elif waiting:
                lines.append("  kept in memory only (no usable SPOOL_DIR): lost at exit")
        events = self._aggregator.stats.pending
        if events:
            lines.append(f"  {events:,} events not yet in any email (email quota or deadline)")
        link = self._link
        if link is not None and link.held_back:
            lines.append(
                f"  alerts held back by the email quota: kept in the store at "
                f"{self.settings.spool_path}; a live sibling or the next start sends them"
            )
        if lines:
            warn("smtp-alerts: alerts not delivered at exit:\n" + "\n".join(lines))


def _prepare_redis() -> None:
    """Make redis-py loadable during interpreter shutdown; call before it can begin.

    redis-py imports ``concurrent.futures.thread``, which registers a shutdown
    hook as it loads and raises once shutdown has begun: a short script may log
    one error and exit while the store is still being opened.
    """
    import concurrent.futures.thread  # noqa: F401, PLC0415 - imported for its side effect only


def _through_redis(
    settings: Settings, spool: Spool, local: IncidentStore, windows: Windows, clock: Clock
) -> tuple[IncidentStore, SilenceBook]:
    """The fleet's store in Redis, with this host's store behind it for outages; its silences."""
    # Imported here: redis-py is loaded only when REDIS_URL is set.
    from .._store.redis import RedisStore, namespace_for  # noqa: PLC0415

    assert settings.redis_url is not None  # noqa: S101 - the caller checked
    remote = RedisStore(
        settings.redis_url.get_secret_value(),
        spool,
        windows,
        clock=clock,
        namespace=namespace_for(settings.to),
        ca_file=str(settings.ca_file) if settings.ca_file else None,
    )
    return FailoverStore(remote, local), remote.silences()


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


def _quietly(call: Callable[[], None], failure: str, extension: EngineExtension) -> None:
    """Call ``call``, logging what it raises: one extension must not stop the others."""
    try:
        call()
    except Exception:
        log.exception(failure, extension)


def _failures(delivery: Delivery | None) -> dict[str, int]:
    totals: dict[str, int] = {}
    if delivery is not None:
        for stats in delivery.chain.stats().values():
            for name, count in stats.failures.items():
                totals[name] = totals.get(name, 0) + count
    return totals
