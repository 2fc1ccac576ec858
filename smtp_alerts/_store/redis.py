"""The fleet's store: incidents, windows, quotas and members in Redis (``REDIS_URL``).

The same contract as :class:`~smtp_alerts._store.sqlite.SqliteStore`, for
engines on many hosts. All the deciding happens in one server-side Lua script
(``redis_script.lua``, loaded once and run with EVALSHA), which Redis runs
atomically: each tick pushes an engine's counts, gives back expired leases and
claims what is due, judged by Redis's own clock (``TIME``), so hosts whose
clocks disagree still agree on the windows.

A claimed digest's counts move to an in-flight key leased to the claimer and
named by a fencing token. The claimer renders the digest, puts it in its LOCAL
outbox (the spool's SQLite file: on a disk before any attempt), then
acknowledges; only an acknowledgement with the live token removes the lease. A
claimer that dies between claim and acknowledgement lets its lease expire, and
the next tick of any engine merges the counts back, due at once: a duplicate,
never a loss.

Every key starts with one hash tag, ``{smtp-alerts:<namespace>}``, so in a Redis
Cluster a store sits in one slot and its script may touch all of it (a tag per
group would split the quota from the windows, and a claim could no longer take
a quota slot and a window in one atomic step). No ``KEYS`` command: the open
groups have an index set. This module alone imports ``redis``, and is imported
only when ``REDIS_URL`` is set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from importlib import resources
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from smtp_alerts._delivery.spool import Spool
from smtp_alerts._util.clock import Clock
from smtp_alerts._util.redis_url import parse_redis_url
from smtp_alerts.models import Digest, Problem

from . import timeline
from .base import Claimed, Quota, Renderer
from .others import NEVER_FOLDED, PROBLEMS_PER_INCIDENT, is_other, other_row
from .silences import Silence
from .sqlite import row_key, sample_alert, sample_json
from .windows import REASON_FLUSH, Windows, reason, severity_order

__all__ = [
    "DEFAULT_LEASE",
    "MEMBER_TTL",
    "RedisSilences",
    "RedisStore",
    "RedisUnavailableError",
    "connect",
    "namespace_for",
]

log = logging.getLogger("smtp_alerts.store")

T = TypeVar("T")

DEFAULT_LEASE = 30.0
"""Seconds a claimer has to put a claimed digest in its outbox before it is given back."""

MEMBER_TTL = 15.0
"""Seconds an engine counts as alive after its last tick (it ticks at least every second)."""

TIMEOUT = 1.0
"""Seconds any one Redis call may take: a slow Redis is an unreachable one."""

# Bits of a pushed row's flags (the script's CRIT, FOLDABLE, OTHER, REPLACE, SAME).
_CRIT, _FOLDABLE, _OTHER, _REPLACE, _SAME = 1, 2, 4, 8, 16

_SCRIPT = resources.files(__package__).joinpath("redis_script.lua").read_text(encoding="utf-8")


def connect(url: str, *, ca_file: str | None = None) -> redis.Redis:
    """A client for ``url`` whose every call is bounded (no retries: a slow Redis is away)."""
    target = parse_redis_url(url)
    extra: dict[str, Any] = {"ssl_ca_certs": ca_file} if ca_file and target.tls else {}
    return redis.Redis.from_url(
        url,
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        **extra,
    )


def _bounded(where: str, call: Callable[[], T]) -> T:
    """``call()``, any Redis failure as :class:`RedisUnavailableError` naming ``where`` only."""
    try:
        return call()
    except redis.RedisError as exc:
        # The class and where, never the text: a URL in it may hold a password.
        raise RedisUnavailableError(
            f"Redis at {where} did not answer ({type(exc).__name__})"
        ) from None


class RedisUnavailableError(OSError):
    """Redis did not answer in time, refused, or failed: the engine uses its local store."""


def namespace_for(recipients: Sequence[str]) -> str:
    """The store's namespace: the engines that email the same people share incidents."""
    joined = ",".join(sorted(address.lower() for address in recipients))
    return hashlib.sha256(joined.encode()).hexdigest()[:12]


class RedisStore:
    """The store in Redis, shared by every engine on ``REDIS_URL`` with the same recipients.

    Args:
        url: the Redis URL (``redis://`` or ``rediss://``; may hold a password).
        spool: this engine's spool: claimed digests go into its outbox.
        windows: the window durations of this engine's settings.
        clock: the engine's clock, only to translate Redis's times for waking up.
        namespace: the key prefix's name (see :func:`namespace_for`).
        lease: seconds a claim stays leased before its counts are given back.
        ca_file: an extra CA bundle for ``rediss://``.
    """

    polls_remotely = True
    """Other hosts change its due times unseen: every poll runs the script."""

    def __init__(
        self,
        url: str,
        spool: Spool,
        windows: Windows,
        *,
        clock: Clock,
        namespace: str = "default",
        lease: float = DEFAULT_LEASE,
        ca_file: str | None = None,
    ) -> None:
        self.where = parse_redis_url(url).where
        self._client = connect(url, ca_file=ca_file)
        self._namespace = namespace
        self._script = self._client.register_script(_SCRIPT)
        self._prefix = f"{{smtp-alerts:{namespace}}}"
        self._spool = spool
        self._windows = windows
        self._clock = clock
        self._lease = lease
        self._offset = 0.0  # our clock minus Redis's, at the last tick
        self._due: float | None = None  # the store's earliest due time, Redis's clock
        self._left = False
        self._synced: tuple[float, float] | None = None  # Redis's time, our monotonic time

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

    def ping(self) -> None:
        """Raise :class:`RedisUnavailableError` unless Redis answers now."""
        self._call(self._client.ping)

    # -- the script ----------------------------------------------------------------------

    def _call(self, call: Callable[[], T]) -> T:
        return _bounded(self.where, call)

    def silences(self) -> RedisSilences:
        """The silences of this store, on the same connections."""
        return RedisSilences(self._client, namespace=self._namespace)

    def _run(self, op: str, args: dict[str, Any]) -> Any:
        payload = json.dumps(args, separators=(",", ":"))

        def run() -> Any:
            try:
                return self._script(keys=[self._prefix], args=[op, self._spool.owner, payload])
            except redis.ResponseError as exc:
                if str(exc).startswith("LATE"):
                    # Redis answered, its clock ahead of our estimate (it jumped):
                    # the next tick goes without a deadline and learns it again.
                    self._synced = None
                raise

        return self._call(run)

    def _tick(
        self, deltas: list[dict[str, Any]], *, claim: bool, force: bool, quota: Quota | None
    ) -> dict[str, Any]:
        args = {
            "deltas": deltas,
            "w": self._tick_windows(),
            "cap": PROBLEMS_PER_INCIDENT,
            "ttl": 0 if self._left else MEMBER_TTL,  # one that left stays gone
            "lease": self._lease,
            "nid": secrets.token_hex(6),
            "claim": int(claim),
            "force": int(force),
            "q": [quota.per_hour, quota.per_day] if quota else [1, 1],
            # Where a claimed digest's timelines end: the occurrences' times are
            # the hosts', so this host's, not Redis's (whose clock decides windows).
            "tnow": self._clock(),
        }
        if self._synced is not None:
            # Redis's time now (its time at the last tick, plus what has passed
            # since) plus the timeout: a tick that reaches Redis later than that
            # (a frozen or overloaded Redis) changes nothing there, so counts this
            # host then keeps locally are never counted twice.
            redis_then, mono_then = self._synced
            args["deadline"] = redis_then + time.monotonic() - mono_then + TIMEOUT
        asked, mono = self._clock(), time.monotonic()
        result: dict[str, Any] = json.loads(self._run("tick", args))
        self._synced = (float(result["now"]), mono)
        self._offset = asked - float(result["now"])
        self._due = None if result["due"] is False else float(result["due"])
        return result

    # -- pushing -------------------------------------------------------------------------

    def push(self, deltas: Sequence[Digest]) -> None:
        """Add each delta's counts to its group's incident (opening one), atomically.

        Past :data:`~smtp_alerts._store.others.PROBLEMS_PER_INCIDENT` problems
        an incident folds new ones into their other-problems rows, as the SQLite
        store does: the script says which rows did not fit, and they are pushed
        again folded (their counts stay in this process until then).
        """
        self._push(deltas)

    def _push(
        self, deltas: Sequence[Digest], *, claim: Quota | None = None, force: bool = False
    ) -> dict[str, Any]:
        live = [d for d in deltas if d.problems or d.dropped]
        result = self._tick(
            [_encode(d) for d in live], claim=claim is not None, force=force, quota=claim
        )
        refused = result["refused"] or []
        if refused:
            folded = _fold(live, {(g, fp) for g, fp in refused})
            rows = [_encode(d, folded=True) for d in folded]
            self._tick(rows, claim=False, force=False, quota=None)
        return result

    # -- deciding and claiming -----------------------------------------------------------

    def next_due(self) -> float | None:
        """When the earliest window is due, on this engine's clock, as of the last tick."""
        return None if self._due is None else self._due + self._offset

    def claim_due(
        self, render: Renderer, quota: Quota, *, force: bool = False
    ) -> tuple[list[Claimed], float | None]:
        """Claim what is due (all that is pending with force), render it, put it in the outbox.

        Returns:
            The digests claimed, and when the quotas reopen (this engine's
            clock) if they held one back.
        """
        result = self._push((), claim=quota, force=force)
        now = float(result["now"])
        claimed = []
        for entry in result["claimed"] or []:
            done = self._deliver(entry, render, quota, now)
            if done is not None:
                claimed.append(done)
        held = result["held"]
        return claimed, None if held is False else float(held) + self._offset

    def _deliver(
        self, entry: dict[str, Any], render: Renderer, quota: Quota, now: float
    ) -> Claimed | None:
        """Render a claimed digest, put it in the outbox, acknowledge; give it back on failure."""
        token = entry["token"]
        try:
            digest = _digest(entry, quota, now)
            message = render(digest)
            with self._spool.transaction() as conn:
                entry_id = self._spool.add_in(conn, message)
        except Exception:
            log.exception("forming a claimed digest failed; its counts go back to the store")
            self._run("release", {"token": token, "w": self._tick_windows()})
            return None
        subject = message.title if digest.sequence == 1 else None
        try:
            if not self._run("ack", {"token": token, "subject": subject}):
                log.debug("the lease of digest %s expired before its acknowledgement", token)
        except RedisUnavailableError:
            # In our outbox already; the lease expires and another engine sends it
            # again: a duplicate, never a loss.
            log.debug("acknowledging a claim failed", exc_info=True)
        return Claimed(entry_id, message)

    def _tick_windows(self) -> list[float]:
        w = self._windows
        return [w.group_wait, w.group_interval, w.repeat_interval]

    # -- members -------------------------------------------------------------------------

    def leave(self) -> bool:
        """Leave, and say whether another live engine stays (atomic: one last engine)."""
        self._left = True
        return bool(self._run("leave", {}))


class RedisSilences:
    """The fleet's silences: a hash of silences and a hash of their counts, in Redis.

    Args:
        client: a client from :func:`connect`.
        namespace: the store's namespace (see :func:`namespace_for`).
    """

    def __init__(self, client: redis.Redis, *, namespace: str) -> None:
        self._client = client
        kwargs = client.connection_pool.connection_kwargs
        self._where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        prefix = f"{{smtp-alerts:{namespace}}}"
        self._specs, self._held = f"{prefix}:silences", f"{prefix}:silenced"

    def now(self) -> float:
        """Redis's clock: it decides when silences end, whatever the hosts' clocks say."""
        seconds, micros = _bounded(self._where, self._client.time)
        return seconds + micros / 1e6

    def add(self, silence: Silence) -> None:
        """Keep a new silence."""
        _bounded(self._where, lambda: self._client.hset(self._specs, silence.id, silence.to_json()))

    def end(self, silence_id: str) -> bool:
        """End a silence now; whether it existed."""
        raw = _bounded(self._where, lambda: self._client.hget(self._specs, silence_id))
        if raw is None:
            return False
        silence = Silence.from_json(raw)
        ended = replace(silence, ends_at=min(silence.ends_at, self.now()))
        _bounded(self._where, lambda: self._client.hset(self._specs, silence_id, ended.to_json()))
        return True

    def all(self) -> list[Silence]:
        """Every silence not yet reported."""
        specs, held = _bounded(self._where, self._read)
        return [Silence.from_json(raw, int(held.get(key, 0))) for key, raw in sorted(specs.items())]

    def _read(self) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
        pipe = self._client.pipeline(transaction=True)
        pipe.hgetall(self._specs)
        pipe.hgetall(self._held)
        specs, held = pipe.execute()
        return specs, held

    def hold(self, counts: Mapping[str, int]) -> None:
        """Add occurrences held, per silence id."""

        def add() -> None:
            pipe = self._client.pipeline(transaction=True)
            for silence_id, count in counts.items():
                pipe.hincrby(self._held, silence_id, count)
            pipe.execute()

        _bounded(self._where, add)

    def forget(self, ids: Sequence[str]) -> None:
        """Drop silences whose end a digest has said."""
        if ids:

            def drop() -> None:
                pipe = self._client.pipeline(transaction=True)
                pipe.hdel(self._specs, *ids)
                pipe.hdel(self._held, *ids)
                pipe.execute()

            _bounded(self._where, drop)


def _encode(delta: Digest, *, folded: bool = False) -> dict[str, Any]:
    """A delta as the script reads it: group, incident id if it opens one, rows, dropped.

    An engine's own other-problems row replaces the stored sample (it says how
    many problems it holds); one folded by the store keeps its first. Each row
    carries its counts per interval (from interval ``tl`` at step ``ts``) and
    the newest message the engine captured, flagged SAME when it is its sample's.
    """
    rows = []
    width = 0
    for problem in delta.problems:
        alert = problem.alert
        other = is_other(alert.fingerprint)
        flags = (_OTHER if folded else _OTHER | _REPLACE) if other else 0
        if not other and alert.source not in NEVER_FOLDED:
            flags |= _FOLDABLE
        if alert.level >= logging.CRITICAL or alert.source == "crash":
            flags |= _CRIT
        if problem.last_message == alert.message:
            flags |= _SAME
        width = max(width, len(problem.timeline))
        rows.append(
            [
                row_key(alert),
                sample_json(alert),
                problem.count,
                problem.first_seen,
                problem.last_seen,
                flags,
                list(problem.timeline),
                problem.last_message,
            ]
        )
    step = int(delta.timeline_step)
    first = timeline.index_of(delta.timeline_start, step) if step > 0 else 0
    return {
        "g": delta.group,
        "id": secrets.token_hex(8),
        "p": rows,
        "d": delta.dropped,
        "ts": step,
        "tl": first,
        "th": first + width - 1,
    }


def _fold(deltas: list[Digest], refused: set[tuple[str, str]]) -> list[Digest]:
    """The refused rows of each delta, folded into their other-problems rows."""
    folded = []
    for delta in deltas:
        problems = [
            replace(problem, alert=other_row(problem.alert), last_message="")
            for problem in delta.problems
            if (delta.group, row_key(problem.alert)) in refused
        ]
        if problems:
            folded.append(replace(delta, problems=tuple(problems), dropped=0))
    return folded


def _digest(entry: dict[str, Any], quota: Quota, now: float) -> Digest:
    """The digest the script formed, with the quota's notices."""
    rows = entry["rows"] or []
    problems = sorted(
        (
            Problem(
                sample_alert(s),
                int(n),
                int(t),
                float(f),
                float(la),
                new == 1,
                tuple(int(count) for count in line or ()),
                later,
            )
            for s, n, t, f, la, new, line, later in rows
        ),
        key=severity_order,
    )
    grant = entry["grant"]
    notices: tuple[str, ...] = ()
    if grant["held"] is not False:
        notices += (quota.delayed(float(grant["held"]), now),)
    if grant["kind"] is not False:
        notices += (quota.notice(int(grant["cap"]), grant["kind"], float(grant["reopens"]), now),)
    dropped = int(entry["dropped"])
    news = any(p.is_new for p in problems) or bool(dropped)
    why = reason(critical=bool(entry["crit"]), sequence=int(entry["seq"]), news=news)
    return Digest(
        group=entry["g"],
        incident_id=entry["id"],
        sequence=int(entry["seq"]),
        problems=tuple(problems),
        created=now,
        reason=REASON_FLUSH if entry["flush"] else why,
        dropped=dropped,
        notices=notices,
        thread_subject=entry["subject"] or None,
        timeline_start=float(entry["tl"]) * float(entry["ts"]),
        timeline_step=float(entry["ts"]),
    )
