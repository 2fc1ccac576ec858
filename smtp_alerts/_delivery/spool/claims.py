"""Owners and claims: which process is attempting an entry, and when another may take it.

A process claims entries atomically (in one ``BEGIN IMMEDIATE`` transaction)
before attempting them, so no two processes send the same entry. A claim names
its owner as ``host:pid:start-time:nonce`` (:func:`process_identity`). An owner
holding its lifetime lock (:mod:`.liveness`) is alive exactly while the lock is
held, whatever pid namespace it runs in. Otherwise: a claim whose owner is a
dead process on this host is taken over at once (the start time tells a reused
pid apart); one from another host after the lease (:data:`DEFAULT_LEASE`
seconds), since its liveness cannot be checked from here.

The functions below run inside the caller's transaction (see
:meth:`.database.Database.write`); :class:`Claimant` decides whose claims count.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
from pathlib import Path

from smtp_alerts._delivery.serialize import message_from_row

from .entry import ENTRY_COLUMNS, SpoolEntry, entry_from_row
from .liveness import lock_says_alive

__all__ = [
    "DEFAULT_CLAIM_LIMIT",
    "DEFAULT_LEASE",
    "UNREADABLE_RETRY_DELAY",
    "Claimant",
    "claim_due",
    "mark_failed",
    "next_due",
    "process_identity",
    "release",
]

DEFAULT_LEASE = 15 * 60.0
"""Seconds after which a claim held by another host's process may be taken over:
its liveness cannot be checked from here."""
DEFAULT_CLAIM_LIMIT = 50
UNREADABLE_RETRY_DELAY = 86400.0
"""An entry that cannot be read (damaged, or written by a newer version) is parked
this long instead of failing every claim."""

# os.kill(pid, 0) probes a pid on POSIX; on Windows it would terminate the process.
_CAN_PROBE_PIDS = os.name == "posix"

LivenessCache = dict[str, bool]
"""Owner name to "is dead", for one pass over the entries: each pid is probed once."""


def _process_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes().decode("latin-1")
    except OSError:
        return None
    # Field 2 (the command name) is in parentheses and may hold spaces and
    # parentheses itself: count fields from the last ")". Field 22 is the start time.
    fields = stat[stat.rfind(")") + 1 :].split()
    return fields[19] if len(fields) > 19 else None


def process_identity(pid: int | None = None) -> str:
    """The owner name of a process: ``host:pid:start-time:nonce``.

    The start time (empty where ``/proc`` is missing) tells a process apart from
    a later one that reuses its pid. This process's own name ends with a random
    ``:nonce`` as well: two processes in different pid namespaces may share a
    host name, a pid and a start time, never a nonce.

    Args:
        pid: the process; this one when omitted.

    Returns:
        The identity, as written in a claim.
    """
    own = pid is None or pid == os.getpid()
    pid = os.getpid() if pid is None else pid
    identity = f"{socket.gethostname()}:{pid}:{_process_start_time(pid) or ''}"
    if own:
        identity += ":" + _NONCES.setdefault(pid, secrets.token_hex(4))
    return identity


_NONCES: dict[int, str] = {}
"""Per pid (a forked child gets its own): the random end of this process's name."""


def _local_process_alive(pid: int, start: str) -> bool:
    if pid <= 0:  # 0 and negative numbers name process groups, never one process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists but belongs to another user
    if not start:
        return True
    current = _process_start_time(pid)
    # Unreadable (hidepid): the pid exists, which is all we can tell.
    return current is None or current == start


class Claimant:
    """The name a spool claims under, and the rule for taking other claims over.

    Args:
        owner: a fixed name; None names this process (:func:`process_identity`),
            and a forked child then claims under its own name.
        lease: seconds after which another host's claim may be taken over.
    """

    def __init__(self, owner: str | None, lease: float, directory: Path | None = None) -> None:
        self._directory = directory
        self._fixed = owner
        self._pid = os.getpid()
        self._identity = owner if owner is not None else process_identity()
        self._host = socket.gethostname()
        self._lease = lease

    @property
    def owner(self) -> str:
        """The name written in this claimant's claims."""
        # A forked child inherits this object: it must not claim under the parent's name.
        if self._fixed is None and os.getpid() != self._pid:
            self._pid = os.getpid()
            self._identity = process_identity()
        return self._identity

    def may_take(
        self, owner: str | None, claimed_at: float | None, now: float, cache: LivenessCache
    ) -> bool:
        """Whether an entry held by ``owner`` since ``claimed_at`` may be claimed now."""
        return owner is None or self._claim_is_dead(owner, claimed_at, now, cache)

    def _claim_is_dead(
        self, owner: str, claimed_at: float | None, now: float, cache: LivenessCache
    ) -> bool:
        """Whether a claim may be taken over: its owner died, or its lease ran out."""
        if owner == self.owner:
            return False
        if self._directory is not None:
            alive = lock_says_alive(self._directory, owner)
            if alive is not None:  # its lock knows, across pid namespaces
                return not alive
        host, _, rest = owner.partition(":")
        pid_text, _, start = rest.partition(":")
        start = start.partition(":")[0]  # without the nonce
        if host == self._host and pid_text.isdigit() and _CAN_PROBE_PIDS:
            if owner not in cache:
                cache[owner] = not _local_process_alive(int(pid_text), start)
            return cache[owner]
        # Another host's process (or a name we cannot parse): only time tells.
        return claimed_at is None or claimed_at + self._lease <= now


def claim_due(
    conn: sqlite3.Connection, claimant: Claimant, now: float, *, limit: int, force: bool
) -> list[SpoolEntry]:
    """Claim up to ``limit`` due entries (all entries with ``force``) that no live owner holds.

    Returns:
        The claimed entries, earliest due first, with their messages loaded; an
        entry that cannot be read is parked instead (see :data:`UNREADABLE_RETRY_DELAY`).
    """
    owner = claimant.owner
    cache: LivenessCache = {}
    candidates = conn.execute(
        "SELECT id, owner, claimed_at FROM entries"
        " WHERE (owner IS NULL OR owner != ?) AND (? OR next_attempt <= ?)"
        " ORDER BY next_attempt, id",
        (owner, force, now),
    ).fetchall()
    claimed: list[int] = []
    for entry_id, held_by, claimed_at in candidates:
        if len(claimed) == limit:
            break
        if claimant.may_take(held_by, claimed_at, now, cache):
            claimed.append(entry_id)
    conn.executemany(
        "UPDATE entries SET owner = ?, claimed_at = ? WHERE id = ?",
        [(owner, now, entry_id) for entry_id in claimed],
    )
    return [entry for entry_id in claimed if (entry := _load(conn, entry_id, now)) is not None]


def _load(conn: sqlite3.Connection, entry_id: int, now: float) -> SpoolEntry | None:
    """A claimed entry with its message, or None when it is unreadable and now parked."""
    *fields, meta, data = conn.execute(
        f"SELECT {ENTRY_COLUMNS}, meta, email FROM entries WHERE id = ?",  # noqa: S608 - constant column names, no input
        (entry_id,),
    ).fetchone()
    try:
        message = message_from_row(json.loads(meta), data)
    except ValueError as exc:
        # Parked, not retried on every claim, and visible in `spool list`.
        conn.execute(
            "UPDATE entries SET owner = NULL, claimed_at = NULL,"
            " last_error = ?, next_attempt = ? WHERE id = ?",
            (f"unreadable: {exc}", now + UNREADABLE_RETRY_DELAY, entry_id),
        )
        return None
    return entry_from_row(fields, message)


def mark_failed(
    conn: sqlite3.Connection, owner: str, entry_id: int, *, error: str, next_attempt: float
) -> None:
    """Count a failed attempt and release the claim, unless another owner took the entry over."""
    conn.execute(
        "UPDATE entries SET attempts = attempts + 1, last_error = ?, next_attempt = ?,"
        " owner = NULL, claimed_at = NULL WHERE id = ? AND (owner IS NULL OR owner = ?)",
        (error, next_attempt, entry_id, owner),
    )


def release(conn: sqlite3.Connection, owner: str) -> None:
    """Release every claim ``owner`` holds."""
    conn.execute(
        "UPDATE entries SET owner = NULL, claimed_at = NULL WHERE owner = ?",
        (owner,),
    )


def next_due(conn: sqlite3.Connection, claimant: Claimant, now: float) -> tuple[float | None, int]:
    """When the earliest entry ``claimant`` could claim is due (possibly past), or None.

    Returns:
        That time, and how many entries the spool holds (its own claims
        included): one query for both, as the engine's loop asks every round.
    """
    cache: LivenessCache = {}
    rows = conn.execute(
        "SELECT owner, claimed_at, next_attempt FROM entries ORDER BY next_attempt, id"
    ).fetchall()
    for owner, claimed_at, next_attempt in rows:
        if claimant.may_take(owner, claimed_at, now, cache):  # never its own claims
            return float(next_attempt), len(rows)
    return None, len(rows)
