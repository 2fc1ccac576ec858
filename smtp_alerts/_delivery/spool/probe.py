"""Whether a spool directory holds work: asked by every engine as it is built, so cheap.

An engine built on a directory where an earlier process left digests (or
counts not yet in a digest) starts at once to send them, without waiting for
an alert of its own. Most engines are built where there is nothing, or no
spool at all, so this opens the file read-only only when there is one, and
loads sqlite3 only then.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from .gate import sqlite_gate

__all__ = ["SPOOL_FILENAME", "spool_has_entries"]

SPOOL_FILENAME = "spool.sqlite3"
"""The spool's SQLite file in ``SPOOL_DIR``."""


def spool_has_entries(directory: Path) -> bool:
    """Whether a spool in ``directory`` holds digests or pending counts; cheap, never raises."""
    path = directory / SPOOL_FILENAME
    if not path.is_file():
        return False
    import sqlite3  # noqa: PLC0415 - only where there is a spool (module docstring)

    try:
        with (
            sqlite_gate(),
            contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn,
        ):
            if conn.execute("SELECT EXISTS (SELECT 1 FROM entries)").fetchone()[0]:
                return True
            # Counts pushed to the store and not yet in a digest (an older file has none).
            return bool(
                conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'store_problems')"
                    " AND EXISTS (SELECT 1 FROM store_problems WHERE pending > 0)"
                ).fetchone()[0]
            )
    except sqlite3.Error:
        return True  # let the engine open it properly and say what is wrong
