"""The Redis store's costs and effect, against a redis-server of its own on 127.0.0.1.

1. Tick: ``--processes`` processes each run an engine's ticks against one Redis
   in a loop: a push (the script with this tick's counts) and a claim (the
   script claiming what is due, then the render, the local outbox insert and
   the acknowledgement); p50 and p99 of each across all of them.
2. Emails per incident: 2, 4 and 8 "hosts" (processes with their own
   SPOOL_DIR and subject prefix, one REDIS_URL) each log one error 500 times;
   the emails the Gmail-like server received and the events they count.
3. The caller's cost: ``logger.error`` of a repeat through AlertHandler with
   and without REDIS_URL, against NullHandler (the caller never touches Redis).

Run: ``.venv/bin/python benchmarks/bench_redis.py --processes 16`` (needs
``redis-server``: ``apt-get install redis-server``).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's tests/

from bench_handlers import attached, error_call, summary, time_calls
from bench_store import QUOTA, WINDOWS, _context, _delta, _ms, side_by_side

from smtp_alerts import AlertHandler, Engine
from smtp_alerts._delivery.spool import Spool
from smtp_alerts._engine.render import render
from smtp_alerts._store.redis import RedisStore
from smtp_alerts.testing import GmailServer
from tests.helpers import event_counts, next_start, start_script
from tests.integration.test_redis_fleet import WORKER, host_env
from tests.redis_support import RedisServer


def _ticker(
    url: str, directory: str, rounds: int, out: multiprocessing.Queue[list[tuple[str, float]]]
) -> None:
    context = _context()
    with Spool(Path(directory)) as spool:
        store = RedisStore(url, spool, WINDOWS, clock=time.time)
        times: list[tuple[str, float]] = []
        for number in range(rounds):
            started = time.perf_counter()
            store.push([_delta("shared", 1, f"{directory}-{number}")])
            pushed = time.perf_counter()
            claimed, _ = store.claim_due(lambda d: render(d, context), QUOTA)
            done = time.perf_counter()
            times += [("push", pushed - started), ("claim" if claimed else "idle", done - pushed)]
            for entry in claimed:
                spool.delivered(entry.entry_id)
        store.close()
    out.put(times)


def bench_ticks(url: str, processes: int, rounds: int) -> list[tuple[str, float]]:
    """(kind, seconds) of each script call, ``processes`` ticking side by side."""
    with tempfile.TemporaryDirectory() as root:
        return side_by_side(_ticker, [(url, f"{root}/{n}", rounds) for n in range(processes)])


def emails_per_incident(server: RedisServer, hosts: int, errors: int) -> tuple[int, int]:
    """(emails, events counted in them) when ``hosts`` hosts log one error ``errors`` times."""
    server.flush()
    with GmailServer() as gmail, tempfile.TemporaryDirectory() as root:
        ready = Path(root) / "ready"
        ready.mkdir()
        code = textwrap.dedent(WORKER.format(n=errors, ready=str(ready), processes=hosts))
        workers = [
            start_script(code, host_env(gmail, server.url, Path(root), host, GROUP_WAIT="1s"))
            for host in range(hosts)
        ]
        for worker in workers:
            worker.communicate(timeout=120)
        next_start(host_env(gmail, server.url, Path(root), 0))
        found = event_counts(gmail)
    return len(found), sum(found)


def emit_cost(url: str, n: int) -> None:
    """Per-call cost of a repeated logger.error, NullHandler and AlertHandler with/without Redis."""
    with GmailServer() as gmail, tempfile.TemporaryDirectory() as root:
        engines = {
            "AlertHandler": Engine(gmail.settings(spool_dir=f"{root}/a", group_wait="1h")),
            "AlertHandler, REDIS_URL set": Engine(
                gmail.settings(spool_dir=f"{root}/b", group_wait="1h", redis_url=url)
            ),
        }
        variants: dict[str, logging.Handler] = {"NullHandler": logging.NullHandler()}
        variants.update({name: AlertHandler(engine=e) for name, e in engines.items()})
        medians = {}
        for name, handler in variants.items():
            with attached(handler) as log:
                time_calls(error_call(log), n // 10)  # warm: the first is a new problem
                median, p99 = summary(time_calls(error_call(log), n))
            medians[name] = median
            ratio = median / medians["NullHandler"]
            print(f"   {name:<30} median {median:,.0f} ns, p99 {p99:,.0f} ns ({ratio:.2f}x)")
        for engine in engines.values():
            engine.close()


def main() -> None:
    """Print the three figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--errors", type=int, default=500)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    server = RedisServer.find()
    if server is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    with tempfile.TemporaryDirectory() as directory:
        server.start(Path(directory))
        try:
            print(f"1. script calls, {args.processes} processes x {args.rounds} ticks:")
            with server.client() as client:
                client.config_resetstat()
                ticks = bench_ticks(server.url, args.processes, args.rounds)
                stats = client.info("commandstats").get("cmdstat_evalsha", {})
            for kind in ("push", "claim", "idle"):
                times = [t for k, t in ticks if k == kind]
                if len(times) > 1:
                    print(
                        f"   {kind:<6} ({len(times):>5} calls): "
                        f"p50 {_ms(times, 50):.2f} ms, p99 {_ms(times, 99):.2f} ms"
                    )
            print(
                f"   inside Redis: {stats.get('calls', 0):,} EVALSHA, "
                f"{stats.get('usec_per_call', 0):.0f} us per call (INFO commandstats)"
            )
            print(f"2. emails per incident ({args.errors} errors per host):")
            for hosts in (2, 4, 8):
                emails, events = emails_per_incident(server, hosts, args.errors)
                print(
                    f"   {hosts} hosts: {emails} email(s), {events:,} events "
                    f"(logged {hosts * args.errors:,})"
                )
            print(f"3. the caller's logger.error of a repeat ({args.calls:,} calls):")
            server.flush()
            emit_cost(server.url, args.calls)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
