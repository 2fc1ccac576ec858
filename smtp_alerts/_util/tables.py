"""Bounded tables: dicts that forget their oldest entries when they grow too large."""

from __future__ import annotations

import itertools
from typing import Any

__all__ = ["forget_oldest"]


def forget_oldest(table: dict[Any, Any]) -> None:
    """Forget the oldest quarter of ``table`` (dicts keep insertion order), from any thread.

    ``list()`` of an ``islice`` runs in C without running Python code, so no
    other thread changes the table under it; ``pop()`` tolerates a key that
    another thread removed meanwhile.
    """
    for key in list(itertools.islice(table, len(table) // 4)):
        table.pop(key, None)
