"""``smtp-alerts spool``: the waiting digests and the delivery log, for a person.

``list`` is a summary a person on call reads at a glance: how many digests
wait, in which state, and the engines' counters added up; ``list --all``
shows every digest and each engine's counters. ``list``, ``history`` and
``purge`` need only to know where the store is (``SPOOL_DIR``), not whom
alerts go to; ``flush`` sends, so it needs the settings in full.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from .._delivery.spool import DEFAULT_HISTORY_RETENTION, Spool
from .._facade import Engine
from .._util.smtp_reply import one_line
from . import load_settings, store_settings

if TYPE_CHECKING:
    from .._delivery.spool import SpoolEntry
    from ..settings import Settings

__all__ = ["run_spool_command"]

# Without --all, `list` shows this many digests (the oldest); the rest are counted.
_SHOWN = 10
# `flush` says it is still sending after this many seconds, then at this interval.
_PROGRESS_FIRST = 2.0
_PROGRESS_EVERY = 10.0


def run_spool_command(args: argparse.Namespace) -> int:
    """Run ``smtp-alerts spool ACTION``; returns the exit status."""
    settings = load_settings() if args.action == "flush" else store_settings()
    path = settings.spool_path
    try:
        # Opened here for every action, flush included: a store that had to be
        # set aside or re-created is said in one line, never a false success.
        with Spool(path, on_problem=lambda _line: None) as spool:
            if spool.recovered is not None:
                print(spool.recovered, file=sys.stderr)
                return 1
            if args.action != "flush":
                return _inspect(spool, args)
            waiting = len(spool)
    except BrokenPipeError:
        raise  # the reader of our output went away: main() ends quietly
    except (OSError, sqlite3.Error, ValueError, RuntimeError) as exc:
        print(f"smtp-alerts: cannot use the spool at {path}: {exc}", file=sys.stderr)
        return 1
    return _flush(settings, args.timeout, waiting)


def _inspect(spool: Spool, args: argparse.Namespace) -> int:
    """``list``, ``purge`` or ``history``."""
    if args.action == "list":
        return _list(spool, everything=args.all)
    if args.action == "purge":
        return _purge(spool, yes=args.yes)
    return _history(spool, args.limit)


def _list(spool: Spool, *, everything: bool) -> int:
    entries = spool.entries()
    states = Counter(_state(entry) for entry in entries)
    print(f"{len(entries)} digest(s) waiting in {spool.directory}")
    for state, count in sorted(states.items()):
        print(f"  {count:>6,}  {state}")
    shown = entries if everything else entries[:_SHOWN]
    if shown:
        print(
            f"\n{'id':>5}  {'first spooled':<20} {'tries':>5}  {'next try':<20} title / last error"
        )
    for entry in shown:
        print(
            f"{entry.id:>5}  {_time(entry.created):<20} {entry.attempts:>5}  "
            f"{_time(entry.next_attempt):<20} {entry.title}"
        )
        if entry.last_error:
            print(f"{'':>55}{entry.last_error[:200]}")
    if len(shown) < len(entries):
        print(f"... and {len(entries) - len(shown):,} more (`spool list --all` shows every one)")
    _counters(spool, everything=everything)
    return 0


def _state(entry: SpoolEntry) -> str:
    if entry.owner is not None:
        return "being sent by a running process"
    if entry.attempts == 0:
        return "not tried yet"
    return "failed, waiting for the next try"


def _counters(spool: Spool, *, everything: bool) -> None:
    """The engines' counters: added up, or (``everything``) one block per engine."""
    saved = spool.counters()
    if not saved:
        return
    if everything:
        for owner, updated, counters in saved:
            print(f"\ncounters of the engine {owner} (saved {_time(updated)} UTC):")
            _print_counters(counters)
        return
    total: Counter[str] = Counter()
    for _owner, _updated, counters in saved:
        total.update(counters)
    print(
        f"\ncounters of {len(saved)} engine(s) that ran in the last "
        f"{DEFAULT_HISTORY_RETENTION / 86400:g} days, added up "
        f"(latest saved {_time(saved[0][1])} UTC; `spool list --all` shows each):"
    )
    _print_counters({name: value for name, value in total.items() if value})


def _print_counters(counters: dict[str, int]) -> None:
    for name, value in sorted(counters.items()):
        print(f"  {name:<40} {value:>10,}")


def _purge(spool: Spool, *, yes: bool) -> int:
    count = len(spool)
    if not yes:
        print(f"{count} digest(s) would be deleted from {spool.directory}; add --yes to do it")
        return 1 if count else 0
    print(f"deleted {spool.purge()} digest(s) from {spool.directory}")
    return 0


def _history(spool: Spool, limit: int) -> int:
    attempts = spool.history(limit=limit)
    print(f"last {len(attempts)} delivery attempt(s), newest first")
    for attempt in attempts:
        result = "ok  " if attempt.ok else "FAIL"
        code = f" {attempt.code}" if attempt.code is not None else ""
        print(
            f"{_time(attempt.at):<20} {result} {attempt.channel:<28} {attempt.step:<9}{code} "
            f"{attempt.duration * 1000:6.0f} ms  {attempt.title}"
        )
        if not attempt.ok and attempt.reply:
            print(f"{'':>21}{one_line(attempt.reply)[:200]}")
    return 0


def _flush(settings: Settings, timeout: float, waiting: int) -> int:
    print(
        f"sending {waiting} waiting digest(s) with the current settings "
        f"({settings.host}:{settings.port} first), for up to {timeout:g} s",
        flush=True,
    )
    engine = Engine(settings)
    engine.start()
    outcome: list[bool] = []
    done = threading.Event()

    def flush() -> None:
        try:
            outcome.append(engine.flush(timeout=timeout))
        finally:
            done.set()

    threading.Thread(target=flush, name="smtp-alerts-spool-flush", daemon=True).start()
    # A line now and then while a slow server keeps us waiting (no spinner: a
    # pipe or a log reads it as well as a terminal).
    started = time.monotonic()
    pause = _PROGRESS_FIRST
    while not done.wait(pause):
        left = engine.stats().undelivered
        print(
            f"  still sending after {time.monotonic() - started:.0f} s: "
            f"{left} digest(s) not yet delivered",
            flush=True,
        )
        pause = _PROGRESS_EVERY
    delivered = bool(outcome and outcome[0])
    engine.close(timeout=min(timeout, settings.shutdown_timeout))
    left = engine.stats().undelivered
    if delivered and not left:
        print("every waiting digest was delivered")
        return 0
    print(f"{left} digest(s) still waiting; see `smtp-alerts spool list` and `spool history`")
    return 1


def _time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
