"""The library's last resort for telling a human something: a line on stderr."""

from __future__ import annotations

import contextlib
import sys

__all__ = ["warn"]


def warn(text: str) -> None:
    """Print ``text`` on stderr; never raises.

    Not logging: at exit logging may already be shut down, and our own
    loggers never reach an alert handler anyway.
    """
    with contextlib.suppress(Exception):
        print(text, file=sys.stderr, flush=True)
