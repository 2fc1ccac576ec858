"""The transport protocol and the in-memory transport."""

from __future__ import annotations

import abc

from ..models import OutgoingMessage

__all__ = ["MemoryTransport", "Transport"]


class Transport(abc.ABC):
    """A channel that takes rendered digests.

    :meth:`send` either returns, meaning the channel accepted the message, or
    raises a :class:`~smtp_alerts.errors.DeliveryError` that says why not. A
    transport may keep a connection open between sends (one connection serves
    all the messages of one delivery round); :meth:`aclose` closes it, and the
    transport reconnects if it is used again.
    """

    #: A short name for logs and stats, e.g. ``smtp.gmail.com:587``.
    name: str = "transport"
    #: The login this channel depends on (``user@host``), or None when it has
    #: none: channels that share a credential fail together when it is refused.
    credential: str | None = None

    @abc.abstractmethod
    async def send(self, message: OutgoingMessage, /) -> None:
        """Hand one message to the channel; raise ``DeliveryError`` if it is not taken."""

    async def aclose(self) -> None:  # noqa: B027 - a no-op is the right default
        """Close any open connection. The transport stays usable."""

    async def check_login(self) -> None:  # noqa: B027 - no login, nothing to check
        """Log in on a fresh connection and leave, sending nothing (a login probe).

        Raises:
            DeliveryError: the login (or the way to it) failed.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class MemoryTransport(Transport):
    """A transport that keeps every message in :attr:`sent`; for tests."""

    name = "memory"

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []

    async def send(self, message: OutgoingMessage, /) -> None:
        self.sent.append(message)
