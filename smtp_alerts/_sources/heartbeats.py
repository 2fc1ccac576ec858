"""Heartbeats: a dead man's switch per name, kept across restarts and processes.

``engine.heartbeat("backup", period="1d")`` registers a name; when it has not
beaten (``engine.beat``, or a successful ``engine.job`` of that name) within
its period plus grace, exactly one alert says when it was last seen and what
was expected; then silence until it beats again, which sends a recovery note.
The process that registered a name owns its missed state and sends its notes.

A beat costs its caller a lock and a dict update, never file I/O. A task on
the engine's loop writes ``heartbeats.json`` in ``SPOOL_DIR`` (atomically, on
a worker thread) soon after a beat and at most once per :data:`SAVE_INTERVAL`,
and again when the engine closes (``engine.close()``, interpreter exit,
SIGTERM with the crash hooks). So a beat recorded before a clean shutdown is
on disk after it; a crash (SIGKILL, power loss, ``os._exit``) loses at most
the beats of the last :data:`SAVE_INTERVAL` seconds. Once the engine is
closed, a beat is written at once, in the caller's thread.

The file is read again when it changes, so a beat by another process (a cron
job under ``smtp-alerts run --name``) counts, and a restart neither forgets
the last beats nor repeats an alert already sent. Times come from the engine's
clock, so a test drives :meth:`HeartbeatMonitor.check_due` with a
:class:`~smtp_alerts.testing.ManualClock`; in production a task on the
engine's loop calls it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .._environment import parse_duration
from .._util.humanize import format_duration, format_time
from .._util.stderr import warn
from .heartbeat_state import BeatStore, Recovery, Registration

if TYPE_CHECKING:
    from .._engine.sink import AlertSink

__all__ = [
    "SAVE_INTERVAL",
    "STATE_FILENAME",
    "WATCH_INTERVAL",
    "Heartbeat",
    "HeartbeatMonitor",
    "check_name",
    "duration_field",
    "heartbeat_monitor",
]

log = logging.getLogger("smtp_alerts.heartbeats")

STATE_FILENAME = "heartbeats.json"
"""The file in ``SPOOL_DIR`` that keeps the last beat of every name."""
#: The least time between two writes of the state file, in seconds: a burst of
#: beats costs one write, and a crash loses at most this much.
SAVE_INTERVAL = 2.0
#: The longest the watcher on the engine's loop sleeps between two checks, in
#: seconds; it also picks up beats another process wrote within this time.
WATCH_INTERVAL = 30.0
#: The shortest sleep of the watcher: a deadline already past is checked at once,
#: but a clock that stands still cannot make it spin.
_MIN_SLEEP = 0.05


def check_name(name: object) -> str:
    """``name`` when it is a non-empty string; else a ValueError that says so."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a job or heartbeat needs a non-empty name, got {name!r}")
    return name


def duration_field(value: float | str, what: str) -> float:
    """Seconds from ``30`` or ``"30m"``; a ValueError naming the field ``what`` otherwise."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


class Heartbeat:
    """A registered heartbeat: what :meth:`Engine.heartbeat <smtp_alerts.Engine.heartbeat>` returns.

    Attributes:
        name: the heartbeat's name.
        period: seconds expected between two beats.
        grace: extra seconds allowed before the beat counts as missed.
    """

    def __init__(self, monitor: HeartbeatMonitor, name: str, period: float, grace: float) -> None:
        self._monitor = monitor
        self.name = name
        self.period = period
        self.grace = grace

    def __repr__(self) -> str:
        return f"Heartbeat({self.name!r}, period={self.period!r}, grace={self.grace!r})"

    def beat(self) -> None:
        """Record a success now (same as ``engine.beat(name)``)."""
        self._monitor.beat(self.name)

    @property
    def last_beat(self) -> float | None:
        """When it last beat (epoch seconds, from any process), or None if never."""
        return self._monitor.last_beat(self.name)

    @property
    def missed(self) -> bool:
        """Whether a missed-heartbeat alert went out and no beat came since."""
        return self._monitor.is_missed(self.name)


class HeartbeatMonitor:
    """The heartbeats of one engine: registrations, last beats and the missed-beat check.

    One per engine, kept by the engine (see :func:`heartbeat_monitor`), which
    closes it (:meth:`close`) and resets it in a forked child
    (:meth:`after_fork`); safe to use from any thread.

    Args:
        engine: the engine that sends the alerts; its clock is the time and its
            ``SPOOL_DIR`` holds the state file.
    """

    def __init__(self, engine: AlertSink) -> None:
        self._engine = engine
        self._clock = engine.clock
        self._store = BeatStore(engine.settings.spool_path / STATE_FILENAME, warn=warn)
        self._reset_tasks()

    def _reset_tasks(self) -> None:
        """Forget the loop tasks: in a forked child they are the parent's."""
        self._tasks_lock = threading.Lock()  # two first beats at once start one task
        self._tasks: dict[str, tuple[int, concurrent.futures.Future[None]]] = {}
        self._first_sleep: float | None = None  # the watcher's, until it begins
        self._wakes: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}

    def __repr__(self) -> str:
        return f"<HeartbeatMonitor {sorted(self._store.registered)} at {str(self._store.path)!r}>"

    # -- public ---------------------------------------------------------------------

    def register(
        self,
        name: str,
        *,
        period: float | str,
        grace: float | str | None = None,
        level: int = logging.ERROR,
        group: str = "default",
        watch: bool = True,
    ) -> Heartbeat:
        """Expect ``name`` to beat at least every ``period`` (plus ``grace``).

        Registering a name again replaces its period and grace; its last beat is kept.

        Args:
            name: the heartbeat's name (a job's name to count its successful runs).
            period: the expected time between two beats (seconds or ``"1d"``).
            grace: extra time before the beat counts as missed; a tenth of the
                period when omitted, so a run that is a little late is not reported.
            level: the :mod:`logging` level of the missed-heartbeat alert.
            group: its notification group.
            watch: check it from a task on the engine's loop; False when the
                caller calls :meth:`check_due` itself.

        Returns:
            The registration.

        Raises:
            ValueError: an empty name, a malformed duration or a zero period.
            RuntimeError: ``watch`` on an engine that is closed.
        """
        name = check_name(name)
        period_s = duration_field(period, "period")
        if period_s == 0:
            raise ValueError("period must be more than 0 seconds")
        grace_s = period_s / 10 if grace is None else duration_field(grace, "grace")
        self._refresh()  # the last beat and missed state a previous process left
        now = self._clock()
        self._store.register(name, Registration(period_s, grace_s, now, level, group))
        if watch:
            # With the clock as it is now: a test that moves a manual clock
            # afterwards is not raced by the watcher. Kept until the watcher
            # begins; the least of those registered before it did.
            with self._tasks_lock:
                sleep = self._sleep_for(now)
                if self._first_sleep is not None:
                    sleep = min(sleep, self._first_sleep)
                self._first_sleep = sleep
            self._start_task("watch", self._watch)
        return Heartbeat(self, name, period_s, grace_s)

    def beat(self, name: str) -> None:
        """Record a success of ``name`` now; after a missed alert, send a recovery note.

        Cheap and non-blocking: the beat is kept in memory, and the engine's
        loop writes it to the state file (see the module docstring). Never
        raises for a well-formed name.
        """
        recovery, first_change = self._store.beat(check_name(name), self._clock())
        if recovery is not None:
            self._send_recoveries([recovery])
        if first_change:  # later beats find the write already asked for
            self._request_save()

    def save(self) -> None:
        """Write what changed to the state file now, merged with what other processes wrote.

        Blocking (a write and an fsync): the engine's loop calls it on a worker
        thread. A file that cannot be written is reported once on stderr.
        """
        with self._store.io_lock:
            self._send_recoveries(self._store.save())

    def close(self) -> None:
        """Write the beats not written yet: the engine closes.

        Its loop writes them too as it stops, but the close may stop waiting
        for a loop still busy delivering (``SHUTDOWN_TIMEOUT``). Later beats
        are written at once, in the caller's thread.
        """
        if self._store.dirty:
            self._save_quietly()

    def after_fork(self) -> None:
        """Forget the parent's locks and loop tasks: this is a forked child."""
        self._store.reset_locks()
        self._reset_tasks()

    def check_due(self, now: float | None = None) -> list[str]:
        """Send the one missed-heartbeat alert of every registered name now overdue.

        A name is overdue when it has not beaten within its period plus grace
        (counted from registration until its first beat). Each overdue episode
        alerts once; the next alert needs a beat first. Beats written by other
        processes are read first.

        Args:
            now: the time to judge by; the engine's clock when None.

        Returns:
            The names alerted by this call.
        """
        if now is None:
            now = self._clock()
        with self._store.io_lock:
            self._send_recoveries(self._store.merge())
            alerts, first_change = self._store.overdue(now)
            for name, registration, last_beat in alerts:
                self._alert_missed(name, registration, last_beat, now)
        if first_change:  # the missed state must survive a restart: no second alert
            self._request_save()
        return [name for name, _, _ in alerts]

    def last_beat(self, name: str) -> float | None:
        """When ``name`` last beat, in this process or (as written to the file) another."""
        self._refresh()
        return self._store.get(name).last_beat

    def is_missed(self, name: str) -> bool:
        """Whether ``name`` is overdue and was alerted, waiting for its next beat."""
        self._refresh()
        return self._store.get(name).missed

    # -- alerts -------------------------------------------------------------------------

    def _alert_missed(
        self, name: str, registration: Registration, last_beat: float | None, now: float
    ) -> None:
        expected = (
            f"expected every {format_duration(registration.period)} "
            f"(+{format_duration(registration.grace)} grace)"
        )
        if last_beat is None:
            seen = (
                f"never seen since monitoring started at {format_time(registration.since)} "
                f"({format_duration(now - registration.since)} ago)"
            )
        else:
            seen = f"last seen {format_time(last_beat)} ({format_duration(now - last_beat)} ago)"
        baseline = registration.baseline(last_beat)
        self._engine.alert(
            f"missed heartbeat: {name!r} {seen}; {expected}",
            level=registration.level,
            name=name,
            # One problem per episode: each carries its own "last seen".
            key=f"heartbeat:{name}:missed:{baseline!r}",
            details=(
                f"heartbeat  {name}\n"
                f"last seen  {format_time(last_beat) if last_beat is not None else 'never'}\n"
                f"expected   by {format_time(baseline + registration.period)}, "
                f"alerting after {format_time(registration.deadline(last_beat))}\n\n"
                "No further alert until it beats again."
            ),
            group=registration.group,
            source="job",
        )

    def _alert_recovered(
        self, name: str, when: float, before: float | None, registration: Registration
    ) -> None:
        gap = f" after {format_duration(when - before)} without one" if before is not None else ""
        self._engine.alert(
            f"heartbeat {name!r} is back: it beat at {format_time(when)}{gap}",
            level=logging.INFO,
            name=name,
            key=f"heartbeat:{name}:recovered:{when!r}",
            group=registration.group,
            source="job",
        )

    def _send_recoveries(self, recoveries: list[Recovery]) -> None:
        for name, when, before, registration in recoveries:
            self._alert_recovered(name, when, before, registration)

    # -- the tasks on the engine's loop -------------------------------------------------

    def _start_task(self, kind: str, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start the ``kind`` task on the engine's loop, or wake it when it runs.

        Raises:
            RuntimeError: the engine is closed.
        """
        pid = os.getpid()
        with self._tasks_lock:
            running = self._tasks.get(kind)
            if running is None or running[0] != pid or running[1].done():
                self._tasks[kind] = (pid, self._engine.run_coroutine(make()))
                return
        wake = self._wakes.get(kind)
        if wake is not None:  # None: the task has not begun, and will look for itself
            with contextlib.suppress(RuntimeError):  # the loop closed
                wake[0].call_soon_threadsafe(wake[1].set)

    def _wake_event(self, kind: str) -> asyncio.Event:
        event = asyncio.Event()
        self._wakes[kind] = (asyncio.get_running_loop(), event)
        return event

    def _request_save(self) -> None:
        try:
            self._start_task("persist", self._persist)
        except RuntimeError:
            self.save()  # the engine is closed: nothing would write it later

    async def _persist(self) -> None:
        """Write the file when something changed, at most once per SAVE_INTERVAL."""
        loop = asyncio.get_running_loop()
        event = self._wake_event("persist")
        try:
            while True:
                if not self._store.dirty:  # a change sets it, then wakes us
                    await event.wait()
                event.clear()
                await loop.run_in_executor(None, self._save_quietly)
                await asyncio.sleep(SAVE_INTERVAL)
        finally:
            # The engine closes (its loop cancels this task): write what is left,
            # here, so it is on disk before close() returns.
            self._save_quietly()

    def _save_quietly(self) -> None:
        try:
            self.save()
        except Exception:
            log.exception("saving the heartbeat state failed")

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        event = self._wake_event("watch")  # first: a registration from now on wakes us
        with self._tasks_lock:
            sleep = self._first_sleep if self._first_sleep is not None else _MIN_SLEEP
            self._first_sleep = None
        while True:
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(event.wait(), sleep)
            event.clear()
            try:
                # On a worker thread: it may read the file, or wait for a write.
                await loop.run_in_executor(None, self.check_due)
            except Exception:
                log.exception("checking the heartbeats failed")
            sleep = self._sleep_for(self._clock())

    def _sleep_for(self, now: float) -> float:
        deadline = self._store.next_deadline()
        if deadline is None:
            return WATCH_INTERVAL
        return min(WATCH_INTERVAL, max(_MIN_SLEEP, deadline - now))

    def _refresh(self) -> None:
        with self._store.io_lock:
            self._send_recoveries(self._store.merge())


def heartbeat_monitor(engine: AlertSink) -> HeartbeatMonitor:
    """The engine's :class:`HeartbeatMonitor`, created on first use (it reads nothing yet)."""
    return engine.extension(HeartbeatMonitor)
