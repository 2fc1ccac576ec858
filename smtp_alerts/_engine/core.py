"""The engine core: its lifecycle, what callers touch, and the start of its own thread.

:class:`EngineCore` is the :class:`~smtp_alerts._engine.intake.Intake` (what
callers touch, from any thread) plus the engine's lifecycle: start, flush,
close, forks. Everything after the intake belongs to one daemon thread per
engine running one asyncio loop, :class:`~smtp_alerts._engine.runner.EngineRunner`:
aggregation, windows, quotas, the store, delivery and the auth watcher.

Building an engine is cheap, because every handler and every cron script
pays it: this module loads no asyncio, ssl, sqlite3, email package, pydantic
or delivery code. Settings read from the environment are checked without
pydantic (:mod:`smtp_alerts._environment`); the settings model, the runner
and the loop are made on the engine's thread when it starts, on the first
alert. A wrong setting still fails here, at construction, with the model's
own message: what the quick check is not sure of, the model judges at once.

The core knows none of its front-ends: jobs, heartbeats and checks use the
:class:`~smtp_alerts._engine.sink.AlertSink` it offers, and keep their
per-engine state in its extensions. The public :class:`~smtp_alerts.Engine`
adds them on top.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib
import logging
import math
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .._delivery.channels import prepare_channels
from .._delivery.spool.probe import spool_has_entries
from .._environment import read_environment
from .._util.clock import SYSTEM_CLOCK, Clock
from .._util.stderr import warn
from . import process
from .drain import Drain
from .intake import Intake

if TYPE_CHECKING:
    import asyncio

    from .._delivery.chain import ChannelStats
    from .._environment import QuickSettings
    from ..settings import Settings
    from ..transports import Transport
    from ..transports.xoauth2 import TokenProvider
    from .logins import MetaHook
    from .loop import EngineLoop
    from .runner import EngineRunner
    from .sink import AlertSink, EngineExtension
    from .workers import WorkerPool

__all__ = ["DRAIN_INTERVAL", "EngineCore", "EngineStats"]

#: How often a busy engine takes what producers queued, in seconds: its loop
#: (see the runner), and its thread while the runner loads (EngineCore._load_runner).
DRAIN_INTERVAL = 0.02

log = logging.getLogger("smtp_alerts.engine")

T = TypeVar("T")
E = TypeVar("E", bound="EngineExtension")

_Early = tuple[Coroutine[Any, Any, Any], "concurrent.futures.Future[Any]"]
"""A coroutine handed to ``run_coroutine`` before the loop ran, and the future handed out."""


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
        self._settings = settings
        self._settings_lock = threading.Lock()
        self._environment: Mapping[str, str] = {}
        quick: QuickSettings | None = None
        if settings is None:
            self._environment, quick = read_environment()
        if quick is None:  # given, or the quick check is not sure: the model judges now
            settings = self._settings = settings if settings is not None else self._build_settings()
            quick = settings.quick()
        self._quick = quick
        self._fallback = quick.fallback
        if token_provider is not None:
            self.settings.check_token_provider()  # no token in clear text: refuse now
        super().__init__(capacity=quick.queue_size, clock=clock)
        self._transport = transport
        self._use_spool = spool
        self._token_provider = token_provider
        self._hostname = hostname
        self._meta_hooks: list[MetaHook] = []
        # Kept across a fork: a child's heartbeat monitor keeps its registrations.
        self._extensions: dict[Callable[[AlertSink], EngineExtension], EngineExtension] = {}
        self._extensions_lock = threading.RLock()
        self._reset_loop_side()
        process.register(self)
        if spool and spool_has_entries(quick.spool_path):
            self.start()  # an earlier process left digests: send them without waiting
        elif spool and quick.redis:
            self.start()  # a fleet member: it claims what dead members left in Redis

    @property
    def settings(self) -> Settings:
        """The settings; built from the environment checked at construction on first use.

        The engine's thread asks first, as it starts, so the caller's thread
        does not load pydantic unless it asks itself (a repr, a front-end).
        """
        settings = self._settings
        if settings is None:
            with self._settings_lock:
                settings = self._settings
                if settings is None:
                    settings = self._settings = self._build_settings()
        return settings

    def _build_settings(self) -> Settings:
        from ..settings import Settings  # noqa: PLC0415 - pydantic loads when needed (module docstring)

        return Settings.from_environment(self._environment)

    def _reset_loop_side(self) -> None:
        """(Re)create what the loop side needs: at construction and in a forked child.

        The loop side itself (the runner) is made by the engine's thread.
        """
        self._closing = False
        self._finish_by: float | None = None
        self._flush_requests: list[concurrent.futures.Future[bool]] = []
        self._early: list[_Early] = []
        self._run_task: asyncio.Task[None] | None = None
        self._runner: EngineRunner | None = None
        self._pool: WorkerPool | None = None  # started with the thread (see _start)
        self._started_at = self._clock()
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
                    # In this thread: shutdown may begin any time after we return.
                    prepare_channels(fallback=self._fallback)
                if self._quick.redis:
                    _prepare_redis()  # the same reason
                # The workers too: from Python 3.12 no thread starts once
                # shutdown has begun, and a short script may be there by the
                # time the engine's thread has loaded.
                from .workers import WorkerPool  # noqa: PLC0415 - at the first alert only

                self._pool = WorkerPool()
                # The loop is made by the thread itself, which drains what was
                # queued before it ran (a signal handler's record too).
                self._thread = thread
                thread.start()
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
        thread = self._stop_accepting()
        self.report_late()
        try:
            if thread is None:
                return True  # never started: nothing to wait for (and no settings to build)
            if timeout is None:
                timeout = self.settings.shutdown_timeout
            self._finish_by = min(self._finish_by or math.inf, time.monotonic() + timeout)
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
            if self._finish_by is None and thread is not None:  # the channels share what is left
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
        self._settings_lock = threading.Lock()  # maybe held by a parent's thread at the fork
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
        with self._lock:
            loop, running = self._loop, self._accepting and self._thread is not None
            if loop is None and running:
                # The engine's thread is still loading: its loop starts the
                # coroutine as soon as it runs. Never wait for it here.
                future: concurrent.futures.Future[T] = concurrent.futures.Future()
                self._early.append((coroutine, future))
                return future
        if loop is None or not running:
            coroutine.close()
            raise RuntimeError("the smtp-alerts engine is closed")
        import asyncio  # noqa: PLC0415 - loaded by the engine's thread, which made the loop

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
        runner = self._runner
        if runner is not None:
            return runner.stats()
        # Not started (or still loading): nothing taken in yet.
        return EngineStats(
            accepted=0, dropped=self._dropped, digests=0, sent=0, late=self.late_records
        )

    # -- the engine's own thread ----------------------------------------------------

    def _main(self) -> None:
        self._engine_ident = threading.get_ident()
        try:
            # First what the intake took goes to the store, then the rest loads.
            drain = Drain(self)
            drain.open_store()
            run = self._load_runner(drain)
        except Exception as exc:  # noqa: BLE001 - an install that cannot load its own modules
            warn(f"smtp-alerts: the engine cannot start and will send nothing: {exc!r}")
            with self._lock:
                self._accepting = False
            self._last_ok = False
            self._fail_flush_requests()
            self._fail_early_coroutines()
            return
        run(self, drain)

    def _load_runner(self, drain: Drain) -> Callable[[EngineCore, Drain], None]:
        """The runner's ``run``, its modules loaded on a worker while this thread drains.

        Loading the runner (asyncio, the renderer, delivery) takes a few
        hundred milliseconds on a slow machine; a flood that starts with the
        engine would fill the intake meanwhile if this thread did the
        loading. Counts taken meanwhile wait in the aggregator, and the
        runner pushes them with its first tick.
        """
        pool = self._pool
        if pool is None:  # no workers (the engine was not started by _start): load here
            from .runner import run  # noqa: PLC0415 - loaded by the engine's thread

            return run
        loading = pool.submit(importlib.import_module, "smtp_alerts._engine.runner")
        while not loading.done():
            drain.take()
            concurrent.futures.wait([loading], timeout=DRAIN_INTERVAL)
        # An install that cannot load its own modules raises here.
        loaded: Callable[[EngineCore, Drain], None] = loading.result().run
        return loaded

    def _loop_ready(
        self, runner: EngineRunner, loop: EngineLoop, wake: asyncio.Event
    ) -> list[_Early]:
        """The engine's thread made its runner and loop: producers may wake it from now on.

        Returns:
            The coroutines handed to :meth:`run_coroutine` before, with their
            futures, for the loop to start.
        """
        with self._lock:
            self._runner = runner
            self._wake_event = wake
            self._loop = loop
            early, self._early = self._early, []
        return early

    def _fail_flush_requests(self) -> None:
        with self._lock:
            requests, self._flush_requests = self._flush_requests, []
        for request in requests:
            if not request.done():
                request.set_result(False)

    def _fail_early_coroutines(self) -> None:
        with self._lock:
            early, self._early = self._early, []
        for coroutine, future in early:
            coroutine.close()
            if future.set_running_or_notify_cancel():
                future.set_exception(RuntimeError("the smtp-alerts engine is closed"))


def _prepare_redis() -> None:
    """Make redis-py loadable during interpreter shutdown; call before it can begin.

    redis-py imports ``concurrent.futures.thread``, which registers a shutdown
    hook as it loads and raises once shutdown has begun: a short script may log
    one error and exit while the store is still being opened.
    """
    import concurrent.futures.thread  # noqa: F401, PLC0415 - imported for its side effect only


def _quietly(call: Callable[[], None], failure: str, extension: EngineExtension) -> None:
    """Call ``call``, logging what it raises: one extension must not stop the others."""
    try:
        call()
    except Exception:
        log.exception(failure, extension)
