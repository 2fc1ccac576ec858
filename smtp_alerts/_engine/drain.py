"""The drain: what the engine's thread takes from the intake into its aggregator, and keeps.

The engine's thread starts on the first alert, and must then load its loop,
the settings model and the channels: a few hundred milliseconds on a busy
machine, during which a kill would lose what was accepted (DESIGN: an abrupt
kill loses at most the last tick). So the thread first opens the spool and
the store beside it and pushes what the intake took, with this module only:
it loads no asyncio, renderer, pydantic or delivery code, and the engine core
loads it as the engine is built (with the store's code: sqlite3, the spool).
The runner (:mod:`smtp_alerts._engine.runner`) then drains through it for the
engine's life.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Mapping
from itertools import islice
from typing import TYPE_CHECKING

from .._delivery.spool.store import Spool
from .._store.sqlite import SqliteStore
from .._store.windows import Windows
from .aggregator import Aggregator
from .capture import Light, PendingAlert

if TYPE_CHECKING:
    from collections import deque

    from .._delivery.spool.overflow import Summarizer
    from ..models import Digest, OutgoingMessage
    from .core import EngineCore
    from .intake import Queued, Repeat

__all__ = ["Drain"]


class Drain:
    """Takes what producers queued into the aggregator, counting; opens the store first.

    Args:
        core: the engine core whose intake it takes from (its quick settings
            give the windows until the settings model is built).
    """

    def __init__(self, core: EngineCore) -> None:
        self._core = core
        start = core._quick  # noqa: SLF001 - the core's other half (module docstring)
        self.aggregator = Aggregator(
            group_wait=start.group_wait,
            group_interval=start.group_interval,
            repeat_interval=start.repeat_interval,
            clock=core.clock,
        )
        self.accepted = 0
        self.suppressed = 0
        self.dropped = 0
        self.took_new = False  # the last drains took a new problem, not only repeats
        self.spool: Spool | None = None
        self.store: SqliteStore | None = None
        #: Merges the oldest digests when the spool is full; set once the renderer loads.
        self.summarize: Summarizer | None = None

    def open_store(self) -> None:
        """Open the spool and the store beside it, take the intake and push it; blocking.

        Leaves :attr:`store` None when there is no usable spool or store: the
        runner then opens the spool again (and says why it cannot) or sends
        per process.
        """
        core = self._core
        if not core._use_spool:  # noqa: SLF001
            return
        start = core._quick  # noqa: SLF001
        try:
            spool = Spool(start.spool_path, clock=core.clock, summarize=self._merged)
        except (OSError, sqlite3.Error):
            return  # the runner opens it again, and warns
        self.spool = spool
        if start.redis:
            # A fleet member's counts go to Redis, which the runner opens with
            # the settings model: pushed to this host's store first, they would
            # be sent by this host alone.
            return
        windows = Windows(start.group_wait, start.group_interval, start.repeat_interval)
        try:
            self.store = SqliteStore(spool, windows, clock=core.clock)
        except (OSError, sqlite3.Error):
            return  # the runner warns, and sends per process
        self.take()
        aggregator = self.aggregator
        deltas = [d for g in aggregator.pending_groups() if (d := aggregator.form(g, delta=True))]
        if deltas:
            deltas = self._unsilenced(spool, deltas)
        if deltas:
            try:
                self.store.push(deltas)
            except (sqlite3.Error, OSError, ValueError, TypeError):
                for delta in deltas:  # the runner's first push tries again, or unshares
                    self.aggregator.restore(delta)

    def _unsilenced(self, spool: Spool, deltas: list[Digest]) -> list[Digest]:
        """What the store's silences let through (they count what they hold), as every push."""
        # Loaded here, on the engine's thread: the core loads this module.
        from .._store.silences import SqliteSilences  # noqa: PLC0415
        from .silencing import Silencer  # noqa: PLC0415

        try:
            return Silencer(SqliteSilences(spool, clock=self._core.clock)).split(deltas)
        except (OSError, sqlite3.Error):
            return deltas  # the runner's link tries again with its own

    def _merged(self, messages: list[OutgoingMessage]) -> OutgoingMessage:
        summarize = self.summarize
        if summarize is None:
            raise RuntimeError("the spool overflowed before the engine could merge")
        return summarize(messages)

    def take(self) -> int:
        """Take in what producers queued; returns how many items."""
        core = self._core
        batches, new = core._take_queued()  # noqa: SLF001
        if not batches and not new:
            self.take_dropped(0)
            return 0
        aggregator = self.aggregator
        if new:  # first: the repeats taken may be of these problems
            self._take_new(core._queue, new)  # noqa: SLF001
        repeated = lost = 0
        for batch, start, stop, free in batches:
            repeated += stop - start
            lost += self._count_repeats(batch, start, stop, whole=free and not start)
        self.accepted += repeated + new - lost
        self.suppressed += repeated - lost
        self.take_dropped(lost)
        evicted = aggregator.pop_evicted()
        if evicted:
            core._forget(evicted)  # noqa: SLF001 - re-capture the evicted on their next occurrence
        # Incidents fill up as problems arrive and empty when they close.
        core._full_groups = aggregator.full_groups()  # noqa: SLF001
        core._give_room(aggregator.room())  # noqa: SLF001
        return repeated + new

    def _take_new(self, queue: deque[Queued], count: int) -> None:
        aggregator = self.aggregator
        lights: list[Light] = []
        for _ in range(count):
            item = queue.popleft()
            if isinstance(item, tuple):  # a new problem captured lightly: its incident is full
                lights.append(item)
            else:
                aggregator.add(item.finish() if isinstance(item, PendingAlert) else item)
        if lights:
            aggregator.add_lights(lights)
        self.took_new = True

    def _count_repeats(self, batch: deque[Repeat], start: int, stop: int, *, whole: bool) -> int:
        """Count ``batch[start:stop]`` into the aggregator; returns how many were lost.

        A flood of repeats is the engine's steadiest work, so it is counted
        in C: a whole batch of one problem by ``deque.count``, any other by
        ``Counter``, keyed by the problem's cell (an identity hash: a
        fingerprint tuple's hash is computed anew each time). Each cell says
        when its latest repeat happened. ``whole``: the batch is all to count
        and no producer holds it (``deque.count`` looks at every item).
        """
        first = batch[start]
        occurrences: Mapping[Repeat, int]
        if whole and batch.count(first) == stop:
            occurrences = {first: stop}
        else:
            occurrences = Counter(islice(batch, start, stop))
        lost = 0
        count_into = self.aggregator.count
        for known, repeated in occurrences.items():
            text = known.text
            if text:
                known.text = ""
            known.wants_text = True  # the next repeat gives the next later sample
            if not count_into(known.canonical, known.last, repeated, text):
                lost += repeated  # its sample was evicted: shown as dropped, not lost
        return lost

    def take_dropped(self, lost: int) -> None:
        """Count what the intake dropped since the last call, plus ``lost``, into the digest."""
        dropped = self._core._pop_dropped() + lost  # noqa: SLF001
        if dropped:
            self.dropped += dropped
            self.aggregator.note_dropped(dropped)
