"""What the Gmail-like server and its connections share: the account, the faults, the records.

Also where the server listens and how (:data:`HOST`, :data:`Mode`). The
records are what tests look at afterwards: one :class:`AuthAttempt` per AUTH
command and one :class:`ReceivedMessage` per accepted message.
"""

from __future__ import annotations

import collections
import hmac
import logging
import ssl
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

if TYPE_CHECKING:
    from email.message import EmailMessage

    from ._faults import Faults

__all__ = ["HOST", "AuthAttempt", "Mode", "ReceivedMessage", "SharedState"]

_log = logging.getLogger("smtp_alerts.testing.server")

HOST = "127.0.0.1"
"""The address the server listens on, so where its clients come from."""
Mode = Literal["starttls", "tls", "plain"]
"""``starttls`` (like port 587), ``tls`` (like port 465) or ``plain`` (no TLS)."""


class AuthAttempt(NamedTuple):
    """One AUTH command as the server saw it; compares equal to a plain tuple.

    Attributes:
        mechanism: the mechanism named by the client, upper-cased (``PLAIN``...).
        username: the user the client claimed, when it got that far.
        success: whether the server answered ``235``.
    """

    mechanism: str
    username: str | None
    success: bool


@dataclass(frozen=True)
class ReceivedMessage:
    """One message the server accepted.

    Attributes:
        sender: the envelope sender (``MAIL FROM``).
        recipients: the envelope recipients (``RCPT TO``), in order.
        message: the message parsed with :data:`email.policy.default` (line
            ends turned into ``\n``, so ``get_content()`` compares to plain strings).
        raw: the message exactly as received, after dot-unstuffing.
        auth_mechanism: the AUTH mechanism of the session, if it authenticated.
        auth_username: the user the session authenticated as.
    """

    sender: str
    recipients: tuple[str, ...]
    message: EmailMessage = field(repr=False)
    raw: bytes = field(repr=False)
    auth_mechanism: str | None
    auth_username: str | None

    @property
    def subject(self) -> str:
        """The message's Subject header, or an empty string."""
        return str(self.message.get("Subject", ""))


class Connection(Protocol):
    """What the server does to a live connection of its own: cut it at once."""

    def abort(self) -> None:
        """Cut the connection without a goodbye."""


class SharedState:
    """What a server shares with its connections: the account, faults and records.

    The test thread reads and changes it while the loop thread serves; the
    records are guarded by :attr:`condition`, and single attribute assignments
    (a new password, a fault switched off) need no lock.
    """

    def __init__(
        self,
        *,
        mode: Mode,
        username: str,
        password: str,
        xoauth2_token: str | None,
        auth_required: bool,
        faults: Faults,
        tls_context: ssl.SSLContext,
    ) -> None:
        self.mode: Mode = mode
        self.username = username
        self.password = password
        self.xoauth2_token = xoauth2_token
        self.auth_required = auth_required
        self.faults = faults
        self.tls_context = tls_context
        self.condition = threading.Condition()
        self.messages: list[ReceivedMessage] = []
        self.auth_attempts: list[AuthAttempt] = []
        self.connections = 0
        self.fired: collections.Counter[str] = collections.Counter()
        self.live: set[Connection] = set()  # touched only on the loop thread

    def fire(self, fault: str) -> bool:
        """Whether the set fault ``fault`` acts now; if so count it and spend one fail_times."""
        with self.condition:
            faults = self.faults
            if faults.fail_times is not None:
                if faults.fail_times <= 0:
                    return False
                faults.fail_times -= 1
            self.fired[fault] += 1
            return True

    def record_auth(self, attempt: AuthAttempt) -> None:
        # Never the secret: only who tried, how, and whether it worked.
        _log.debug("AUTH %s as %s: %s", attempt.mechanism, attempt.username, attempt.success)
        with self.condition:
            self.auth_attempts.append(attempt)

    def record_message(self, message: ReceivedMessage) -> None:
        with self.condition:
            self.messages.append(message)
            self.condition.notify_all()

    def check_password(self, username: str, password: str) -> bool:
        user_ok = username.casefold() == self.username.casefold()
        password_ok = hmac.compare_digest(password.encode(), self.password.encode())
        return user_ok and password_ok

    def check_token(self, username: str, token: str) -> bool:
        expected = self.xoauth2_token
        if expected is None:
            return False
        user_ok = username.casefold() == self.username.casefold()
        return hmac.compare_digest(token.encode(), expected.encode()) and user_ok
