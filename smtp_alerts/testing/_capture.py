"""``capture_alerts()``: see the digests your code would send, without a server."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .._facade import Engine, swap_default_engine
from ..handler import AlertHandler
from ..models import Digest, OutgoingMessage, Problem
from ..settings import Settings
from ..transports import MemoryTransport

__all__ = ["AlertCapture", "capture_alerts"]

_TEST_ADDRESSES = {"to": ["oncall@example.com"], "from_": "smtp-alerts@example.com"}


class AlertCapture:
    """What a :func:`capture_alerts` block would have sent.

    Reading :attr:`digests`, :attr:`problems` or :attr:`messages` first flushes
    the engine, so everything logged so far is there, whatever the windows.

    Attributes:
        engine: the capturing engine (also returned by ``get_engine()`` inside the block).
    """

    def __init__(self, engine: Engine, transport: MemoryTransport) -> None:
        self.engine = engine
        self._transport = transport

    @property
    def messages(self) -> list[OutgoingMessage]:
        """The rendered messages, in the order they were sent."""
        self.engine.flush(timeout=10)
        return list(self._transport.sent)

    @property
    def digests(self) -> list[Digest]:
        """The digests, in the order they were sent."""
        return [m.digest for m in self.messages if m.digest is not None]

    @property
    def problems(self) -> list[Problem]:
        """Every problem row of every digest."""
        return [problem for digest in self.digests for problem in digest.problems]

    def count(self, message: str) -> int:
        """Occurrences reported for problems whose sample message contains ``message``."""
        return sum(p.count for p in self.problems if message in p.alert.message)


@contextmanager
def capture_alerts(
    level: int = logging.ERROR, *, logger: str | logging.Logger | None = None, **settings: Any
) -> Iterator[AlertCapture]:
    """Capture the alerts raised inside the block instead of sending them.

    An :class:`~smtp_alerts.AlertHandler` on an in-memory channel is attached
    to ``logger`` (the root logger by default), and ``get_engine()`` returns the
    same engine inside the block, so direct ``alert()`` calls are captured too.
    No network, no settings needed::

        with capture_alerts() as captured:
            checkout(cart)
        assert captured.count("payment failed") == 1

    Args:
        level: the least severe level captured.
        logger: the logger (or its name) to attach to.
        **settings: :class:`~smtp_alerts.Settings` overrides (windows, quotas...).

    Yields:
        An :class:`AlertCapture`.
    """
    transport = MemoryTransport()
    engine = Engine(Settings(**{**_TEST_ADDRESSES, **settings}), transport=transport)
    handler = AlertHandler(level, engine=engine)
    target = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
    target.addHandler(handler)
    previous = swap_default_engine(engine)
    try:
        yield AlertCapture(engine, transport)
    finally:
        swap_default_engine(previous)
        target.removeHandler(handler)
        handler.close()
        engine.close()
