"""The store: what every engine of a host (or, later, a fleet) shares.

Incidents per group with their problems and windows, quotas and thread roots,
and the outbox of rendered digests, behind one interface
(:class:`~smtp_alerts._store.base.IncidentStore`). The default implementation,
:class:`~smtp_alerts._store.sqlite.SqliteStore`, lives in the spool's SQLite file
in ``SPOOL_DIR``; :mod:`.windows` holds the window rules it shares with the
engine's own aggregator; :mod:`.members` tells which engines on it are alive.
"""

from __future__ import annotations

from .base import Claimed, IncidentStore, Quota, Renderer
from .sqlite import SqliteStore
from .windows import Windows

__all__ = ["Claimed", "IncidentStore", "Quota", "Renderer", "SqliteStore", "Windows"]
