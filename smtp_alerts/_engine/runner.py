"""The engine's own thread: what turns the intake into emails, loaded only when it starts.

:class:`EngineRunner` is the half of an engine that belongs to one daemon
thread running one asyncio loop: taking what is queued into the aggregator,
forming digests when their windows are due, within the quotas, and delivering
them each round (the spool first, then the fallback chain), with the auth
watcher's probes and meta-alerts in between (:mod:`smtp_alerts._engine.logins`).

It is a module apart from the engine core (:mod:`smtp_alerts._engine.core`,
what callers touch) for start-up cost only: asyncio, ssl, sqlite3, email, the
renderer, the delivery chain and pydantic (the settings model) load here, on
the engine's thread as it starts, never in a program that only attaches a
handler and never alerts. The runner works on its core's state as the core's
own methods did, hence the private names it reads across the two.
"""

# ruff: noqa: SLF001 - the runner is the loop half of its core (module docstring)

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sqlite3
import time
from typing import TYPE_CHECKING, TypeVar

from .._delivery.rounds import Delivery, SpoolLike
from .._delivery.spool import Spool
from .._store import IncidentStore, SqliteStore, Windows
from .._store.failover import FailoverStore
from .._store.silences import SilenceBook, SqliteSilences
from .._util.stderr import warn
from ..models import OutgoingMessage
from .core import DRAIN_INTERVAL, EngineStats
from .limits import EmailQuota
from .logins import LoginWatcher
from .loop import EngineLoop, WorkerPool, wait_event
from .outbox import Rerender, build_delivery, open_spool
from .render import RenderContext, render
from .shared import StoreLink, StoreUnavailableError
from .silencing import Silencer

if TYPE_CHECKING:
    from .._util.clock import Clock
    from ..settings import Settings
    from .core import EngineCore
    from .drain import Drain

__all__ = [
    "DRAIN_INTERVAL",
    "PUSH_INTERVAL",
    "REPEATS_INTERVAL",
    "STORE_POLL",
    "EngineRunner",
    "run",
]

log = logging.getLogger("smtp_alerts.engine")

#: The longest a count stays in this process only before it is pushed to the store.
PUSH_INTERVAL = 0.25
#: How often an idle engine looks at the store for windows its siblings opened.
STORE_POLL = 1.0
#: How often a flood of repeats alone is taken (and sooner when the intake
#: passes its high water mark, or a new problem arrives): a repeat waits as a
#: pointer, and each drain takes the GIL from the program.
REPEATS_INTERVAL = 0.1

T = TypeVar("T")


def run(core: EngineCore, drain: Drain) -> None:
    """The engine's thread: build the runner and the loop, run until the engine closes.

    Everything heavy happens here, not in the caller's thread: the settings
    model is built (from the environment the core checked), the loop made,
    and only then can producers wake it; what they queued meanwhile is
    drained at once.
    """
    loop: EngineLoop | None = None
    try:
        runner = EngineRunner(core, drain)
        pool, core._pool = core._pool, None
        loop = EngineLoop(pool if pool is not None else WorkerPool())
        asyncio.set_event_loop(loop)
        wake = asyncio.Event()
        wake.set()  # producers could not wake a loop that did not exist yet
        for coroutine, handed_out in core._loop_ready(runner, loop, wake):
            if handed_out.cancelled():
                coroutine.close()  # cancelled while this thread was loading: never run
            else:
                _forward(asyncio.run_coroutine_threadsafe(coroutine, loop), handed_out)
        loop.run_until_complete(runner.run())
    except Exception as exc:
        log.exception("the smtp-alerts engine stopped")
        warn(f"smtp-alerts: the engine stopped and will send nothing more: {exc!r}")
        core._last_ok = False
    finally:
        with core._lock:
            core._accepting = False
        core._fail_flush_requests()
        core._fail_early_coroutines()
        if loop is not None:
            _finish(loop)


def _forward(inner: concurrent.futures.Future[T], outer: concurrent.futures.Future[T]) -> None:
    """Make ``outer``, handed out before the loop ran, follow ``inner``; cancel both as one."""

    def settle(_: object) -> None:
        if inner.cancelled():
            outer.cancel()
        elif outer.set_running_or_notify_cancel():
            error = inner.exception()
            if error is None:
                outer.set_result(inner.result())
            else:
                outer.set_exception(error)

    outer.add_done_callback(lambda _: inner.cancel() if outer.cancelled() else None)
    inner.add_done_callback(settle)


class EngineRunner:
    """What an engine's thread owns: aggregation, quotas, the store link, delivery, logins.

    Args:
        core: the engine core whose intake it drains and whose lifecycle it follows.
    """

    def __init__(self, core: EngineCore, drain: Drain) -> None:
        self._core = core
        self._drain_into = drain
        # Until the settings model is built (on a worker, after the store is
        # open), what the intake and the store need comes from the quick check.
        start = self._start = core._quick
        clock = self._clock = core.clock
        self._render_context = RenderContext.from_settings(start, hostname=core._hostname)
        self._rerender = Rerender(self._render_context, clock)
        drain.summarize = self._rerender.merged
        self._dispatch_event: asyncio.Event | None = None
        self._ready: asyncio.Future[Delivery] | None = None
        self._aggregator = drain.aggregator
        self._quota = EmailQuota(
            per_hour=start.max_per_hour, per_day=start.max_per_day, clock=clock
        )
        self._delivery: Delivery | None = None
        self._link: StoreLink | None = None
        self._logins: LoginWatcher | None = None  # with the delivery: it needs the settings
        self._spool: SpoolLike | None = drain.spool
        if drain.store is not None and drain.spool is not None:
            self._link = self._link_to(drain.store, SqliteSilences(drain.spool, clock=self._clock))
        self._digests = 0

    @property
    def settings(self) -> Settings:
        """The engine's settings model (built on first use)."""
        return self._core.settings

    def stats(self) -> EngineStats:
        """A snapshot of the engine's counters."""
        delivery, logins = self._delivery, self._logins
        return EngineStats(
            accepted=self._drain_into.accepted,
            dropped=self._drain_into.dropped + self._core._dropped,
            digests=self._digests,
            sent=delivery.sent if delivery else 0,
            failures=_failures(delivery),
            undelivered=delivery.pending_seen if delivery else 0,
            channels=delivery.chain.stats() if delivery is not None else {},
            open_incidents=self._aggregator.stats.open_incidents,
            suppressed=self._drain_into.suppressed,
            meta_alerts=logins.raised if logins is not None else 0,
            resting_logins=logins.resting() if logins is not None else (),
            late=self._core.late_records,
        )

    async def run(self) -> None:
        """The loop's main task: drain and dispatch until the engine closes."""
        core = self._core
        event = core._wake_event
        assert event is not None  # set by run() before this task  # noqa: S101
        core._run_task = asyncio.current_task()
        finish_by = core._finish_by
        if core._closing and finish_by is not None:
            # Closed while this thread was loading: the deadline could not be armed then.
            core._arm_deadline(max(0.0, finish_by - time.monotonic()))
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
            self._core._last_ok = False
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
        """The settings model and the chain, from the spool open_store() opened; on a worker thread.

        pydantic, aiosmtplib and the CA store load here (a few hundred
        milliseconds on a busy machine), after the store has what was taken.
        """
        core = self._core
        spool = self._spool
        if spool is None:  # the drain could not open it: again, saying why, or in memory
            spool = self._spool = open_spool(
                self._start.spool_path,
                clock=self._clock,
                rerender=self._rerender,
                use=core._use_spool,
            )
        if self._link is None:  # or the drain left it to us (REDIS_URL)
            self._open_store(spool)
        settings = self.settings
        logins = self._logins = LoginWatcher(
            settings, clock=self._clock, context=self._render_context, hooks=core._meta_hooks
        )
        delivery = build_delivery(
            settings,
            spool,
            transport=core._transport,
            token_provider=core._token_provider,
            clock=self._clock,
            started=core._started_at,
            gate=logins.watch,
            rerender=self._rerender,
        )
        delivery.recount()  # what stats() shows from the start: an earlier process's digests
        return delivery

    async def _get_delivery(self) -> Delivery:
        if self._delivery is None:
            assert self._ready is not None  # set by run  # noqa: S101
            self._delivery = await self._ready
            self._delivery.chain.finish_by = lambda: self._core._finish_by
            # Whatever an earlier process left goes out now, marked as delayed.
            await self._delivery.retry(force=True)
        return self._delivery

    def _open_store(self, spool: SpoolLike) -> None:
        """Open the store beside the spool when the drain did not (on a worker).

        With ``REDIS_URL``, the fleet's store in Redis with this host's behind
        it for outages. No link (per-process sending) when the spool is in
        memory or the store cannot be used.
        """
        if not isinstance(spool, Spool) or self._link is not None:
            return
        start = self._start
        windows = Windows(start.group_wait, start.group_interval, start.repeat_interval)
        try:
            store: IncidentStore = SqliteStore(spool, windows, clock=self._clock)
            book: SilenceBook = SqliteSilences(spool, clock=self._clock)
        except (OSError, sqlite3.Error) as exc:
            warn(f"smtp-alerts: the shared store is not usable ({exc}); sending per process")
            return
        settings = self.settings
        if settings.redis_url is not None:
            try:
                store, book = _through_redis(settings, spool, store, windows, self._clock)
            except (ImportError, RuntimeError) as exc:  # RuntimeError: loading at shutdown
                warn(f"smtp-alerts: Redis cannot be used ({exc}); this host sends on its own")
        self._link = self._link_to(store, book)
        self._core._wake()  # what was drained before the store opened goes to it now

    def _link_to(self, store: IncidentStore, book: SilenceBook) -> StoreLink:
        context = self._render_context
        return StoreLink(
            store,
            self._aggregator,
            lambda digest: render(digest, context),
            self._quota,
            self._clock,
            silencer=Silencer(book),
        )

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
        took_new = True
        # On a shared store, new problems make the dispatcher look at the
        # store at most once a tick: the first at once, the rest of a flood
        # with the next tick (each look is a push and the store's queries).
        looked_at = float("-inf")
        owed = False
        while True:
            if not wake.is_set():
                timeout = self._drain_timeout(took_new=took_new)
                if self._link is not None:
                    # A push, and a look owed, are never late for a long wait.
                    due = pushed_at + PUSH_INTERVAL
                    if owed:
                        due = min(due, looked_at + PUSH_INTERVAL)
                    if timeout is not None or owed:
                        left = max(0.0, due - time.monotonic())
                        timeout = left if timeout is None else min(timeout, left)
                await wait_event(wake, timeout)
            wake.clear()
            # Awake: a new problem need not wake the loop (only this task
            # raises the flag, before it waits long; a dispatcher's drain leaves it).
            self._core._wake_on_new = False
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
            # flood, taking GIL time from the program). A look is a push and
            # the store's queries too: new problems get one at once, then one
            # a tick while they keep coming.
            drain = self._drain_into
            took_new, drain.took_new = drain.took_new, False
            core = self._core
            if self._link is None:  # per process, or unshared since: owed now
                look, owed = bool(took) or owed, False
            else:
                # A new problem the dispatcher's own drain took, its round looked at.
                owed = owed or (took_new and bool(took))
                look = owed and time.monotonic() - looked_at >= PUSH_INTERVAL
                if look:
                    looked_at, owed = time.monotonic(), False
            if core._flush_requests or core._closing or look:
                dispatch.set()

    def _drain_timeout(self, *, took_new: bool) -> float | None:
        core = self._core
        if core._busy:
            # A flood of repeats alone is taken less often: each wake-up takes
            # the GIL from the program, and a new problem wakes the loop at
            # once (the intake's handshake). New problems are taken every
            # DRAIN_INTERVAL: their captures are bigger than a pointer.
            if not took_new and core._arm_new_wake():
                return REPEATS_INTERVAL
            return DRAIN_INTERVAL
        if self._link is not None and self._aggregator.pending_groups():
            return PUSH_INTERVAL
        return None

    async def _serve(self, event: asyncio.Event) -> None:
        while True:
            timeout = self._seconds_to_next()
            if not event.is_set() and (timeout is None or timeout > 0):
                await wait_event(event, timeout)
            event.clear()
            core = self._core
            with core._lock:
                requests, core._flush_requests = core._flush_requests, []
                closing = core._closing
            self._drain()
            if closing and self._ready is not None:
                await self._get_delivery()  # opens the store: the exit rule depends on it
            link = self._link
            if closing and link is not None:
                ok = await self._close_round(link)
                self._core._last_ok = ok
                self._answer(requests, ok=ok)  # a flush that came with the close
                self._report_undelivered()
                return
            ok = await self._round(force=closing or bool(requests))
            self._core._last_ok = ok
            self._answer(requests, ok=ok)
            if closing:
                self._drain()  # what raced in while we were sending
                if self._aggregator.pending_groups():
                    self._core._last_ok = await self._dispatch(force=True)
                self._report_undelivered()
                return

    def _answer(self, requests: list[concurrent.futures.Future[bool]], *, ok: bool) -> None:
        """Answer the flushes a round served, with the spool counted for what they read next."""
        if requests and self._delivery is not None:
            self._delivery.recount()
        for request in requests:
            if not request.done():
                request.set_result(ok)

    async def _round(self, *, force: bool) -> bool:
        """One delivery round: digests that are due, retries, then the logins' turn."""
        try:
            ok = await self._dispatch(force=force)
            if self._delivery is not None and self._logins is not None:
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
            # The store decides when. Local counts reach it from the drain, every
            # PUSH_INTERVAL, and only a new problem can make work due sooner
            # (the drain wakes this loop for it), so the store is asked again
            # every STORE_POLL for what the other processes opened: not at
            # every push of a flood, a claim and reads each time. (New problems
            # wake it from the drain, at once, then once a tick during a flood.)
            candidates.append(self._clock() + STORE_POLL)
            due = self._link.next_due()
        if due is not None:
            candidates.append(max(due, self._quota.available_at()))
        if self._delivery is not None and self._delivery.next_retry_at is not None:
            candidates.append(self._delivery.next_retry_at)
        probe_at = self._logins.watch.next_probe_at() if self._logins is not None else None
        if self._delivery is not None and probe_at is not None:
            candidates.append(probe_at)
        if not candidates:
            return None
        return max(0.0, min(candidates) - self._clock())

    def _drain(self) -> int:
        """Take in what producers queued; returns how many items."""
        return self._drain_into.take()

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
        if self._delivery is not None and self._logins is not None:
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
        stats = self._core.stats()
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
                    f"{self._start.spool_path} had no room; lost as this process ends"
                )
            if waiting and isinstance(delivery.spool, Spool):
                lines.append(
                    f"  kept in the spool at {self._start.spool_path}: the next start sends them"
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
                f"{self._start.spool_path}; a live sibling or the next start sends them"
            )
        if lines:
            warn("smtp-alerts: alerts not delivered at exit:\n" + "\n".join(lines))


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


def _failures(delivery: Delivery | None) -> dict[str, int]:
    totals: dict[str, int] = {}
    if delivery is not None:
        for stats in delivery.chain.stats().values():
            for name, count in stats.failures.items():
                totals[name] = totals.get(name, 0) + count
    return totals
