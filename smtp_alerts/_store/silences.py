"""Silences: what a person said not to email for a while, kept in the store.

A silence names a logger (a prefix in the dotted hierarchy: ``app.db`` covers
``app.db.pool``), a text the message contains, or a check, and holds until it
ends; every criterion given must match. A silenced problem is counted, not
emailed: engines add its occurrences to the silence's count instead of the
incident, and the first digest after the silence ends says how many it held.
The meta-alert about a broken login is never silenced.

Silences live in the store, so they hold for every engine on it: a table in the
spool's SQLite file (the processes of one host), or keys in Redis with
``REDIS_URL`` (the fleet). :func:`silence_book` opens the right one from the
settings, for the command line and the Python API.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from smtp_alerts._delivery.spool import Spool
from smtp_alerts.models import Alert

if TYPE_CHECKING:
    from smtp_alerts.settings import Settings

__all__ = [
    "NEVER_SILENCED",
    "Silence",
    "SilenceBook",
    "SqliteSilences",
    "new_silence",
    "silence_book",
]

NEVER_SILENCED = frozenset({"meta"})
"""Sources no silence hides: a broken login must always reach a person."""


@dataclass(frozen=True, slots=True)
class Silence:
    """One silence.

    Attributes:
        id: a short random id (``smtp-alerts silence remove ID``).
        created_at: when it was added (the store's clock).
        ends_at: when it ends (the store's clock).
        logger: a logger name prefix, or None.
        match: a text the message contains (case-insensitive), or None.
        check: a check's name, or None.
        comment: why, for the people who read ``silence list``.
        held: occurrences it held so far.
    """

    id: str
    created_at: float
    ends_at: float
    logger: str | None = None
    match: str | None = None
    check: str | None = None
    comment: str = ""
    held: int = 0

    def matches(self, alert: Alert) -> bool:
        """Whether this silence covers ``alert`` (never a meta-alert)."""
        if alert.source in NEVER_SILENCED:
            return False
        if self.logger is not None:
            prefix = self.logger.rstrip(".")
            if alert.logger != prefix and not alert.logger.startswith(prefix + "."):
                return False
        if self.match is not None and self.match.casefold() not in alert.message.casefold():
            return False
        return self.check is None or (alert.source == "check" and alert.logger == self.check)

    def describe(self) -> str:
        """``logger app.db, text "timeout"``: what it covers, for people."""
        parts = []
        if self.logger is not None:
            parts.append(f"logger {self.logger}")
        if self.match is not None:
            parts.append(f"text {json.dumps(self.match, ensure_ascii=False)}")
        if self.check is not None:
            parts.append(f"check {self.check}")
        return ", ".join(parts)

    def to_json(self) -> str:
        """The silence as JSON, without its count (kept apart, added to atomically)."""
        data = asdict(self)
        del data["held"]
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str | bytes, held: int = 0) -> Silence:
        """The silence :meth:`to_json` wrote, with its count."""
        data: dict[str, Any] = json.loads(text)
        return cls(**data, held=held)


def new_silence(
    now: float,
    duration: float,
    *,
    logger: str | None = None,
    match: str | None = None,
    check: str | None = None,
    comment: str = "",
) -> Silence:
    """A new silence from ``now`` for ``duration`` seconds.

    Raises:
        ValueError: no criterion, an empty one, or a duration that is not positive.
    """
    criteria = {"logger": logger, "match": match, "check": check}
    if all(value is None for value in criteria.values()):
        raise ValueError("a silence needs --logger, --match or --check (what to silence)")
    for name, value in criteria.items():
        if value is not None and not value.strip():
            raise ValueError(f"--{name} cannot be empty")
    if not duration > 0:
        raise ValueError("a silence lasts a positive duration (--for 30m, 2h, 1d)")
    return Silence(secrets.token_hex(4), now, now + duration, logger, match, check, comment.strip())


class SilenceBook(Protocol):
    """Where the silences of a store are kept."""

    def now(self) -> float:
        """The store's clock: it decides when silences end."""

    def add(self, silence: Silence) -> None:
        """Keep a new silence."""

    def end(self, silence_id: str) -> bool:
        """End a silence now (it is reported like an expired one); whether it existed."""

    def all(self) -> list[Silence]:
        """Every silence not yet reported, ended ones included."""

    def hold(self, counts: Mapping[str, int]) -> None:
        """Add occurrences held, per silence id."""

    def forget(self, ids: Sequence[str]) -> None:
        """Drop ended silences once a digest has said what they held."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_silences (
    id    TEXT PRIMARY KEY,
    data  TEXT NOT NULL,
    held  INTEGER NOT NULL DEFAULT 0
)
"""


class SqliteSilences:
    """The silences of one host: a table in the spool's SQLite file.

    Args:
        spool: the open spool.
        clock: the host's clock.
    """

    def __init__(self, spool: Spool, *, clock: Callable[[], float] = time.time) -> None:
        self._spool = spool
        self._clock = clock
        with spool.transaction() as conn:
            conn.execute(_SCHEMA)

    def now(self) -> float:
        """The host's clock."""
        return self._clock()

    def add(self, silence: Silence) -> None:
        """Keep a new silence."""
        with self._spool.transaction() as conn:
            conn.execute(
                "INSERT INTO store_silences (id, data) VALUES (?, ?)",
                (silence.id, silence.to_json()),
            )

    def end(self, silence_id: str) -> bool:
        """End a silence now; whether it existed."""
        with self._spool.transaction() as conn:
            row = conn.execute(
                "SELECT data FROM store_silences WHERE id = ?", (silence_id,)
            ).fetchone()
            if row is None:
                return False
            ended = Silence.from_json(row[0])
            data = json.loads(ended.to_json())
            data["ends_at"] = min(ended.ends_at, self._clock())
            conn.execute(
                "UPDATE store_silences SET data = ? WHERE id = ?", (json.dumps(data), silence_id)
            )
        return True

    def all(self) -> list[Silence]:
        """Every silence not yet reported."""
        with self._spool.reading() as conn:
            rows = conn.execute("SELECT data, held FROM store_silences").fetchall()
        return [Silence.from_json(data, held) for data, held in rows]

    def hold(self, counts: Mapping[str, int]) -> None:
        """Add occurrences held, per silence id."""
        with self._spool.transaction() as conn:
            conn.executemany(
                "UPDATE store_silences SET held = held + ? WHERE id = ?",
                [(count, silence_id) for silence_id, count in counts.items()],
            )

    def forget(self, ids: Sequence[str]) -> None:
        """Drop silences whose end a digest has said."""
        with self._spool.transaction() as conn:
            conn.executemany("DELETE FROM store_silences WHERE id = ?", [(i,) for i in ids])


@contextmanager
def silence_book(settings: Settings) -> Iterator[SilenceBook]:
    """The silences the settings name, opened for a moment (the command line, the API).

    Raises:
        OSError: the spool or Redis cannot be used (Redis: naming host:port only).
        sqlite3.Error: the spool's file is broken.
    """
    if settings.redis_url is None:
        with Spool(settings.spool_path, on_problem=lambda _line: None) as spool:
            yield SqliteSilences(spool)
        return
    # Imported here: redis-py is loaded only when REDIS_URL is set.
    from .redis import RedisSilences, connect, namespace_for  # noqa: PLC0415

    client = connect(
        settings.redis_url.get_secret_value(),
        ca_file=str(settings.ca_file) if settings.ca_file else None,
    )
    try:
        yield RedisSilences(client, namespace=namespace_for(settings.to))
    finally:
        client.close()
