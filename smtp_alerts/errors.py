"""The exceptions smtp-alerts raises.

Everything the library raises derives from :class:`SMTPAlertsError`. Delivery
errors also derive from the matching builtin (a timeout is a ``TimeoutError``, a
refused connection a ``ConnectionError``), so generic ``except`` clauses keep
working::

    SMTPAlertsError
    ├── ConfigurationError (ValueError)          wrong or missing settings, at start-up
    └── DeliveryError                             one channel failed to take one message
        ├── DeliveryTimeoutError (TimeoutError)   a step or the overall deadline passed
        ├── ConnectError (ConnectionError)        refused, reset, or disconnected mid-way
        ├── TLSError                              the secure channel could not be set up
        │   ├── StartTLSNotOfferedError           no STARTTLS: credentials never sent
        │   └── CertificateVerifyError            the server's certificate is not trusted
        ├── AuthenticationError                   530 / 534 / 535 / 454 on AUTH, token errors
        └── ReplyError                            the server answered a command with an error
            ├── TemporaryReplyError               4xx: try again later
            └── PermanentReplyError               5xx: this channel will not take it
                ├── QuotaExceededError            550 5.4.5: daily sending limit reached
                ├── MessageTooLargeError          552 5.3.4: message exceeds the size limit
                └── RecipientsRefusedError        every recipient was refused

A :class:`DeliveryError` says which ``channel`` failed, at which ``step``
(``connect``, ``starttls``, ``auth``, ``mail``, ``rcpt``, ``data``...), and
whether trying again later may help (:attr:`DeliveryError.transient`). Secrets
never appear in any message.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "CertificateVerifyError",
    "ConfigurationError",
    "ConnectError",
    "DeliveryError",
    "DeliveryTimeoutError",
    "MessageTooLargeError",
    "PermanentReplyError",
    "QuotaExceededError",
    "RecipientsRefusedError",
    "ReplyError",
    "SMTPAlertsError",
    "StartTLSNotOfferedError",
    "TLSError",
    "TemporaryReplyError",
]


class SMTPAlertsError(Exception):
    """Base class of every exception raised by smtp-alerts."""


class ConfigurationError(SMTPAlertsError, ValueError):
    """A setting is missing or wrong; the message names the environment variable."""


class DeliveryError(SMTPAlertsError):
    """One channel failed to take one message.

    Args:
        message: what happened, in words a person can act on.
        channel: the channel's name, e.g. ``smtp.gmail.com:587``.
        step: the protocol step that failed (``connect``, ``starttls``, ``auth``...).
        code: the server's reply code, when there was one.
        reply: the server's reply text, when there was one.
    """

    #: Whether trying the same channel again later may succeed.
    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        channel: str = "",
        step: str = "",
        code: int | None = None,
        reply: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.channel = channel
        self.step = step
        self.code = code
        self.reply = reply

    def __str__(self) -> str:
        where = " ".join(part for part in (self.channel, self.step) if part)
        return f"{where}: {self.message}" if where else self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, channel={self.channel!r}, "
            f"step={self.step!r}, code={self.code!r})"
        )


class DeliveryTimeoutError(DeliveryError, TimeoutError):
    """A step, or the overall deadline of the attempt, passed without an answer."""

    transient = True


class ConnectError(DeliveryError, ConnectionError):
    """The connection was refused, reset, or dropped by the server mid-way."""

    transient = True


class TLSError(DeliveryError):
    """The secure channel could not be set up."""


class StartTLSNotOfferedError(TLSError):
    """The server did not offer STARTTLS, so the credentials were not sent."""


class CertificateVerifyError(TLSError):
    """The server's certificate could not be verified against the trusted CAs."""


class AuthenticationError(DeliveryError):
    """The server refused the credentials (530, 534, 535, 454) or the OAuth token."""

    #: ``XOAUTH2`` when an OAuth2 token was refused or could not be had; else ``""``.
    mechanism: str = ""


class ReplyError(DeliveryError):
    """The server answered a command with an error reply."""


class TemporaryReplyError(ReplyError):
    """A 4xx reply: the server asks to try again later."""

    transient = True


class PermanentReplyError(ReplyError):
    """A 5xx reply: this channel will not take the message."""


class QuotaExceededError(PermanentReplyError):
    """550 5.4.5: the account's daily sending limit is reached."""


class MessageTooLargeError(PermanentReplyError):
    """552 5.3.4: the message exceeds the server's size limit."""


class RecipientsRefusedError(PermanentReplyError):
    """The server refused every recipient."""
