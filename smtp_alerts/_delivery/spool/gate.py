"""The process-wide gate around SQLite calls, which makes forking safe.

SQLite is not fork-safe: a child forked while another thread is inside SQLite
inherits its mutexes locked and hangs on its first call. Every SQLite call of
ours holds this gate, and a fork waits for it, so no thread is inside SQLite
at the moment of a fork (pre-fork servers fork while the engine runs).
"""

from __future__ import annotations

import os
import threading

__all__ = ["sqlite_gate"]

_gate = threading.RLock()


def sqlite_gate() -> threading.RLock:
    """The process-wide lock held around every SQLite call (see the module's docstring).

    Always fetch it through this function: a forked child replaces it, so a
    reference kept from before a fork may be a lock that no thread will release.
    """
    return _gate


def _before_fork() -> None:
    _gate.acquire()


def _after_fork_in_parent() -> None:
    _gate.release()


def _after_fork_in_child() -> None:
    global _gate  # noqa: PLW0603 - the child needs a lock no vanished thread holds
    _gate = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
