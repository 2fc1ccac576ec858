"""An asyncio service with jobs, a heartbeat and crash alerts.

Set the SMTP_ALERTS_* variables (see the README), then run:

    python examples/asyncio_service.py

The service polls a queue every 100 ms as the job ``poll-queue`` (each run has
a ``max_duration`` and counts as the heartbeat of that name). On its fourth
poll the queue is unreachable: the job alerts with the traceback and the
service carries on. A fire-and-forget task crashes: its traceback is emailed
too. Then polling stops, as if the loop were stuck, and after the heartbeat's
period plus grace one "missed heartbeat" alert goes out. The service stops
after two seconds; what is pending is delivered at exit.
"""

from __future__ import annotations

import asyncio

import smtp_alerts


class QueueUnavailableError(ConnectionError):
    """The message queue did not answer."""


async def poll_queue(attempt: int) -> int:
    """Fetch messages; the fourth attempt fails."""
    await asyncio.sleep(0.01)
    if attempt == 4:
        raise QueueUnavailableError("queue.internal:5672 refused the connection")
    return attempt * 2


async def refresh_cache() -> None:
    """A background task with a bug; nobody awaits it."""
    await asyncio.sleep(0.05)
    raise ValueError("cache entry has no 'expires' field")


async def main() -> None:
    """Serve for two seconds."""
    # At the top of main(): also chains this loop's exception handler.
    smtp_alerts.install_crash_hooks()
    engine = smtp_alerts.get_engine()
    engine.heartbeat("poll-queue", period="300ms", grace="200ms")
    background: set[asyncio.Task[None]] = set()
    for attempt in range(1, 8):
        try:
            async with engine.job("poll-queue", max_duration="5s"):
                print(f"polled {await poll_queue(attempt)} messages")
        except QueueUnavailableError as exc:
            print(f"poll {attempt} failed ({exc}); retrying")
        if attempt == 5:
            task = asyncio.create_task(refresh_cache(), name="refresh-cache")
            background.add(task)
            task.add_done_callback(background.discard)
        await asyncio.sleep(0.1)
    print("polling stopped; waiting for the missed heartbeat")
    await asyncio.sleep(1.2)


if __name__ == "__main__":
    asyncio.run(main())
