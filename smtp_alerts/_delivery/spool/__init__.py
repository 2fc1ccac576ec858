"""The durable store of undelivered digests, and the audit trail of delivery attempts.

A rendered digest is added to the spool before its first attempt and deleted only
when a channel accepted it, so a crash, a SIGKILL or a restart loses nothing: the
next engine on the same directory finds the entry and sends it, late but with its
original time (:attr:`SpoolEntry.created`).

One SQLite database in WAL mode (``spool.sqlite3`` in the spool directory) holds
three tables::

    entries   one row per undelivered message: its email bytes, its other fields
              as JSON, when it was first spooled, its attempts, when it is due, and
              which process (``owner``) is attempting it now, since when
    history   one row per delivery attempt: digest, channel, the step it reached,
              reply code and text, duration, success; pruned after a retention
    counters  each engine's last saved counters, for ``smtp-alerts spool list``

Several processes may share one directory. A process claims entries atomically
(``BEGIN IMMEDIATE``) before attempting them, so no two processes send the same
entry. A claim names its owner as ``host:pid:start-time:nonce``. An engine's
owner holds an ``flock`` on its own file under ``owners/`` for its lifetime
(:mod:`.liveness`), which tells whether it lives from any pid namespace; an
owner without one (a CLI, an older version) that is a dead process on this host
is taken over at once (the start time tells a reused pid apart), one from
another host after :data:`DEFAULT_LEASE` seconds.

The spool is bounded: past ``max_entries``, the oldest unclaimed entries are
replaced by one summary entry that names them, never dropped.

One module per concept: :mod:`.store` (:class:`Spool`: add, list, delete),
:mod:`.database` (the SQLite file: schema, opening, transactions, forks),
:mod:`.gate` (no thread inside SQLite at a fork), :mod:`.entry`
(:class:`SpoolEntry`), :mod:`.claims` (owners, liveness, claiming, releasing),
:mod:`.history` (the attempt log and the engines' counters), :mod:`.liveness`
(owners' lifetime locks) and :mod:`.overflow` (merging the oldest entries when
the spool is full).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._util.lazy import lazy_exports

if TYPE_CHECKING:
    from .claims import DEFAULT_LEASE, process_identity
    from .entry import SpoolEntry
    from .gate import sqlite_gate
    from .history import DEFAULT_HISTORY_RETENTION, Attempt
    from .probe import SPOOL_FILENAME
    from .store import DEFAULT_MAX_ENTRIES, Spool

__all__ = [
    "DEFAULT_HISTORY_RETENTION",
    "DEFAULT_LEASE",
    "DEFAULT_MAX_ENTRIES",
    "SPOOL_FILENAME",
    "Attempt",
    "Spool",
    "SpoolEntry",
    "process_identity",
    "sqlite_gate",
]

# Loaded on first use: every engine asks the spool's gate and probe as it is
# built (cheap), and only an engine that runs needs the rest.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DEFAULT_HISTORY_RETENTION": ".history",
        "DEFAULT_LEASE": ".claims",
        "DEFAULT_MAX_ENTRIES": ".store",
        "SPOOL_FILENAME": ".probe",
        "Attempt": ".history",
        "Spool": ".store",
        "SpoolEntry": ".entry",
        "process_identity": ".claims",
        "sqlite_gate": ".gate",
    },
    __all__,
    present=False,
)
