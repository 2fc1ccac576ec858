"""Liveness by lock: an owner holds an ``flock`` on its own file for as long as it lives.

Probing a pid says nothing across pid namespaces (two containers sharing a
spool and a host name see different pids), so an owner that can also takes an
exclusive ``flock`` on ``owners/<hash of its name>.lock`` in the spool directory
and keeps it until it exits. The kernel drops the lock when the process dies,
however it dies, and the lock is seen from every namespace sharing the file.
Another process asks :func:`lock_says_alive`: None when the owner never took a
lock (an older version, a CLI), so the caller falls back to probing its pid.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
from pathlib import Path
from typing import Any

__all__ = ["hold", "lock_says_alive"]

# Windows has no flock: liveness falls back to pid probing there.
fcntl: Any = importlib.import_module("fcntl") if os.name == "posix" else None

_held: dict[tuple[int, Path], int] = {}
"""(pid, lock file) to the open descriptor whose lock this process holds."""


def _path(directory: Path, owner: str) -> Path:
    digest = hashlib.sha256(owner.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return directory / "owners" / f"{digest}.lock"


def hold(directory: Path, owner: str) -> None:
    """Take ``owner``'s lock in ``directory`` for the rest of this process's life; idempotent."""
    path = _path(directory, owner)
    key = (os.getpid(), path)
    if fcntl is None or key in _held:
        return
    with contextlib.suppress(OSError):
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return
        _held[key] = fd


def lock_says_alive(directory: Path, owner: str) -> bool | None:
    """Whether ``owner`` is alive by its lock; None when it holds no lock file here."""
    if fcntl is None:
        return None
    path = _path(directory, owner)
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True  # held: its owner lives (in whatever pid namespace)
    else:
        with contextlib.suppress(OSError):
            path.unlink()  # a dead owner's file: tidy up
        return False
    finally:
        os.close(fd)
