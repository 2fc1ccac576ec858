"""The store: what every engine of a host (or, with ``REDIS_URL``, a fleet) shares.

Incidents per group with their problems and windows, quotas and thread roots,
and the outbox of rendered digests, behind one interface
(:class:`~smtp_alerts._store.base.IncidentStore`). The default implementation,
:class:`~smtp_alerts._store.sqlite.SqliteStore`, lives in the spool's SQLite file
in ``SPOOL_DIR``; :mod:`.redis` keeps it in Redis for a fleet (imported only
when ``REDIS_URL`` is set), :mod:`.failover` falls back from Redis to the host's
store; :mod:`.windows` holds the window rules it shares with the engine's own
aggregator, :mod:`.timeline` the per-interval counts of a problem's timeline;
:mod:`.silences` keeps the silences.
"""

from __future__ import annotations

from .base import Claimed, IncidentStore, Quota, Renderer
from .sqlite import SqliteStore
from .windows import Windows

__all__ = ["Claimed", "IncidentStore", "Quota", "Renderer", "SqliteStore", "Windows"]
