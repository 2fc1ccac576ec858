"""``smtp-alerts silence``: add, list and remove silences, shared through the store."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from datetime import datetime, timezone

from .._store.silences import Silence, SilenceBook, new_silence, silence_book
from ..settings import parse_duration
from . import store_settings

__all__ = ["run_silence_command"]


def run_silence_command(args: argparse.Namespace) -> int:
    """Run ``smtp-alerts silence ACTION``; returns the exit status (2: wrong usage)."""
    settings = store_settings()
    try:
        with silence_book(settings) as book:
            if args.action == "add":
                return _add(book, args)
            if args.action == "list":
                return _list(book)
            return _remove(book, args.id)
    except BrokenPipeError:
        raise  # the reader of our output went away: main() ends quietly
    except (OSError, sqlite3.Error) as exc:
        where = "Redis" if settings.redis_url is not None else f"the store at {settings.spool_path}"
        print(f"smtp-alerts: cannot use {where}: {exc}", file=sys.stderr)
        return 1


def _add(book: SilenceBook, args: argparse.Namespace) -> int:
    try:
        duration = parse_duration(args.duration)
        silence = new_silence(
            book.now(),
            duration,
            logger=args.logger,
            match=args.match,
            check=args.check,
            comment=args.comment or "",
        )
    except ValueError as exc:
        print(f"smtp-alerts silence add: {exc}", file=sys.stderr)
        return 2
    book.add(silence)
    print(silence.id)
    return 0


def _list(book: SilenceBook) -> int:
    now = book.now()
    silences = book.all()
    if not silences:
        print("no silences")
        return 0
    print(f"{'id':<8}  {'until':<20} {'held':>8}  what / comment")
    for silence in silences:
        print(
            f"{silence.id:<8}  {_until(silence, now):<20} {silence.held:>8,}  {silence.describe()}"
        )
        if silence.comment:
            print(f"{'':<41}{silence.comment}")
    return 0


def _until(silence: Silence, now: float) -> str:
    if silence.ends_at <= now:
        return "ended (unreported)"
    return datetime.fromtimestamp(silence.ends_at, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _remove(book: SilenceBook, silence_id: str) -> int:
    if not book.end(silence_id):
        print(f"smtp-alerts silence remove: no silence {silence_id!r}", file=sys.stderr)
        return 1
    print(f"silence {silence_id} ended; the next digest says what it held")
    return 0
