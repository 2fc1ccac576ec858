"""The sink: what an engine offers the front-ends above it.

Jobs, heartbeats, checks, the crash hooks and the ``watch`` command are typed
against :class:`AlertSink`, never against an engine class: the engine does not
import them and they do not import it, so the layers of docs/architecture.md
hold in both directions. :class:`~smtp_alerts.Engine` is an ``AlertSink``, and
so is anything with these members (a test double, a wrapper).

A front-end that keeps state per engine (the heartbeat monitor, the check
monitor) asks the engine for it with :meth:`AlertSink.extension`. The engine
keeps it, closes it when the engine closes and resets it in a forked child, so
the front-end needs no registry of its own, no ``atexit`` hook and no fork hook.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import concurrent.futures

    from .._util.clock import Clock
    from ..settings import Settings

__all__ = ["AlertSink", "EngineExtension"]

T = TypeVar("T")
E = TypeVar("E", bound="EngineExtension")


class EngineExtension(Protocol):
    """State a front-end keeps per engine, made by :meth:`AlertSink.extension`."""

    def close(self) -> None:
        """Write what must outlive the engine: the engine is closing.

        Called once, on the thread that closes the engine (the exit hook's at
        interpreter exit), after the engine's loop has stopped or the wait for
        it ended. The extension may still be used afterwards: what it does
        then must not need the engine's loop. What it raises is logged.
        """

    def after_fork(self) -> None:
        """Forget the parent's locks and loop tasks: this is a forked child.

        Called by the fork hook in the child, where only the forking thread
        runs, after the engine itself was reset.
        """


class AlertSink(Protocol):
    """What front-ends may use of an engine: alerts in, its loop, per-engine state."""

    @property
    def settings(self) -> Settings:
        """The engine's settings (``SPOOL_DIR`` holds front-ends' state files too)."""

    @property
    def clock(self) -> Clock:
        """The engine's clock, for front-ends that keep their own windows."""

    def alert(
        self,
        message: str,
        *,
        level: int = logging.ERROR,
        name: str = "alert",
        key: str | None = None,
        details: str | None = None,
        exc: BaseException | None = None,
        group: str = "default",
        source: str = "alert",
        context: Mapping[str, object] | None = None,
    ) -> bool:
        """Raise an alert; never blocks. False when it was dropped (see ``Engine.alert``)."""

    def run_coroutine(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coroutine`` on the engine's loop; cancelled when the engine closes.

        Raises:
            RuntimeError: the engine is closed (the coroutine is closed unrun).
        """

    def extension(self, factory: Callable[[AlertSink], E]) -> E:
        """The engine's one ``factory(engine)``, made on the first call; thread-safe.

        The factory (a class, usually) is the key: every call with it returns
        the same object, which the engine closes and resets at fork (see
        :class:`EngineExtension`). It must do no I/O and must not call
        ``extension`` with the same factory.
        """

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver everything accepted so far now; whether all of it was delivered."""

    def close(self, timeout: float | None = None) -> bool:
        """Deliver what is pending and stop (bounded by ``SHUTDOWN_TIMEOUT``)."""
