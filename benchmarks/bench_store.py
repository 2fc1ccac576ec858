"""The shared store's costs: one tick's push, and a claim transaction under 16 processes.

1. Push: the time of one ``SqliteStore.push`` (one transaction) carrying the
   deltas of ``--groups`` groups with one problem each, as an engine's tick does.
2. Claim: ``--processes`` processes on one SPOOL_DIR each push and claim
   (``claim_due``: form, render, outbox insert in one ``BEGIN IMMEDIATE``) in a
   loop; p50 and p99 of the claim transaction's wall time across all of them.

Run: ``.venv/bin/python benchmarks/bench_store.py --processes 16``
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smtp_alerts._delivery.spool import Spool
from smtp_alerts._engine.render import RenderContext, render
from smtp_alerts._store import Quota, SqliteStore, Windows
from smtp_alerts.models import Alert, Digest, Problem
from smtp_alerts.settings import Settings

WINDOWS = Windows(group_wait=0.0, group_interval=0.0, repeat_interval=3600.0)
QUOTA = Quota(10**9, 10**9, notice=lambda *_: "", delayed=lambda *_: "")


def _delta(group: str, n: int, problem: str = "") -> Digest:
    now = time.time()
    alert = Alert(
        fingerprint=("bench", group, problem),
        level=40,
        logger="bench",
        message=f"problem in {group}",
        created=now,
        group=group,
    )
    return Digest(group, "", 0, (Problem(alert, n, n, now, now, is_new=True),), now)


def _context() -> RenderContext:
    settings = Settings(to=["b@example.com"], from_="a@example.com")
    return RenderContext.from_settings(settings, hostname="bench")


def bench_push(directory: Path, groups: int, rounds: int) -> list[float]:
    """Seconds per push of ``groups`` deltas, ``rounds`` times."""
    with Spool(directory) as spool:
        store = SqliteStore(spool, WINDOWS, clock=time.time)
        times = []
        for _ in range(rounds):
            deltas = [_delta(f"g{i}", 7) for i in range(groups)]
            started = time.perf_counter()
            store.push(deltas)
            times.append(time.perf_counter() - started)
    return times


def _claimer(
    directory: str, rounds: int, out: multiprocessing.Queue[list[tuple[float, bool]]]
) -> None:
    context = _context()
    with Spool(Path(directory)) as spool:
        store = SqliteStore(spool, WINDOWS, clock=time.time)
        times: list[tuple[float, bool]] = []
        for number in range(rounds):
            # A new problem each time: news is due after GROUP_INTERVAL (0 here).
            store.push([_delta("shared", 1, f"{os.getpid()}-{number}")])
            started = time.perf_counter()
            claimed, _ = store.claim_due(lambda d: render(d, context), QUOTA)
            times.append((time.perf_counter() - started, bool(claimed)))
            for entry in claimed:
                spool.delivered(entry.entry_id)
    out.put(times)


def side_by_side(target: Callable[..., None], arguments: list[tuple[object, ...]]) -> list[Any]:
    """Run ``target(*args, queue)`` in one process per ``args``; what they put, joined."""
    out: multiprocessing.Queue[list[Any]] = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=target, args=(*args, out)) for args in arguments]
    for worker in workers:
        worker.start()
    results = [item for _ in workers for item in out.get(timeout=300)]
    for worker in workers:
        worker.join()
    return results


def bench_claims(directory: Path, processes: int, rounds: int) -> list[tuple[float, bool]]:
    """(seconds, whether it formed a digest) of each claim, ``processes`` claiming side by side."""
    return side_by_side(_claimer, [(str(directory), rounds)] * processes)


def _ms(times: list[float], q: int) -> float:
    return statistics.quantiles(times, n=100)[q - 1] * 1000


def main() -> None:
    """Print the push and claim figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--groups", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        push = bench_push(Path(directory), args.groups, args.rounds * 4)
    print(
        f"push of {args.groups} groups' deltas (one transaction): "
        f"p50 {_ms(push, 50):.2f} ms, p99 {_ms(push, 99):.2f} ms"
    )
    with tempfile.TemporaryDirectory() as directory:
        claims = bench_claims(Path(directory), args.processes, args.rounds)
    for label, formed in (("formed a digest", True), ("found nothing due", False)):
        times = [t for t, f in claims if f is formed]
        if len(times) > 1:
            print(
                f"claim transaction that {label} ({len(times)} of "
                f"{args.processes} processes x {args.rounds}): "
                f"p50 {_ms(times, 50):.2f} ms, p99 {_ms(times, 99):.2f} ms"
            )


if __name__ == "__main__":
    main()
