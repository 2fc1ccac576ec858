"""What the heartbeats know: registrations, last beats and missed flags, with their file.

No alerts and no event loop here (see :mod:`smtp_alerts._sources.heartbeats` for
those): a :class:`BeatStore` answers "who is overdue at this time" from plain
data and keeps the beats in a JSON file all processes share,
``heartbeats.json`` in ``SPOOL_DIR``::

    {"version": 1, "heartbeats": {"backup": {"last_beat": 1700000000.0, "missed": false}}}

The file is a :class:`~smtp_alerts._util.state_file.StateFile`: written
atomically and durably, so a reader sees the old file or the new one, never
half of one, and read again only when its identity (inode, modification time,
size) changed. A writer first merges what other processes wrote, holding the
file's lock from the read to the rename, so two processes saving at once both
keep their beats.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .._util.state_file import LOCK_WAIT, FileId, StateFile

__all__ = ["LOCK_WAIT", "BeatStore", "Registration", "State"]


@dataclass
class State:
    """What is known of one name."""

    last_beat: float | None = None
    missed: bool = False  # a missed-heartbeat alert went out and no beat came since


@dataclass(frozen=True)
class Registration:
    """A name this process watches: how often it must beat, and how to alert."""

    period: float
    grace: float
    since: float  # when it was registered: the baseline until the first beat
    level: int
    group: str

    def baseline(self, last_beat: float | None) -> float:
        """What lateness is counted from: the last beat, or the registration."""
        return last_beat if last_beat is not None else self.since

    def deadline(self, last_beat: float | None) -> float:
        """When the name counts as missed without another beat."""
        return self.baseline(last_beat) + self.period + self.grace


Recovery = tuple[str, float, "float | None", Registration]
"""A watched name, missed here, that beat in another process: name, when, the beat before."""
Overdue = tuple[str, Registration, "float | None"]
"""A watched name just found overdue: name, registration, its last beat."""


class BeatStore:
    """The registrations, the table of last beats, and the file.

    Two locks: :attr:`lock` guards the table in memory and is only ever held
    for a few dict operations (a beat takes nothing else); :attr:`io_lock`
    serialises reading, merging and writing the file, and whatever the caller
    does with what a merge found (so two threads never send the same note).

    Args:
        path: the JSON file.
        warn: reports a file that cannot be read or written (once each).
    """

    def __init__(self, path: Path, *, warn: Callable[[str], None]) -> None:
        self.path = path
        self.registered: dict[str, Registration] = {}  # the names this process watches
        self.states: dict[str, State] = {}
        self.dirty = False  # changed since the last write
        self._warn = warn
        self._file = StateFile(
            path,
            table="heartbeats",
            label="the heartbeat state",
            warn=lambda text: warn(f"smtp-alerts: {text}"),
        )
        self._loaded = False  # read on first need (never by a beat)
        self._seen: FileId | None = None  # the file as last read or written
        self._warned_write = False
        self.reset_locks()

    def reset_locks(self) -> None:
        """New locks: in a forked child, the parent's may be held by a thread that is gone."""
        self.lock = threading.Lock()
        self.io_lock = threading.Lock()

    def register(self, name: str, registration: Registration) -> Registration:
        """Watch ``name``; registered again, it keeps its first ``since``. No I/O."""
        with self.lock:
            previous = self.registered.get(name)
            if previous is not None:
                registration = replace(registration, since=previous.since)
            self.registered[name] = registration
            self.states.setdefault(name, State())
        return registration

    def beat(self, name: str, now: float) -> tuple[Recovery | None, bool]:
        """Record a beat of ``name`` at ``now``; no I/O.

        Returns:
            The recovery when a watched name was missed, and whether this is the
            first change since the last write (the caller asks for a write).
        """
        with self.lock:
            state = self.states.setdefault(name, State())
            registration = self.registered.get(name)
            recovery = None
            if state.missed and registration is not None:
                recovery = (name, now, state.last_beat, registration)
            state.last_beat = now if state.last_beat is None else max(state.last_beat, now)
            state.missed = False
            first_change, self.dirty = not self.dirty, True
        return recovery, first_change

    def overdue(self, now: float) -> tuple[list[Overdue], bool]:
        """Find the watched names overdue at ``now`` and not yet alerted; mark them missed.

        Returns:
            Those names, and whether this is the first change since the last write.
        """
        found: list[Overdue] = []
        with self.lock:
            for name, registration in self.registered.items():
                state = self.states.setdefault(name, State())
                if not state.missed and now > registration.deadline(state.last_beat):
                    state.missed = True
                    found.append((name, registration, state.last_beat))
            first_change = bool(found) and not self.dirty
            self.dirty = self.dirty or bool(found)
        return found, first_change

    def next_deadline(self) -> float | None:
        """The earliest time a watched name not yet alerted becomes overdue."""
        with self.lock:
            deadlines = [
                registration.deadline(state.last_beat)
                for name, registration in self.registered.items()
                if not (state := self.states.get(name) or State()).missed
            ]
        return min(deadlines, default=None)

    def get(self, name: str) -> State:
        """A copy of what is known of ``name`` (as of the last merge)."""
        with self.lock:
            state = self.states.get(name) or State()
            return State(state.last_beat, state.missed)

    def save(self) -> list[Recovery]:
        """Merge what other processes wrote, then write the table if it changed (``io_lock`` held).

        Returns:
            What the merge found (see :meth:`merge`).
        """
        recoveries: list[Recovery] = []
        try:
            # LOCK_WAIT is looked up in this module at each save: it can be changed here alone.
            with self._file.locked(wait=LOCK_WAIT):
                recoveries = self.merge()
                self._write()
        except OSError as exc:
            if not self._warned_write:
                self._warned_write = True
                self._warn(
                    f"smtp-alerts: cannot save the heartbeat state to {self.path} ({exc}); "
                    "beats are kept in memory only. Set SMTP_ALERTS_SPOOL_DIR to a writable folder."
                )
        return recoveries

    def merge(self) -> list[Recovery]:
        """Take in what other processes wrote since the last look (``io_lock`` held).

        A newer beat in the file wins. The missed flag of a watched name is
        ours; of any other name the file's, unless our beat is newer (it ended
        that episode).

        Returns:
            The watched names that were missed here and beat elsewhere.
        """
        current = self._file.identity()
        if self._loaded and current == self._seen:
            return []
        found = self._read(warn=not self._loaded)
        recoveries: list[Recovery] = []
        with self.lock:
            self._loaded = True
            self._seen = current
            for name, theirs in found.items():
                ours = self.states.get(name)
                if ours is None:
                    self.states[name] = theirs
                    continue
                registration = self.registered.get(name)
                if theirs.last_beat is not None and (
                    ours.last_beat is None or theirs.last_beat > ours.last_beat
                ):
                    if ours.missed and registration is not None:
                        recoveries.append((name, theirs.last_beat, ours.last_beat, registration))
                    ours.last_beat = theirs.last_beat
                    ours.missed = theirs.missed and registration is None
                elif registration is None and theirs.last_beat == ours.last_beat:
                    ours.missed = theirs.missed
        return recoveries

    def _write(self) -> None:
        with self.lock:
            if not self.dirty:
                return
            self.dirty = False  # a beat from now on makes it dirty again
            entries = {
                name: {"last_beat": state.last_beat, "missed": state.missed}
                for name, state in sorted(self.states.items())
            }
        written = self._file.write(entries)
        with self.lock:
            self._seen = written

    def _read(self, *, warn: bool) -> dict[str, State]:
        found = {name: _state(entry) for name, entry in self._file.read(warn=warn).items()}
        return {name: state for name, state in found.items() if state is not None}


def _state(entry: Any) -> State | None:
    """One entry of the file, or None when it is damaged: that name loses its beat, no other."""
    try:
        last = entry.get("last_beat")
        return State(
            last_beat=None if last is None else float(last),
            missed=bool(entry.get("missed", False)),
        )
    except (ValueError, TypeError, AttributeError):
        return None
