"""The process-wide gate around SQLite calls, which makes forking safe.

SQLite is not fork-safe: a child forked while another thread is inside SQLite
inherits its mutexes locked and hangs on its first call. Every SQLite call of
ours holds this gate, and a fork waits for it, so no thread is inside SQLite
at the moment of a fork (pre-fork servers fork while the engine runs).
"""

from __future__ import annotations

import threading

__all__ = ["after_fork_in_child", "after_fork_in_parent", "before_fork", "sqlite_gate"]

_gate = threading.RLock()


def sqlite_gate() -> threading.RLock:
    """The process-wide lock held around every SQLite call (see the module's docstring).

    Always fetch it through this function: a forked child replaces it, so a
    reference kept from before a fork may be a lock that no thread will release.
    """
    return _gate


# The process's fork hook (smtp_alerts._engine.process) calls these three, in
# its one order with the engines' own.
def before_fork() -> None:
    """Take the gate: no thread is inside SQLite while the process forks."""
    _gate.acquire()


def after_fork_in_parent() -> None:
    """Give the gate back in the parent."""
    _gate.release()


def after_fork_in_child() -> None:
    """A new gate in the child: the one taken before the fork belongs to the parent."""
    global _gate  # noqa: PLW0603 - the child needs a lock no vanished thread holds
    _gate = threading.RLock()
