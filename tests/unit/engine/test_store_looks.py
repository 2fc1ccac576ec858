"""How often the engine looks at a shared store for what a new problem made due.

Each look is a push and the store's queries, on the engine's loop, taking the
GIL from the program: a flood of new problems makes the dispatcher look at
once for the first, then once a tick (``PUSH_INTERVAL``, the bound DESIGN
section 2 sets on what a process keeps to itself) for the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtp_alerts import Engine, Settings
from smtp_alerts._engine import runner
from smtp_alerts._engine.shared import StoreLink
from smtp_alerts.transports import MemoryTransport
from tests.helpers import wait_for


def record(msg: str, *args: object, group: str | None = None) -> logging.LogRecord:
    made = logging.LogRecord("shop.api", logging.ERROR, "/srv/shop/api.py", 10, msg, args, None)
    if group is not None:
        made.alert_group = group
    return made


Looks = list[tuple[StoreLink, bool]]


@pytest.fixture
def looks(monkeypatch: pytest.MonkeyPatch) -> Looks:
    """Every look at a store (a claim), with its ``force``; no poll of the store's own."""
    monkeypatch.setattr(runner, "STORE_POLL", 60.0)
    seen: Looks = []
    claim = StoreLink.claim

    async def counted(self: StoreLink, *, force: bool) -> tuple[list[tuple[int, object]], bool]:
        seen.append((self, force))
        return await claim(self, force=force)  # type: ignore[return-value]

    monkeypatch.setattr(StoreLink, "claim", counted)
    return seen


def looks_of(engine: Engine, looks: Looks) -> list[bool]:
    """The looks of ``engine`` (an engine another test left running looks too)."""
    link = engine._runner._link if engine._runner is not None else None
    return [force for looker, force in looks if looker is link]


@pytest.fixture
def transport() -> MemoryTransport:
    return MemoryTransport()


@pytest.fixture
def engine(
    tmp_path: Path, transport: MemoryTransport, looks: Looks, request: pytest.FixtureRequest
) -> Iterator[Engine]:
    """An engine on a store in ``tmp_path``, made once ``looks`` counts (and STORE_POLL is long)."""
    group_wait = getattr(request, "param", 3600)
    settings = Settings(
        to=["oncall@example.com"],
        from_="alerts@example.com",
        group_wait=group_wait,
        spool_dir=tmp_path,
    )
    made = Engine(settings, transport=transport)
    yield made
    made.close()


def test_a_flood_of_new_problems_looks_at_the_store_once_a_tick(
    engine: Engine, looks: Looks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "PUSH_INTERVAL", 60.0)
    engine.submit_record(record("stock %s is gone", 1))
    assert engine.flush(30)  # started, and settled
    before = len(looks_of(engine, looks))
    for n in range(1, 50):
        engine.submit_record(record(f"problem number {n}: %s", n))  # a new one each
        assert wait_for(lambda n=n: engine.stats().accepted == n + 1)  # type: ignore[misc]
    # 49 drains took a new problem each: a look at the first (unless the tick
    # started at the first record, when the flush did not take it), and maybe
    # one the start-up still owed (its channels came ready during the flush).
    flood = looks_of(engine, looks)[before:]
    assert flood in ([], [False], [False, False])
    assert engine.flush(30)
    assert looks_of(engine, looks)[before + len(flood) :] == [True]  # a flush looks at once


@pytest.mark.parametrize("engine", [0], indirect=True)
def test_a_new_problem_that_waits_for_the_tick_is_sent_within_it(
    engine: Engine,
    transport: MemoryTransport,
    looks: Looks,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner, "PUSH_INTERVAL", 0.3)
    engine.submit_record(record("stock %s is gone", 1, group="stock"))
    assert wait_for(lambda: len(transport.sent) == 1)
    # Within the tick of that look: this one waits for the next, not for a poll.
    engine.submit_record(record("payment %s failed", 2, group="payments"))
    assert wait_for(lambda: len(transport.sent) == 2, seconds=10)
    assert not any(looks_of(engine, looks))
