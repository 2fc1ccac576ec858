"""The SMTP transport's one error boundary: aiosmtplib, ssl and OSError failures as our errors.

Every protocol step of :class:`~smtp_alerts.transports.smtp.SMTPTransport`
runs inside :meth:`ErrorMap.map_exceptions` (the shape of httpcore's
``map_exceptions``), which raises the most specific
:class:`~smtp_alerts.errors.DeliveryError` ``from`` the original:

==========================================  ===========================================
what aiosmtplib, ssl or the OS raised       what the transport raises
==========================================  ===========================================
``ssl.SSLError`` anywhere in the chain      ``CertificateVerifyError``, ``TLSError`` or
                                            ``ConnectError``, as every client reads them
``SMTPTimeoutError``                        ``DeliveryTimeoutError`` (a step's timeout)
an error reply (``SMTPResponseException``)  classified by :func:`reply_error`
``OSError`` (refused, reset, disconnected)  ``ConnectError``
any other aiosmtplib error                  ``DeliveryError``
==========================================  ===========================================

A failure before a usable ``220`` greeting is reported at step ``greeting``.
Every message names the channel, the step, the reply code and Gmail's
enhanced status code (with a hint for Gmail's well-known refusals), and
never a secret: whatever the server echoes is scrubbed of the password or
token in each form it travelled in.

No I/O: the session does the talking, this module only reads what went wrong.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import ssl
from typing import TYPE_CHECKING, Any

import aiosmtplib

from .._util.smtp_reply import enhanced_status, one_line
from .._util.tls import tls_failure
from ..errors import (
    AuthenticationError,
    ConnectError,
    DeliveryError,
    DeliveryTimeoutError,
    MessageTooLargeError,
    PermanentReplyError,
    QuotaExceededError,
    TemporaryReplyError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["ErrorMap", "reply_error", "secret_forms", "xoauth2_error"]

# The SMTP transport's logger: its session and its errors speak under one name.
_log = logging.getLogger("smtp_alerts.transports.smtp")

_AUTH_REFUSALS = frozenset({454, 530, 534, 535})
_ENVELOPE_STEPS = frozenset({"mail", "rcpt", "data"})
_HINTS = {
    (535, "5.7.8"): (
        "use the full address as username and an app password "
        "(https://myaccount.google.com/apppasswords), not the account password"
    ),
    (534, "5.7.9"): "the account uses 2-Step Verification: an app password is required",
    (534, "5.7.14"): "Google wants a sign-in from a browser before it accepts this login",
    (454, "4.7.0"): "too many login attempts: wait before trying again",
    (550, "5.4.5"): "the account's daily sending limit is reached",
}
_SCRUBBED = "********"


class ErrorMap:
    """How one transport's failures read: the channel and host they name, the secrets they hide.

    Args:
        channel: the channel's name, ``host:port``.
        host: the server's name.
        step_timeout: the timeout of each protocol step, named when one passes.
    """

    def __init__(self, *, channel: str, host: str, step_timeout: float) -> None:
        self.channel = channel
        self.host = host
        self.step_timeout = step_timeout
        #: What never appears in an error: the connection's secret in each form
        #: it travels (see :func:`secret_forms`); empty when nothing was sent.
        self.secrets: tuple[str, ...] = ()

    @contextlib.contextmanager
    def map_exceptions(self, step: str, *, xoauth2: bool = False) -> Iterator[None]:
        """Raise the :class:`DeliveryError` for whatever fails inside, ``from`` it.

        Args:
            step: the protocol step running inside (``connect``, ``auth``...).
            xoauth2: the step is an AUTH XOAUTH2: any refusal is the token's.

        Raises:
            DeliveryError: the subclass that says what failed; a
                :class:`DeliveryError` raised inside passes unchanged.
        """
        try:
            yield
        except DeliveryError:
            raise
        except Exception as exc:
            _log.debug("%s: %s failed: %s", self.channel, step, type(exc).__name__)
            raise self.translate(exc, step, xoauth2=xoauth2) from exc

    def translate(self, exc: BaseException, step: str, *, xoauth2: bool = False) -> DeliveryError:
        """The :class:`DeliveryError` for ``exc`` raised at ``step``; secrets scrubbed."""
        failure = _in_chain(exc, ssl.SSLError)
        if failure is not None:
            return tls_failure(failure, host=self.host, channel=self.channel, step=step)
        channel, host = self.channel, self.host
        if isinstance(exc, aiosmtplib.SMTPConnectResponseError) or (
            step == "connect" and isinstance(exc.__cause__, aiosmtplib.SMTPException)
        ):
            step = "greeting"  # the TCP connection was up; no usable 220 came
        if isinstance(exc, aiosmtplib.SMTPTimeoutError):
            return DeliveryTimeoutError(
                f"{host} did not answer within the {self.step_timeout:g}s step timeout",
                channel=channel,
                step=step,
            )
        if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 200:
            reply = self.scrub(exc.message)
            return reply_error(
                channel=channel, step=step, code=exc.code, reply=reply, xoauth2=xoauth2
            )
        if isinstance(exc, OSError):  # aiosmtplib's disconnects are ConnectionErrors too
            verb = "could not connect to" if step == "connect" else "lost the connection to"
            return ConnectError(f"{verb} {host}: {_os_reason(exc)}", channel=channel, step=step)
        # aiosmtplib's protocol errors (a malformed reply...), or a message it
        # refuses to put on the wire.
        what = exc.message if isinstance(exc, aiosmtplib.SMTPException) else str(exc)
        return DeliveryError(
            f"the exchange with {host} failed ({type(exc).__name__}: {self.scrub(what)})",
            channel=channel,
            step=step,
        )

    def scrub(self, text: str) -> str:
        """``text`` with every form of the secret replaced by ``********``."""
        # A confused server may echo what it was sent; the secret stays out of
        # our errors whatever the server says.
        for secret in self.secrets:
            text = text.replace(secret, _SCRUBBED)
        return text


def reply_error(
    *, channel: str, step: str, code: int, reply: str, xoauth2: bool = False
) -> DeliveryError:
    """Classify an SMTP error reply at ``step`` into the matching :class:`DeliveryError`.

    Args:
        channel: the channel's name.
        step: the protocol step the reply answered.
        code: the reply code.
        reply: the reply text, without the code (as aiosmtplib hands it over).
        xoauth2: the reply answered AUTH XOAUTH2.

    Returns:
        The error, its message naming the code, the enhanced status code and,
        for Gmail's known refusals, what to do.
    """
    enhanced = enhanced_status(reply)
    status = f"{code} {enhanced}" if enhanced else str(code)
    hint = _HINTS.get((code, enhanced))
    detail = f"({status}) {one_line(reply)}" + (f"; {hint}" if hint else "")
    fields: dict[str, Any] = {"channel": channel, "step": step, "code": code, "reply": reply}
    if step == "auth" and (code in _AUTH_REFUSALS or xoauth2):
        error = AuthenticationError(f"the server refused the credentials {detail}", **fields)
        error.mechanism = "XOAUTH2" if xoauth2 else ""
        return error
    if code == 530 and step in _ENVELOPE_STEPS:
        return AuthenticationError(f"the server requires authentication {detail}", **fields)
    if code == 550 and enhanced == "5.4.5":
        return QuotaExceededError(f"the sending quota is exhausted {detail}", **fields)
    if code == 552:
        return MessageTooLargeError(f"the message is too large {detail}", **fields)
    if 400 <= code < 500:
        return TemporaryReplyError(f"the server said try later {detail}", **fields)
    return PermanentReplyError(f"the server refused {step or 'the command'} {detail}", **fields)


def xoauth2_error(message: str, *, channel: str) -> AuthenticationError:
    """An XOAUTH2 login that failed before or without a reply (no token, no mechanism)."""
    error = AuthenticationError(message, channel=channel, step="auth")
    error.mechanism = "XOAUTH2"
    return error


def secret_forms(username: str, secret: str) -> tuple[str, ...]:
    """The secret as it travels: raw, base64, and inside the PLAIN/XOAUTH2 blobs."""
    raw = secret.encode()
    user = username.encode()
    blobs = (
        raw,
        b"\x00" + user + b"\x00" + raw,
        b"user=" + user + b"\x01auth=Bearer " + raw + b"\x01\x01",
    )
    forms = [secret] + [base64.b64encode(blob).decode() for blob in blobs]
    return tuple(form for form in forms if form)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then its cause or context, and so on (each exception once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = current.__cause__ or current.__context__


def _in_chain(exc: BaseException, kind: type[ssl.SSLError]) -> ssl.SSLError | None:
    """The first exception of ``kind`` in ``exc``'s cause/context chain."""
    return next((item for item in _chain(exc) if isinstance(item, kind)), None)


def _os_reason(exc: BaseException) -> str:
    """The OS's words for a network failure (``Connection refused``), else the error's."""
    for item in _chain(exc):
        if isinstance(item, OSError) and item.strerror:
            return item.strerror
    return str(exc) or type(exc).__name__
