"""The process's engines: who they are, which is the default, and forks and exit.

This module is the one place that hooks the process around ``os.fork`` and at
exit, in one order read here rather than inferred from import order:

- before a fork: take the SQLite gate, so that no thread is inside SQLite at
  the moment of the fork (see :func:`~smtp_alerts._delivery.spool.sqlite_gate`);
- after it, in the parent: give the gate back;
- after it, in the child: a new gate, a new default-engine lock, then every
  engine starts afresh (its intake and loop side, then its extensions: a
  heartbeat monitor's locks and tasks), so each child starts its own thread on
  its first alert, as a pre-fork server needs;
- at exit: every engine that started closes, side by side; each delivers what
  is pending within its ``SHUTDOWN_TIMEOUT``, then closes its extensions (a
  heartbeat monitor writes the beats not yet written).

Engines are held weakly: one nobody uses is not kept alive by the registry.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from .._delivery.spool import gate as sqlite

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["DefaultEngine", "ProcessEngine", "close_all", "longest_shutdown", "register"]


class ProcessEngine(Protocol):
    """What the process's hooks need of an engine (the engine core has it)."""

    @property
    def settings(self) -> Settings:
        """The settings (``SHUTDOWN_TIMEOUT``)."""

    @property
    def started(self) -> bool:
        """Whether its thread was started in this process."""

    @property
    def closed(self) -> bool:
        """Whether it takes no more alerts."""

    def begin_close(self) -> None:
        """Stop taking alerts and have the loop deliver and stop; returns at once."""

    def close(self, timeout: float | None = None) -> bool:
        """Deliver what is pending and stop, waiting at most ``timeout`` seconds."""

    def after_fork(self) -> None:
        """Start afresh in a forked child."""


M = TypeVar("M", bound=ProcessEngine)

_ENGINES: weakref.WeakSet[ProcessEngine] = weakref.WeakSet()
# Held while the default engine is made; a lock some thread held at a fork
# stays held in the child for ever, so the child gets a new one.
_default_lock = threading.Lock()


def register(engine: ProcessEngine) -> None:
    """Reset ``engine`` in forked children and close it at exit (an engine registers itself)."""
    _ENGINES.add(engine)


class DefaultEngine(Generic[M]):
    """The process's default engine: made by ``make`` on first use, and again once closed.

    Args:
        make: builds the default engine (from the environment).
    """

    def __init__(self, make: Callable[[], M]) -> None:
        self._from_environment = self._make = make
        self._engine: M | None = None

    def get(self) -> M:
        """The default engine, made now if there is none or it is closed."""
        with _default_lock:
            engine = self._engine
            if engine is None or engine.closed:
                engine = self._engine = self._make()
            return engine

    def for_settings(self, settings: Settings, make: Callable[[Settings], M]) -> tuple[M, bool]:
        """The engine for ``settings`` given in code; and whether it is the caller's own.

        The first settings given in code configure the default engine (made
        by ``make``, and made again the same way once closed), which everything
        else in the process shares; the default engine serves later equal
        settings too. Settings that differ from it (another team's
        addresses, say) get an engine of the caller's own.
        """
        with _default_lock:
            engine = self._engine
            if engine is None or engine.closed:
                self._make = lambda: make(settings)
                engine = self._engine = make(settings)
                return engine, False
        try:
            same = engine.settings == settings
        except Exception:  # noqa: BLE001 - a default engine whose own settings fail is not it
            same = False
        return (engine, False) if same else (make(settings), True)

    def swap(self, engine: M | None) -> M | None:
        """Make ``engine`` the default engine; return the previous one.

        Swapping in None forgets settings given in code too: the next
        default engine is made from the environment.
        """
        with _default_lock:
            previous, self._engine = self._engine, engine
            if engine is None:
                self._make = self._from_environment
            return previous


def longest_shutdown() -> float | None:
    """The longest ``SHUTDOWN_TIMEOUT`` of the engines that started; None when none did."""
    timeouts = [e.settings.shutdown_timeout for e in list(_ENGINES) if e.started]
    return max(timeouts) if timeouts else None


def close_all() -> None:
    """Close every engine that started, delivering what waits: the exit hook.

    The crash hooks' SIGTERM handler runs it too. Every engine is told to
    close first, then each is waited for within what is left of its own
    ``SHUTDOWN_TIMEOUT``: the exit waits for the slowest, not for the sum.
    """
    engines = [engine for engine in list(_ENGINES) if engine.started]
    for engine in engines:
        engine.begin_close()
    started = time.monotonic()
    for engine in engines:
        remaining = engine.settings.shutdown_timeout - (time.monotonic() - started)
        engine.close(max(0.0, remaining))


def _before_fork() -> None:
    sqlite.before_fork()


def _after_fork_in_parent() -> None:
    sqlite.after_fork_in_parent()


def _after_fork_in_child() -> None:
    global _default_lock  # noqa: PLW0603 - see its definition
    sqlite.after_fork_in_child()  # first: the gate taken before the fork is the parent's
    _default_lock = threading.Lock()
    for engine in list(_ENGINES):
        engine.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
atexit.register(close_all)
