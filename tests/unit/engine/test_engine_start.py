"""The engine's start: its thread loads the loop side, and nothing waits for it meanwhile.

Building an engine loads no loop machinery; the first alert starts a thread
that loads it (the settings model, the runner, the loop). These tests hold the
thread at that point and check what callers may do meanwhile: alert, run a
coroutine on the loop, close.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from smtp_alerts import Engine, Settings
from smtp_alerts._engine import runner
from smtp_alerts.transports import MemoryTransport


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """The engine's thread waits at its start (as when loading takes long) until set."""
    release = threading.Event()
    real = runner.EngineRunner

    class SlowToLoad(real):  # type: ignore[misc, valid-type]
        def __init__(self, core: object, drain: object) -> None:
            assert release.wait(30)
            super().__init__(core, drain)

    monkeypatch.setattr(runner, "EngineRunner", SlowToLoad)
    yield release
    release.set()


def make_engine() -> tuple[Engine, MemoryTransport]:
    transport = MemoryTransport()
    settings = Settings(to=["oncall@example.com"], from_="alerts@example.com", group_wait=0)
    return Engine(settings, transport=transport, spool=False), transport


def test_alerts_while_the_thread_loads_are_drained_once_it_runs(held: threading.Event) -> None:
    """What is queued before the loop exists is taken at once when it does: nothing waits."""
    engine, transport = make_engine()
    assert engine.alert("first")
    assert engine.alert("second", key="other")
    assert engine.started
    assert engine.stats().accepted == 0  # still loading: taken in later
    held.set()
    assert engine.flush(timeout=10)
    (message,) = transport.sent  # one incident: both problems in one digest
    assert message.digest is not None
    assert len(message.digest.problems) == 2
    assert engine.stats().accepted == 2
    engine.close()


def test_run_coroutine_before_the_loop_runs_returns_at_once(held: threading.Event) -> None:
    """A coroutine handed over while the thread loads starts when the loop runs."""
    engine, _ = make_engine()

    async def answer() -> int:
        return 42

    future = engine.run_coroutine(answer())  # starts the engine; must not wait for it
    assert not future.done()
    held.set()
    assert future.result(timeout=10) == 42
    engine.close()


def test_cancelled_before_the_loop_runs(held: threading.Event) -> None:
    """A future cancelled while the thread loads never runs its coroutine."""
    engine, _ = make_engine()
    ran = threading.Event()

    async def mark() -> None:
        ran.set()

    future = engine.run_coroutine(mark())
    assert future.cancel()
    held.set()
    assert engine.flush(timeout=10)
    engine.close()
    assert not ran.is_set()


def test_close_while_the_thread_loads_delivers_what_was_taken(held: threading.Event) -> None:
    """Closing before the loop ran: the loop still starts, delivers, and stops."""
    engine, transport = make_engine()
    engine.alert("raised just before exit")
    closer = threading.Thread(target=engine.close, args=(10,))
    closer.start()
    held.set()
    closer.join(15)
    assert not closer.is_alive()
    assert len(transport.sent) == 1
    assert engine.closed


def test_coroutine_of_an_engine_that_could_not_start_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loop side cannot be built: early coroutines fail, they are not left pending."""

    class Broken:
        def __init__(self, core: object, drain: object) -> None:
            raise RuntimeError("cannot build the loop side")

    monkeypatch.setattr(runner, "EngineRunner", Broken)
    engine, _ = make_engine()

    async def never() -> None:
        raise AssertionError("not run")

    future = engine.run_coroutine(never())
    with pytest.raises(RuntimeError, match="closed"):
        future.result(timeout=10)
    assert engine.closed
