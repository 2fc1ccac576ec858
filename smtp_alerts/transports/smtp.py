"""The SMTP transport: one session with Gmail (or any submission server) through aiosmtplib.

With :mod:`~smtp_alerts.transports.smtp_errors`, which reads its failures,
it is the only module that imports :mod:`aiosmtplib`. It adds what a
long-running alert sender needs on top of it:

- an overall deadline for each send, on top of aiosmtplib's per-step timeout
  (a server that answers every step just in time cannot stretch a send);
- mandatory STARTTLS on ``starttls``: a server that does not offer it never
  sees the credentials, nor the message;
- always-verified certificates, with an optional extra CA file;
- exactly one AUTH command per connection, because Gmail counts every failed
  attempt and locks out a login storm;
- nothing that needs a thread: the TLS context is built up front and the
  EHLO name comes from :func:`socket.gethostname`, so sending still works
  while the interpreter shuts down and executors refuse new work;
- every failure translated to :mod:`smtp_alerts.errors` at one boundary
  (:mod:`~smtp_alerts.transports.smtp_errors`), with the step, the reply code
  and Gmail's enhanced status code, and never a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.generator
import email.policy
import io
import logging
import sys
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, TypeVar

import aiosmtplib

from .._util.clock import SYSTEM_CLOCK, Clock
from .._util.net import Security, ehlo_hostname, is_ehlo_name, is_loopback
from .._util.smtp_reply import one_line
from .._util.tls import verifying_context
from ..errors import (
    AuthenticationError,
    DeliveryError,
    DeliveryTimeoutError,
    PermanentReplyError,
    RecipientsRefusedError,
    StartTLSNotOfferedError,
    TLSError,
)
from ._base import Transport
from .smtp_errors import ErrorMap, secret_forms, xoauth2_error
from .xoauth2 import InvalidTokenError, TokenSource

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
    from pathlib import Path

    from ..models import OutgoingMessage
    from .xoauth2 import TokenProvider

__all__ = ["DEFAULT_TIMEOUT", "MAX_RECIPIENTS", "MAX_STEP_TIMEOUT", "SMTPTransport"]

DEFAULT_TIMEOUT = 30.0
"""The overall deadline of one send, in seconds."""
MAX_STEP_TIMEOUT = 10.0
"""The default per-step timeout is the deadline, capped at this many seconds."""
MAX_RECIPIENTS = 100
"""Recipients per SMTP transaction; more are split into several transactions."""
QUIT_TIMEOUT = 1.0
"""How long :meth:`SMTPTransport.aclose` waits for the reply to QUIT."""
_WATCHDOG_INTERVAL = 0.05

_T = TypeVar("_T")

_log = logging.getLogger("smtp_alerts.transports.smtp")


class SMTPTransport(Transport):
    """Sends rendered digests through an SMTP submission server such as Gmail.

    One connection is kept open across consecutive :meth:`send` calls (checked
    with NOOP before reuse) and closed by :meth:`aclose`; a connection that
    failed in any way is dropped and the next send opens a new one. An
    XOAUTH2 connection is also retired (QUIT) once its token is about to
    expire, since Gmail ends OAuth sessions when their token does.

    Args:
        host: the server, e.g. ``smtp.gmail.com``.
        port: 587 for ``starttls``, 465 for ``tls``.
        security: ``starttls`` (STARTTLS required before anything is sent),
            ``tls`` (TLS from the first byte) or ``none`` (no TLS; loopback only
            when there is a password).
        username: the account to authenticate as; no AUTH without a secret.
        password: the password, or a callable returning it, called once per
            new connection (so a rotated password file is picked up).
        token_provider: for AUTH XOAUTH2, a callable (sync or async)
            returning an access token: a ``str`` (assumed to live an hour), an
            :class:`~smtp_alerts.OAuthToken`, or credentials with ``.token``
            and ``.expiry`` (google-auth's). The token is kept and reused for
            new connections until :data:`~smtp_alerts.transports.xoauth2.TOKEN_REFRESH_MARGIN`
            before it expires, then asked for again; a refused token is
            forgotten. Mutually exclusive with ``password``.
        ca_file: a PEM bundle trusted in addition to the system's CAs.
        timeout: the overall deadline of one :meth:`send`, in seconds.
        step_timeout: the timeout of each protocol step; by default the
            deadline, capped at :data:`MAX_STEP_TIMEOUT`.
        local_hostname: the name sent with EHLO; by default
            :func:`socket.gethostname`.
        clock: the current time (epoch seconds), for token lifetimes.

    Raises:
        ValueError: inconsistent options (both a password and a token
            provider, a secret without a username, a password in clear text to
            a remote host, a non-positive timeout, an unreadable CA file, an
            EHLO name with spaces or control characters).
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: Security,
        username: str | None = None,
        password: str | Callable[[], str | None] | None = None,
        token_provider: TokenProvider | None = None,
        ca_file: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        step_timeout: float | None = None,
        local_hostname: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if security not in ("starttls", "tls", "none"):
            raise ValueError(f"security must be 'starttls', 'tls' or 'none', not {security!r}")
        if password is not None and token_provider is not None:
            raise ValueError("password and token_provider are mutually exclusive")
        if (password is not None or token_provider is not None) and not username:
            raise ValueError("a username is required with a password or a token_provider")
        has_credential = password is not None or token_provider is not None
        if security == "none" and has_credential and not is_loopback(host):
            kind = "the password" if token_provider is None else "the OAuth token"
            raise ValueError(
                f"security='none' would send {kind} in clear text to {host}; "
                "use starttls (port 587) or tls (port 465)"
            )
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        if step_timeout is not None and not step_timeout > 0:
            raise ValueError("step_timeout must be a positive number of seconds")
        if local_hostname is not None and not is_ehlo_name(local_hostname):
            raise ValueError(f"{local_hostname!r} cannot be sent with EHLO")

        self.name = f"{host}:{port}"
        self.credential = _credential(username, host, port)
        self._host = host
        self._port = port
        self._security: Security = security
        self._username = username
        self._password = password
        self._tokens = (
            TokenSource(token_provider, clock=clock) if token_provider is not None else None
        )
        self._clock = clock
        self._timeout = float(timeout)
        self._step_timeout = float(
            step_timeout if step_timeout is not None else min(timeout, MAX_STEP_TIMEOUT)
        )
        self._local_hostname = local_hostname or ehlo_hostname()
        # Built once here: aiosmtplib would otherwise build it in a worker thread
        # (asyncio.to_thread), which fails once the interpreter is shutting down.
        self._tls_context = verifying_context(ca_file) if security != "none" else None

        self._errors = ErrorMap(channel=self.name, host=host, step_timeout=self._step_timeout)

        self._smtp: aiosmtplib.SMTP | None = None
        # When the open connection must be retired: its OAuth token's expiry
        # minus the margin; None for a password login (or none).
        self._retire_at: float | None = None
        self._step = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._expired = False
        self._watchdog_handle: asyncio.TimerHandle | None = None

    @property
    def timeout(self) -> float:
        """The overall deadline of one send, in seconds."""
        return self._timeout

    @property
    def step_timeout(self) -> float:
        """The timeout of each protocol step, in seconds."""
        return self._step_timeout

    def __repr__(self) -> str:
        return f"<SMTPTransport {self.name} {self._security} username={self._username!r}>"

    async def send(self, message: OutgoingMessage, /) -> None:
        """Deliver ``message`` to every recipient, within the overall deadline.

        Args:
            message: the rendered digest; its envelope sender and recipients
                are used, not its headers.

        Raises:
            DeliveryError: the subclass that says what failed (see
                :mod:`smtp_alerts.errors`).
        """
        async with self._bound_lock():
            await self._guarded(self._send(message))

    async def check_login(self) -> None:
        """Connect, secure the connection and log in on a new connection, then QUIT.

        A login probe: what :meth:`send` does before the first MAIL FROM, under
        the same deadline, with the same single AUTH attempt and the same errors.

        Raises:
            DeliveryError: the subclass that says what failed.
        """
        async with self._bound_lock():
            self._discard()  # a probe proves a fresh login, not an old session
            await self._guarded(self._login_once())

    async def _login_once(self) -> None:
        self._step = ""
        await self._connect()
        await self._quit()

    async def _guarded(self, operation: Coroutine[Any, Any, None]) -> None:
        """Run one operation under the overall deadline, dropping a failed connection."""
        self._expired = False
        loop = asyncio.get_running_loop()
        self._watchdog_handle = loop.call_later(self._timeout, self._watchdog)
        try:
            await _within(self._timeout, operation)
        except DeliveryError as exc:
            stuck_at = self._step
            await self._drop()
            if self._expired:  # the watchdog cut the connection under this step
                raise self._deadline_error(stuck_at) from exc
            raise
        except TimeoutError as exc:  # only the overall deadline gets here
            stuck_at = self._step
            await self._drop()
            raise self._deadline_error(stuck_at) from exc
        except BaseException:
            self._discard()
            raise
        finally:
            self._watchdog_handle.cancel()
            self._watchdog_handle = None

    async def aclose(self) -> None:
        """Say QUIT (briefly) and close the connection; the transport stays usable."""
        if self._smtp is None:
            return
        async with self._bound_lock():
            await self._quit()

    # -- the deadline --------------------------------------------------------

    def _watchdog(self) -> None:
        """At the deadline, and every few milliseconds after it until the send ends."""
        # aiosmtplib awaits each reply with asyncio.wait_for, which before Python
        # 3.12 can swallow a cancellation that lands just as the reply arrives:
        # the deadline's cancel is lost and the send would go on unbounded.
        # Cutting the connection stops it at its next step whatever happened.
        self._expired = True
        if self._smtp is not None:
            _abort(self._smtp.transport)
        loop = asyncio.get_running_loop()
        self._watchdog_handle = loop.call_later(_WATCHDOG_INTERVAL, self._watchdog)

    def _deadline_error(self, stuck_at: str) -> DeliveryTimeoutError:
        return DeliveryTimeoutError(
            f"no delivery within the {self._timeout:g}s deadline "
            f"(still waiting at {stuck_at or 'start'})",
            channel=self.name,
            step="deadline",
        )

    # -- the conversation ----------------------------------------------------

    async def _quit(self) -> None:
        smtp = self._smtp
        if smtp is None:  # a send that failed meanwhile has dropped it
            return
        transport = smtp.transport  # quit() forgets it; we still need to abort it
        try:
            if smtp.is_connected:
                await smtp.quit(timeout=min(self._step_timeout, QUIT_TIMEOUT))
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            _log.debug("%s: QUIT failed (%s); closing anyway", self.name, type(exc).__name__)
        finally:
            _abort(transport)
            await self._drop()

    async def _send(self, message: OutgoingMessage) -> None:
        self._step = ""
        smtp = await self._connection()
        await self._transact(smtp, message)

    async def _connection(self) -> aiosmtplib.SMTP:
        smtp = self._smtp
        if smtp is not None and self._retire_at is not None and self._clock() >= self._retire_at:
            # Its token is about to expire: Gmail would end the session mid-send.
            _log.debug("%s: OAuth token about to expire; new connection", self.name)
            await self._quit()
            smtp = None
        if smtp is not None and smtp.is_connected:
            self._step = "noop"
            try:
                await smtp.noop(timeout=self._step_timeout)
            except (aiosmtplib.SMTPException, OSError) as exc:
                _log.debug("%s: open connection is stale (%s)", self.name, type(exc).__name__)
            else:
                _log.debug("%s: reusing the open connection", self.name)
                return smtp
        self._discard()
        return await self._connect()

    async def _connect(self) -> aiosmtplib.SMTP:
        credentials = await self._credentials()
        smtp = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            local_hostname=self._local_hostname,
            timeout=self._step_timeout,
            use_tls=self._security == "tls",
            start_tls=False,  # we do it ourselves, to refuse a server without it
            tls_context=self._tls_context,
            validate_certs=True,
        )
        self._smtp = smtp  # so that a deadline mid-connect still closes it

        _log.debug("%s: connecting (%s)", self.name, self._security)
        await self._run("connect", smtp.connect())
        await self._run("ehlo", smtp.ehlo())

        if self._security == "starttls":
            if not smtp.supports_extension("starttls"):
                raise StartTLSNotOfferedError(
                    f"{self._host} did not offer STARTTLS, so nothing was sent: "
                    "neither the credentials nor the message",
                    channel=self.name,
                    step="starttls",
                )
            _log.debug("%s: STARTTLS", self.name)
            await self._run("starttls", smtp.starttls())
            await self._run("ehlo", smtp.ehlo())

        if credentials is not None:
            await self._authenticate(smtp, *credentials)
        return smtp

    async def _credentials(self) -> tuple[str, str] | None:
        """Read the secret for a new connection: ``(mechanism, secret)`` or None."""
        self._step = "auth"
        if self._tokens is not None:
            return "XOAUTH2", await self._access_token()
        password = self._password
        if callable(password):
            try:
                password = password()
            except Exception as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else ""
                raise AuthenticationError(
                    f"could not read the password ({type(exc).__name__}"
                    f"{': ' + reason if reason else ''})",
                    channel=self.name,
                    step="auth",
                ) from exc
        if password is None:
            return None
        return "PASSWORD", password

    async def _access_token(self) -> str:
        """The token for a new connection, cached or fresh; sets when it must retire."""
        assert self._tokens is not None  # noqa: S101 - only called with a token provider
        try:
            token = await self._tokens.get()
        except InvalidTokenError as exc:  # its message never holds a token
            raise xoauth2_error(str(exc), channel=self.name) from exc
        except Exception as exc:
            # Only the type: a provider's own message may quote a token or a secret.
            raise xoauth2_error(
                f"the OAuth token provider failed ({type(exc).__name__})", channel=self.name
            ) from exc
        self._retire_at = self._tokens.usable_until(token)
        return token.access_token

    async def _authenticate(self, smtp: aiosmtplib.SMTP, kind: str, secret: str) -> None:
        # Exactly one AUTH command: SMTP.login() would retry with a second
        # mechanism after a refusal, and Gmail counts both against the account.
        assert self._username is not None  # noqa: S101 - checked in __init__
        username = self._username
        refusal = clear_text_refusal(
            encrypted=smtp.get_transport_info("sslcontext") is not None,
            peer=smtp.get_transport_info("peername"),
            host=self._host,
        )
        if refusal is not None:
            raise TLSError(refusal, channel=self.name, step="auth")
        offered = smtp.server_auth_methods
        self._errors.secrets = secret_forms(username, secret)
        attempt: Coroutine[Any, Any, aiosmtplib.SMTPResponse]
        if kind == "XOAUTH2":
            if "xoauth2" not in offered:
                raise xoauth2_error(f"{self._host} does not offer AUTH XOAUTH2", channel=self.name)
            attempt, mechanism = smtp.auth_xoauth2(username, secret), "XOAUTH2"
        elif "plain" in offered:
            attempt, mechanism = smtp.auth_plain(username, secret), "PLAIN"
        elif "login" in offered:
            attempt, mechanism = smtp.auth_login(username, secret), "LOGIN"
        else:
            raise AuthenticationError(
                f"{self._host} offers no AUTH PLAIN or LOGIN "
                f"(offered: {' '.join(offered).upper() or 'none'})",
                channel=self.name,
                step="auth",
            )
        _log.debug("%s: AUTH %s as %s", self.name, mechanism, username)
        try:
            await self._run("auth", attempt, xoauth2=mechanism == "XOAUTH2")
        except AuthenticationError:
            if self._tokens is not None:  # expired or revoked: ask for a new one next time
                self._tokens.invalidate()
            raise

    async def _transact(self, smtp: aiosmtplib.SMTP, message: OutgoingMessage) -> None:
        recipients = list(dict.fromkeys(message.recipients))
        if not recipients:
            raise RecipientsRefusedError(
                "the message has no recipients", channel=self.name, step="rcpt"
            )
        sender = message.sender
        data, options, encoding = self._prepare(smtp, message, [sender, *recipients])
        accepted = 0
        refusals: list[aiosmtplib.SMTPRecipientRefused] = []
        for batch in _batches(recipients, MAX_RECIPIENTS):
            _log.debug("%s: MAIL FROM %s, %d recipient(s)", self.name, sender, len(batch))
            await self._run("mail", smtp.mail(sender, options=options, encoding=encoding))
            refused = await self._recipients(smtp, batch, encoding)
            refusals += refused
            if len(refused) == len(batch):
                await self._run("rcpt", smtp.rset())
                continue
            await self._run("data", smtp.data(data))
            accepted += len(batch) - len(refused)

        if refusals and not accepted:
            first = refusals[0]
            error = RecipientsRefusedError(
                f"every recipient was refused ({first.code} {first.recipient}: "
                f"{one_line(first.message)})",
                channel=self.name,
                step="rcpt",
                code=first.code,
                reply=first.message,
            )
            # All refused "for now" (4xx): a later attempt may succeed.
            error.transient = all(400 <= refusal.code < 500 for refusal in refusals)
            raise error
        if refusals:
            _log.warning(
                "%s refused %d of %d recipients: %s",
                self.name,
                len(refusals),
                len(recipients),
                ", ".join(f"{refusal.recipient} ({refusal.code})" for refusal in refusals),
            )

    def _prepare(
        self, smtp: aiosmtplib.SMTP, message: OutgoingMessage, addresses: list[str]
    ) -> tuple[bytes, list[str], str]:
        """The message bytes, the MAIL FROM parameters and the address encoding."""
        utf8 = not "".join(addresses).isascii()
        if utf8 and not smtp.supports_extension("smtputf8"):
            raise PermanentReplyError(
                f"{self._host} does not support SMTPUTF8, needed for non-ASCII addresses",
                channel=self.name,
                step="mail",
            )
        eight_bit = smtp.supports_extension("8bitmime")
        data = _flatten(message.email, utf8=utf8, cte_type="8bit" if eight_bit else "7bit")
        options = [f"SIZE={len(data)}"] if smtp.supports_extension("size") else []
        options += ["BODY=8BITMIME"] if eight_bit else []
        options += ["SMTPUTF8"] if utf8 else []
        return data, options, "utf-8" if utf8 else "ascii"

    async def _recipients(
        self, smtp: aiosmtplib.SMTP, batch: Sequence[str], encoding: str
    ) -> list[aiosmtplib.SMTPRecipientRefused]:
        """Send RCPT for each address of one transaction; return the refusals."""
        self._step = "rcpt"
        refusals = [await self._rcpt(smtp, address, encoding) for address in batch]
        return [refusal for refusal in refusals if refusal is not None]

    async def _rcpt(
        self, smtp: aiosmtplib.SMTP, address: str, encoding: str
    ) -> aiosmtplib.SMTPRecipientRefused | None:
        with self._errors.map_exceptions("rcpt"):
            try:
                await smtp.rcpt(address, encoding=encoding)
            except aiosmtplib.SMTPRecipientRefused as exc:
                if exc.code == 421:  # the server is closing the connection
                    raise
                return exc
        return None

    # -- helpers -------------------------------------------------------------

    async def _run(self, step: str, operation: Awaitable[_T], *, xoauth2: bool = False) -> _T:
        """Await one protocol step, translating its failure into a DeliveryError."""
        self._step = step
        with self._errors.map_exceptions(step, xoauth2=xoauth2):
            result = await operation
        if isinstance(result, aiosmtplib.SMTPResponse):  # replies never hold the secret
            _log.debug("%s: %s -> %s", self.name, step, one_line(str(result)))
        return result

    def _discard(self) -> None:
        """Forget the connection and cut it at once (no TLS goodbye: it failed or is done)."""
        smtp, self._smtp = self._smtp, None
        self._errors.secrets = ()
        self._retire_at = None
        if smtp is None:
            return
        with contextlib.suppress(RuntimeError):  # its event loop is already closed
            _abort(smtp.transport)
            smtp.close()

    async def _drop(self) -> None:
        """:meth:`_discard`, then one loop turn, in which the socket is actually closed.

        Without that turn a program (or a test) that stops its loop right after
        would leave the socket to the garbage collector, with a ResourceWarning.
        """
        self._discard()
        await asyncio.sleep(0)

    def _bound_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or loop is not self._loop:
            # A connection belongs to the loop that opened it.
            self._discard()
            self._loop, self._lock = loop, asyncio.Lock()
        return self._lock


def clear_text_refusal(*, encrypted: bool, peer: Any, host: str) -> str | None:
    """Why no credential may be sent on this connection, or None when it may.

    The last guard, whatever the settings said: no credential of any kind
    (password or OAuth token) crosses an unencrypted connection to another
    machine. Both the name the connection was made to and the address it
    reached must be this machine's.

    Args:
        encrypted: whether the connection is under TLS.
        peer: the socket's peer address (``(host, port, ...)``), or None.
        host: the host name the transport connected to.

    Returns:
        The reason, or None.
    """
    address = peer[0] if isinstance(peer, tuple) and peer else ""
    if encrypted or (is_loopback(host) and is_loopback(str(address))):
        return None
    return (
        f"the connection to {host} is not encrypted, so no credential was sent; "
        "use starttls (port 587) or tls (port 465)"
    )


def _credential(username: str | None, host: str, port: int) -> str:
    """The login a transport depends on, as the auth watcher keys it: ``user@host:port``."""
    return f"{username or 'anonymous'}@{host}:{port}"


def _abort(transport: asyncio.BaseTransport | None) -> None:
    """Close at once: no waiting for the peer's TLS close_notify."""
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
    elif transport is not None:
        transport.close()


def _batches(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


if sys.version_info >= (3, 11):

    async def _within(seconds: float, operation: Coroutine[Any, Any, _T]) -> _T:
        async with asyncio.timeout(seconds):
            return await operation

else:

    async def _within(seconds: float, operation: Coroutine[Any, Any, _T]) -> _T:
        try:
            return await asyncio.wait_for(operation, seconds)
        except asyncio.TimeoutError as exc:  # not the builtin TimeoutError before 3.11
            raise TimeoutError from exc


def _flatten(email_message: EmailMessage, *, utf8: bool, cte_type: str) -> bytes:
    """The message as wire bytes, under the message's own policy.

    aiosmtplib's ``flatten_message`` always uses ``policy.SMTP``, which folds
    headers at 78 columns (and folds a subject starting with "[" right after
    "Subject:"); the renderer's policy allows RFC 5322's 998.
    """
    policy = email_message.policy
    if not isinstance(policy, email.policy.EmailPolicy):
        policy = email.policy.SMTP
    policy = policy.clone(linesep="\r\n", utf8=utf8, cte_type=cte_type)
    with io.BytesIO() as buffer:
        email.generator.BytesGenerator(buffer, policy=policy).flatten(email_message)
        return buffer.getvalue()
