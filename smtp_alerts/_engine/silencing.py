"""Silencing on the engine's side: silenced problems leave the deltas before the store.

:class:`Silencer` keeps a copy of the store's silences (read again at most once
a second, on the engine's worker thread), takes the problems an active silence
covers out of each push and adds their occurrences to that silence's count in
the store instead; and once a silence has ended, it gives the line that the
next digest carries ("it held 1,234 occurrences"), after which the silence is
forgotten. Nothing is silently dropped: what a silence holds is counted and said.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone

from .._store.silences import Silence, SilenceBook
from ..models import Digest, Problem

__all__ = ["REFRESH", "Silencer"]

log = logging.getLogger("smtp_alerts.engine")

REFRESH = 1.0
"""Seconds a copy of the store's silences is used before it is read again."""


class Silencer:
    """The store's silences, applied to what an engine pushes. Used on worker threads.

    Args:
        book: the store's silences.
        refresh: seconds between two reads of them (:data:`REFRESH` when None).
    """

    def __init__(self, book: SilenceBook, *, refresh: float | None = None) -> None:
        self._book = book
        self._refresh_every = REFRESH if refresh is None else refresh
        self._silences: list[Silence] = []
        self._synced: tuple[float, float] | None = None  # (store time, monotonic) at the read

    def _read(self, *, fresh: bool = False) -> float | None:
        """The store's time now, reading the silences again when the copy is old."""
        synced = self._synced
        if fresh or synced is None or time.monotonic() - synced[1] >= self._refresh_every:
            try:
                now, silences = self._book.now(), self._book.all()
            except (OSError, sqlite3.Error):
                log.debug("reading the silences failed; the last copy holds", exc_info=True)
            else:
                self._silences, self._synced = silences, (now, time.monotonic())
        if self._synced is None:
            return None
        at, mono = self._synced
        return at + time.monotonic() - mono

    def split(self, deltas: Sequence[Digest]) -> list[Digest]:
        """The deltas without silenced problems; their occurrences are added to the silences."""
        now = self._read()
        active = [s for s in self._silences if now is not None and s.ends_at > now]
        if not active:
            return list(deltas)
        held: dict[str, int] = {}
        kept = []
        for delta in deltas:
            problems: list[Problem] = []
            for problem in delta.problems:
                silence = next((s for s in active if s.matches(problem.alert)), None)
                if silence is None:
                    problems.append(problem)
                else:
                    held[silence.id] = held.get(silence.id, 0) + problem.count
            kept.append(
                delta
                if len(problems) == len(delta.problems)
                else replace(delta, problems=tuple(problems))
            )
        if held:
            try:
                self._book.hold(held)
            except (OSError, sqlite3.Error):
                # Not emailed and not counted in the silence: say so in the log.
                log.warning("could not count %d silenced occurrences", sum(held.values()))
        return kept

    def ended(self) -> tuple[tuple[str, ...], list[str]]:
        """The lines for the next digest about silences that ended, and their ids.

        Call :meth:`forget` with the ids once a digest carried the lines (or
        right away when there are none).
        """
        now = self._read()
        if now is None or not any(s.ends_at <= now for s in self._silences):
            return (), []
        now = self._read(fresh=True)  # their latest counts
        ended = [s for s in self._silences if now is not None and s.ends_at <= now]
        lines = tuple(_ended_line(s) for s in ended if s.held)
        return lines, [s.id for s in ended]

    def forget(self, ids: list[str]) -> None:
        """Drop ended silences whose counts were said."""
        try:
            self._book.forget(ids)
        except (OSError, sqlite3.Error):
            log.debug("forgetting ended silences failed; said again later", exc_info=True)
        self._silences = [s for s in self._silences if s.id not in ids]


def _ended_line(silence: Silence) -> str:
    ended = datetime.fromtimestamp(silence.ends_at, tz=timezone.utc).strftime("%H:%M UTC")
    occurrences = "occurrence" if silence.held == 1 else "occurrences"
    return (
        f"Silence {silence.id} ({silence.describe()}) ended at {ended}; "
        f"it held {silence.held:,} {occurrences}, not emailed."
    )
