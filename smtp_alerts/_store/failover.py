"""Redis with the local store behind it: when Redis does not answer, the host sends on its own.

With ``REDIS_URL`` set an engine shares through Redis; its outbox, and any
counts an earlier process left, stay in the local SQLite store. When Redis is
unreachable, slow (its calls time out) or failing, :class:`FailoverStore` moves
the engine to the local store: counts pushed from then on are kept on the
host's disk and sent within the local windows, by this host alone. Other hosts
may send the same incident: duplicates, never silence. It says so once on
stderr and in the next digest, tries Redis again every few seconds, and goes
back to it when it answers; what the local store holds meanwhile is still sent
from there.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import Protocol

from smtp_alerts._util.stderr import warn
from smtp_alerts.models import Digest, OutgoingMessage

from .base import Claimed, IncidentStore, Quota, Renderer

__all__ = ["PROBE_EVERY", "FailoverStore", "RemoteStore"]

log = logging.getLogger("smtp_alerts.store")

PROBE_EVERY = 3.0
"""Seconds between two attempts to reach Redis again while the host sends on its own."""


class RemoteStore(IncidentStore, Protocol):
    """A store on the network: it can be probed, and says where it is (never a password)."""

    where: str

    def ping(self) -> None:
        """Raise OSError unless it answers now."""


class FailoverStore:
    """The remote store while it answers, else the local one; the local one's leftovers always.

    Args:
        remote: the shared store (Redis).
        local: the host's own store, beside its outbox.
        say: where the one line about an outage goes (stderr).
        probe_every: seconds between attempts to reach the remote store again.
        clock: wall-clock time for the notice's times (the outage is real time).
    """

    polls_remotely = True
    """The store's due times can change without this engine: claim on every poll."""

    def __init__(
        self,
        remote: RemoteStore,
        local: IncidentStore,
        *,
        say: Callable[[str], None] = warn,
        probe_every: float = PROBE_EVERY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._remote = remote
        self._local = local
        self._say = say
        self._probe_every = probe_every
        self._clock = clock
        self._lock = threading.Lock()  # pushes and claims come from worker threads
        self._down = False  # the remote store does not answer: on the local one
        self._since: float | None = None  # when it stopped answering (the last outage)
        self._back_at: float | None = None  # when it answered again
        self._notice = False  # the next digest tells of the outage
        self._probed = 0.0

    @property
    def shared(self) -> bool:
        """Whether the engine shares through the remote store now."""
        return not self._down

    def _fall(self, exc: OSError) -> None:
        with self._lock:
            if self._down:
                return
            self._down, self._since, self._back_at = True, self._clock(), None
            self._notice = True
            self._probed = time.monotonic()
        self._say(
            f"smtp-alerts: {exc}; this host sends on its own (its store in SPOOL_DIR) "
            "until Redis answers again: duplicates possible"
        )

    def _maybe_return(self) -> None:
        """While on the local store: try the remote one again, every probe_every seconds."""
        if not self._down or time.monotonic() - self._probed < self._probe_every:
            return
        self._probed = time.monotonic()
        try:
            self._remote.ping()
        except OSError:
            return
        with self._lock:
            self._down, self._back_at, self._notice = False, self._clock(), True
        self._say(f"smtp-alerts: Redis at {self._remote.where} answers again; sharing through it")

    def _noticed(self, render: Renderer) -> Renderer:
        """``render``, adding the outage's line to the first digest after it was noticed."""

        def render_with_notice(digest: Digest) -> OutgoingMessage:
            with self._lock:
                line = self._outage_line() if self._notice else None
                self._notice = False
            if line is not None:
                digest = replace(digest, notices=(*digest.notices, line))
            return render(digest)

        return render_with_notice

    def _outage_line(self) -> str:
        where = self._remote.where
        if self._down:
            return (
                f"Redis at {where} is unreachable since {_minute(self._since)}; "
                "this host sends on its own: duplicates possible"
            )
        return (
            f"Redis at {where} was unreachable from {_minute(self._since)} to "
            f"{_minute(self._back_at)}; this host sent on its own: duplicates possible"
        )

    # -- the store's interface -----------------------------------------------------------

    def push(self, deltas: Sequence[Digest]) -> None:
        """Push to Redis; to the local store while Redis does not answer."""
        self._maybe_return()
        if self.shared:
            try:
                self._remote.push(deltas)
            except OSError as exc:
                self._fall(exc)
            else:
                return
        self._local.push(deltas)

    def claim_due(
        self, render: Renderer, quota: Quota, *, force: bool = False
    ) -> tuple[list[Claimed], float | None]:
        """Claim from Redis (while it answers) and from the local store (when it holds any)."""
        self._maybe_return()
        render = self._noticed(render)
        claimed: list[Claimed] = []
        held: list[float] = []
        if self.shared:
            try:
                claimed, reopens = self._remote.claim_due(render, quota, force=force)
            except OSError as exc:
                self._fall(exc)
            else:
                held += [] if reopens is None else [reopens]
        if not self.shared or self._local.next_due() is not None:
            local, reopens = self._local.claim_due(render, quota, force=force)
            claimed += local
            held += [] if reopens is None else [reopens]
        return claimed, min(held, default=None)

    def next_due(self) -> float | None:
        """The earliest of the remote store's (as of its last tick) and the local store's."""
        times = [self._local.next_due()]
        if self.shared:
            times.append(self._remote.next_due())
        return min((t for t in times if t is not None), default=None)

    def leave(self) -> bool:
        """Leave both; whether someone stays to send what this engine leaves in them."""
        remote_stays = None
        if self.shared:
            try:
                remote_stays = self._remote.leave()
            except OSError as exc:
                self._fall(exc)
        local_stays = self._local.leave()
        if remote_stays is None:  # our counts are in the local store
            return local_stays
        return remote_stays and (local_stays or self._local.next_due() is None)


def _minute(at: float | None) -> str:
    if at is None:
        return "an unknown time"
    moment = datetime.fromtimestamp(math.floor(at / 60) * 60, tz=timezone.utc)
    return moment.strftime("%H:%M UTC")
