"""The check monitor: results into state machines, events into alerts, state onto disk.

A :class:`CheckMonitor` keeps one :class:`~smtp_alerts.checks.CheckMachine`
per check name, feeds it the results it is given (:meth:`CheckMonitor.report`)
and the passing of time (:meth:`CheckMonitor.tick`), and turns each event into
one :meth:`Engine.alert <smtp_alerts.Engine.alert>` call. From there the
alerts go through the same windows, quotas, fallback and spool as log records.

How events become emails, and why:

- Every alert has ``source="check"``, the check's name as its ``name`` and a
  key of its own per check, event kind and outage (``check db down #3``;
  reminders add their number: ``check db reminder #3.2``). The engine counts
  an alert whose key it has seen as a repeat of that problem and keeps the
  first one's text, so a key must never be reused for a different outage
  (the second outage's email would show the first one's detail and
  downtime), and a reminder must be a problem of its own: a repeat of the
  DOWN problem would wait for ``REPEAT_INTERVAL`` (4 hours by default)
  instead of ``resend_interval``. A new problem in a group that was notified
  is sent ``GROUP_INTERVAL`` after the previous email at the earliest, so a
  reminder comes after ``max(resend_interval, GROUP_INTERVAL)``.
- All checks share one group (``checks`` by default): when one network
  fault takes down several checks, their DOWN alerts arrive in one digest,
  and the DOWN, reminder and RECOVERED emails of an incident thread together.
- DOWN, reminders and FLAPPING are ``ERROR``, not ``CRITICAL``: the engine
  sends a new CRITICAL problem at once, without ``GROUP_WAIT``. The
  ``retries`` have already debounced the check, and a short wait is what
  collects ten checks that fail together into one email instead of sending
  the first alone and holding the other nine back for ``GROUP_INTERVAL``.
- RECOVERED is ``INFO``: good news, shown below the failures of the same
  digest. The engine delivers every alert it is given, whatever its level.

The state lives in ``checks-state.json`` in ``SPOOL_DIR``, a
:class:`~smtp_alerts._util.state_file.StateFile` (atomic, fsynced, written
under a lock shared by processes) rewritten whenever a check's state
changes, so a restarted process continues where the last one stopped: a
service that was DOWN is not announced twice, and its RECOVERED email still
states the whole downtime. Entries written by other processes sharing the
directory are kept. A corrupt file is moved aside with a warning, and the
checks start fresh; nothing here ever raises into the program.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._util.humanize import format_duration, format_time
from .._util.state_file import StateFile
from ._state import (
    CheckEvent,
    CheckMachine,
    CheckPolicy,
    CheckState,
    CheckStatus,
    EventKind,
    require_name,
)
from ._text import clip

if TYPE_CHECKING:
    from .._engine.sink import AlertSink
    from .._util.clock import Clock

__all__ = ["DEFAULT_GROUP", "STATE_FILENAME", "TICK_INTERVAL", "CheckMonitor", "monitor_for"]

log = logging.getLogger("smtp_alerts.checks")

STATE_FILENAME = "checks-state.json"
"""The file in ``SPOOL_DIR`` that keeps every check's state across restarts."""

DEFAULT_GROUP = "checks"
"""The notification group of check alerts."""

TICK_INTERVAL = 5.0
"""Seconds between two looks for due reminders (and flapping episodes ending)."""

_FILE_VERSION = 1
_HEADLINE_DETAIL = 200  # characters of the detail in the message's first line


class CheckMonitor:
    """Tracks the state of named checks and alerts through an engine.

    Thread-safe. :meth:`report` does a little file I/O (the state file) when
    a state changes; :meth:`submit` hands the result to the engine's loop and
    returns at once, for callers that must never wait.

    Args:
        engine: the engine that sends the alerts; its clock is the monitor's.
        policy: the policy of checks reported without one.
        group: the notification group of the alerts.
        path: the state file; ``checks-state.json`` in ``SPOOL_DIR`` when omitted.
        on_event: called with each event after its alert is raised (the
            ``watch`` command prints them); its exceptions are logged.
    """

    def __init__(
        self,
        engine: AlertSink,
        *,
        policy: CheckPolicy | None = None,
        group: str = DEFAULT_GROUP,
        path: Path | None = None,
        on_event: Callable[[CheckEvent], None] | None = None,
    ) -> None:
        self._engine = engine
        self._clock: Clock = engine.clock
        self._policy = policy if policy is not None else CheckPolicy()
        self._group = group
        self._path = path
        self.on_event = on_event
        self._lock = threading.RLock()
        self._machines: dict[str, CheckMachine] = {}
        self._stored: dict[str, dict[str, Any]] | None = None  # None: not read yet
        self._written: dict[str, dict[str, Any]] = {}
        self._save_warned = False
        self._ticker: concurrent.futures.Future[None] | None = None
        self._ticker_pid = 0

    def __repr__(self) -> str:
        return f"<CheckMonitor {len(self._machines)} checks, group={self._group!r}>"

    @property
    def path(self) -> Path:
        """The state file."""
        if self._path is None:
            self._path = self._engine.settings.spool_path / STATE_FILENAME
        return self._path

    # -- results and time ---------------------------------------------------------

    def report(
        self,
        name: str,
        ok: bool,  # noqa: FBT001 - report(name, ok) is the push API's shape
        detail: str = "",
        policy: CheckPolicy | None = None,
        *,
        at: float | None = None,
    ) -> CheckStatus:
        """Take one result of the check ``name`` and alert on what it changes.

        Args:
            name: the check's name; its identity across results and restarts.
            ok: whether it passed.
            detail: what it saw, in a line; shown in the alerts.
            policy: the check's policy from now on; None keeps the one it has
                (the monitor's default for a new check).
            at: when the result was taken; the engine clock's time when omitted.

        Returns:
            The check's status after the result.

        Raises:
            ValueError: ``name`` is empty.
        """
        require_name(name)
        when = self._clock() if at is None else at
        with self._lock:
            machine = self._machine(name, policy)
            events = machine.record(bool(ok), str(detail), at=when)
            status = machine.status()
            self._save()
        self._emit(events)
        return status

    def submit(
        self,
        name: str,
        ok: bool,  # noqa: FBT001 - report(name, ok) is the push API's shape
        detail: str = "",
        policy: CheckPolicy | None = None,
    ) -> None:
        """Like :meth:`report`, but done on the engine's loop: returns at once.

        The time is taken now, in the caller's thread. Reminders need a timer:
        this starts the monitor's ticker on the engine's loop.

        Args:
            name: the check's name.
            ok: whether it passed.
            detail: what it saw, in a line.
            policy: the check's policy from now on; None keeps the one it has.

        Raises:
            RuntimeError: the engine is closed.
        """
        at = self._clock()

        async def report_on_loop() -> None:
            try:
                self.report(name, ok, detail, policy, at=at)
            except Exception:
                log.exception("could not take the result of check %r", name)

        self._engine.run_coroutine(report_on_loop())
        self.start()

    def tick(self, *, at: float | None = None) -> list[CheckEvent]:
        """Raise the alerts that time has made due (reminders, flapping that ended).

        The ticker calls this every :data:`TICK_INTERVAL` seconds; call it
        yourself with a manual clock. Only checks reported by this process are
        looked at.

        Args:
            at: the time now; the engine clock's when omitted.

        Returns:
            The events raised.
        """
        when = self._clock() if at is None else at
        with self._lock:
            events = [event for m in self._machines.values() for event in m.tick(at=when)]
            if events:
                self._save()
        self._emit(events)
        return events

    def status(self, name: str) -> CheckStatus | None:
        """The status of the check ``name``, or None if it was never reported."""
        with self._lock:
            machine = self._machines.get(name)
            if machine is not None:
                return machine.status()
            data = self._load().get(name)
        if data is None:
            return None
        try:  # a look only: the check stays another process's until reported here
            return CheckMachine.from_dict(name, data, self._policy, clock=self._clock).status()
        except ValueError:
            return None

    def statuses(self) -> dict[str, CheckStatus]:
        """The status of every check this process reported."""
        with self._lock:
            return {name: machine.status() for name, machine in self._machines.items()}

    # -- the ticker -----------------------------------------------------------------

    def start(self) -> None:
        """Run :meth:`tick` every :data:`TICK_INTERVAL` seconds on the engine's loop.

        Safe to call again: one ticker runs per monitor (and process).

        Raises:
            RuntimeError: the engine is closed.
        """
        with self._lock:
            ticker = self._ticker
            if ticker is not None and not ticker.done() and self._ticker_pid == os.getpid():
                return
            self._ticker = self._engine.run_coroutine(self._tick_forever())
            self._ticker_pid = os.getpid()

    def stop(self) -> None:
        """Stop the ticker (the engine's close stops it too)."""
        with self._lock:
            ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()

    def close(self) -> None:
        """Nothing to write when the engine closes: every change is on disk already.

        The ticker runs on the engine's loop and ends with it.
        """

    def after_fork(self) -> None:
        """Forget the parent's lock and ticker: this is a forked child (the engine's fork hook)."""
        self._lock = threading.RLock()
        self._ticker = None

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_INTERVAL)
            try:
                self.tick()
            except Exception:
                log.exception("the check monitor's tick failed")

    # -- alerts -------------------------------------------------------------------

    def _emit(self, events: list[CheckEvent]) -> None:
        for event in events:
            policy = self._policy_of(event.name)
            message, details, level = describe(event, policy)
            key = f"check {event.name} {event.kind} #{event.outage}"
            if event.kind is EventKind.REMINDER:
                key += f".{event.reminder}"
            accepted = self._engine.alert(
                message,
                level=level,
                name=event.name,
                key=key,
                details=details,
                group=self._group,
                source="check",
            )
            if not accepted:
                log.warning("the engine dropped the %s alert of check %r", event.kind, event.name)
            if self.on_event is not None:
                try:
                    self.on_event(event)
                except Exception:
                    log.exception("the check monitor's on_event callback failed")

    def _policy_of(self, name: str) -> CheckPolicy:
        with self._lock:
            machine = self._machines.get(name)
            return machine.policy if machine is not None else self._policy

    # -- state ----------------------------------------------------------------------

    def _machine(self, name: str, policy: CheckPolicy | None) -> CheckMachine:
        machine = self._machine_if_known(name)
        if machine is None:
            machine = CheckMachine(name, policy or self._policy, clock=self._clock)
            self._machines[name] = machine
        elif policy is not None:
            machine.policy = policy
        return machine

    def _machine_if_known(self, name: str) -> CheckMachine | None:
        machine = self._machines.get(name)
        if machine is not None:
            return machine
        data = self._load().get(name)
        if data is None:
            return None
        try:
            machine = CheckMachine.from_dict(name, data, self._policy, clock=self._clock)
        except ValueError as exc:
            log.warning("%s: %s; check %r starts fresh", self.path, exc, name)
            return None
        self._machines[name] = machine
        self._written[name] = data
        return machine

    def _load(self) -> dict[str, dict[str, Any]]:
        """The stored states, read once (a missing or bad file counts as empty)."""
        if self._stored is None:
            self._stored = self._read(warn=True)
        return self._stored

    def _state_file(self) -> StateFile:
        return StateFile(
            self.path,
            table="checks",
            version=_FILE_VERSION,
            label="the check state",
            warn=log.warning,
        )

    def _read(self, *, warn: bool) -> dict[str, dict[str, Any]]:
        checks = self._state_file().read(warn=warn)
        return {name: entry for name, entry in checks.items() if isinstance(entry, dict)}

    def _save(self) -> None:
        """Write the states that changed, keeping the other entries of the file."""
        ours = {name: machine.to_dict() for name, machine in self._machines.items()}
        if ours == self._written:
            return
        state = self._state_file()
        try:
            # Other processes (a cron job, a second watcher) may share the directory:
            # keep what they wrote, replace only our own checks, under the file's lock.
            with state.locked():
                state.write({**self._read(warn=False), **ours})
        except OSError as exc:
            if not self._save_warned:
                self._save_warned = True
                log.warning(
                    "cannot write the check state %s (%s): kept in memory only, so a "
                    "restart forgets which checks are down",
                    state.path,
                    exc,
                )
            return
        self._written = ours


def describe(event: CheckEvent, policy: CheckPolicy) -> tuple[str, str, int]:
    """The alert for an event: its message, its details and its logging level.

    Args:
        event: what happened.
        policy: the check's policy (its flapping window is named in the text).

    Returns:
        ``(message, details, level)``.
    """
    name, detail = event.name, event.detail
    short = clip(detail, _HEADLINE_DETAIL) if detail else "no detail"
    lines = [f"Check:   {name}", f"State:   {event.state}"]
    since = event.since
    if event.kind is EventKind.DOWN:
        message, level = f"{name} is DOWN: {short}", logging.ERROR
        if since is not None:
            lines.append(f"Since:   {format_time(since)} (first failure)")
    elif event.kind is EventKind.REMINDER:
        down_for = format_duration(event.at - since) if since is not None else "a while"
        message = f"{name} is still DOWN after {down_for} (reminder {event.reminder}): {short}"
        level = logging.ERROR
        if since is not None:
            lines.append(f"Since:   {format_time(since)} (first failure), down for {down_for}")
        lines.append(f"Reminder {event.reminder} of at most {policy.max_reminders}")
    elif event.kind is EventKind.RECOVERED:
        downtime = format_duration(event.downtime or 0.0)
        message = f"{name} RECOVERED after {downtime} down, now UP: {short}"
        level = logging.INFO
        if since is not None:
            end = since + (event.downtime or 0.0)
            lines.append(f"Down:    {downtime}, from {format_time(since)} to {format_time(end)}")
    elif event.kind is EventKind.FLAPPING:
        window = format_duration(policy.flap_window)
        message = (
            f"{name} is FLAPPING: {event.flips} changes between up and down within {window}; "
            f"its alerts pause until it is stable for {window}"
        )
        level = logging.ERROR
    else:
        window = format_duration(policy.flap_window)
        if event.state is CheckState.UP:
            message, level = f"{name} is stable again and UP: {short}", logging.INFO
        elif event.state is CheckState.DOWN:
            message, level = f"{name} stopped flapping but is DOWN: {short}", logging.ERROR
            if since is not None:
                lines.append(f"Since:   {format_time(since)} (first failure)")
        else:
            message, level = f"{name} stopped flapping, {event.state}: {short}", logging.WARNING
        lines.append(f"No change between up and down for {window}: alerts resume.")
    lines.append(f"Detail:  {detail or 'none'}")
    lines.append(f"At:      {format_time(event.at)}")
    return message, "\n".join(lines), level


# -- one monitor per engine ---------------------------------------------------------------


def monitor_for(engine: AlertSink) -> CheckMonitor:
    """The engine's own monitor (behind ``engine.report`` and runners without one), made once.

    Args:
        engine: the engine.

    Returns:
        Its monitor, created on first use and kept by the engine; creating it does no I/O.
    """
    return engine.extension(CheckMonitor)
