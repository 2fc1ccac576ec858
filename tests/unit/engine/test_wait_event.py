"""The engine's timed wait: ``asyncio.wait_for(event.wait(), t)`` without its task."""

from __future__ import annotations

import asyncio

import pytest

from smtp_alerts._engine.loop import wait_event


def _live_timers() -> int:
    """Timers the running loop still holds and will run (cancelled ones are dropped lazily)."""
    scheduled: list[asyncio.TimerHandle] = asyncio.get_running_loop()._scheduled  # type: ignore[attr-defined]
    return sum(1 for handle in scheduled if not handle.cancelled())


def test_a_set_event_ends_the_wait_and_its_timer() -> None:
    async def scenario() -> int:
        event = asyncio.Event()
        asyncio.get_running_loop().call_soon(event.set)
        await wait_event(event, 3600.0)
        return _live_timers()

    assert asyncio.run(scenario()) == 0


def test_the_timeout_ends_the_wait_by_setting_the_event() -> None:
    async def scenario() -> bool:
        event = asyncio.Event()
        await wait_event(event, 0.0)
        return event.is_set()

    assert asyncio.run(scenario())


def test_a_cancelled_wait_cancels_its_timer() -> None:
    async def scenario() -> tuple[int, int, bool]:
        event = asyncio.Event()
        waiting = asyncio.get_running_loop().create_task(wait_event(event, 3600.0))
        await asyncio.sleep(0)
        armed = _live_timers()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        return armed, _live_timers(), event.is_set()

    assert asyncio.run(scenario()) == (1, 0, False)


def test_no_timeout_waits_for_the_event_alone() -> None:
    async def scenario() -> tuple[bool, int]:
        event = asyncio.Event()
        waiting = asyncio.get_running_loop().create_task(wait_event(event, None))
        for _ in range(3):
            await asyncio.sleep(0)
        early, timers = waiting.done(), _live_timers()
        event.set()
        await waiting
        return early, timers

    assert asyncio.run(scenario()) == (False, 0)
