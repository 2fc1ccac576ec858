"""One connection to the Gmail-like server: aiosmtpd's SMTP session with Gmail's words and faults.

:class:`GmailSession` speaks like smtp.gmail.com: its EHLO keywords,
STARTTLS before anything else on the 587-style port, implicit TLS on the
465-style port, AUTH PLAIN, LOGIN and XOAUTH2 checked against the account,
and Gmail's replies (:mod:`._replies`) where aiosmtpd has its own. The
faults that act before the envelope (``greet``, ``greeting_delay``,
``greeting_reply``, ``reply_delay``, ``offer_starttls``, ``auth_reply``,
``disconnect_in_data``) act here; the envelope's act in :mod:`._handler`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import functools
import logging
from typing import TYPE_CHECKING, cast

from aiosmtpd.smtp import SMTP

from . import _replies as replies
from ._handler import Recorder
from ._state import HOST, AuthAttempt

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._state import ReceivedMessage, SharedState

__all__ = ["GmailSession"]

_log = logging.getLogger("smtp_alerts.testing.server")

_HANDSHAKE_TIMEOUT = 10.0
_IDLE_TIMEOUT = 300.0  # Gmail drops an idle session after about five minutes too
# Commands Gmail answers before STARTTLS on port 587; everything else gets 530.
_ALLOWED_BEFORE_STARTTLS = frozenset({"EHLO", "HELO", "STARTTLS", "NOOP", "QUIT", "RSET"})
_NEEDS_AUTH = frozenset({"MAIL", "RCPT", "DATA"})


class GmailSession(SMTP):
    """One connection: aiosmtpd's SMTP session with Gmail's words and the faults.

    Extension points for new faults: :meth:`_on_connect` runs before the
    greeting, :meth:`_on_command` before every command (return True when it
    has answered instead of the command), :meth:`push` before every reply,
    :meth:`smtp_DATA` when the message starts and :meth:`Recorder.handle_DATA
    <smtp_alerts.testing._handler.Recorder.handle_DATA>` once it has all arrived.

    Args:
        shared: the server's account, faults and records.
        loop: the server's event loop.
    """

    def __init__(self, shared: SharedState, *, loop: asyncio.AbstractEventLoop) -> None:
        self.gsmtp_id = replies.session_id()
        #: ``(mechanism, username)`` once AUTH succeeded on this connection.
        self.auth_identity: tuple[str, str | None] | None = None
        self._shared = shared
        self._accepted: ReceivedMessage | None = None  # recorded when its 250 goes out
        self._implicit_tls = shared.mode == "tls"
        self._raw_transport: asyncio.Transport | None = None
        self._tls_task: asyncio.Task[None] | None = None  # held so it is not collected
        super().__init__(
            Recorder(shared),
            data_size_limit=replies.SIZE_LIMIT,
            enable_SMTPUTF8=True,
            hostname=replies.HOSTNAME,  # also keeps aiosmtpd from calling socket.getfqdn()
            ident=self.say(replies.IDENT),
            tls_context=shared.tls_context if shared.mode == "starttls" else None,
            timeout=_IDLE_TIMEOUT,
            loop=loop,
        )
        # aiosmtpd keeps these limits in a class-level dict shared by every
        # session in the process; give each session its own.
        self.command_size_limits = collections.defaultdict(lambda: self.command_size_limit)
        # An XOAUTH2 initial response carries a whole OAuth token.
        self.command_size_limits["AUTH"] = self.line_length_limit - 1
        self._smtp_methods = {
            name: self._guarded(name, method) for name, method in self._smtp_methods.items()
        }

    def say(self, template: str, **fields: object) -> str:
        """A reply of :mod:`._replies`, ending with this session's id as Gmail's do."""
        return template.format(id=self.gsmtp_id, **fields)

    @property
    def _secure(self) -> bool:
        return self._implicit_tls or self._tls_protocol is not None

    # -- connection plumbing -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._raw_transport is None:
            self._raw_transport = raw = cast("asyncio.Transport", transport)
            if self._implicit_tls:
                # No pause_reading() here: on Python 3.10 the transport starts
                # reading after connection_made() even when it was paused, and
                # start_tls()'s own pause_reading() is then a no-op, so the
                # ClientHello reached the TLS protocol before its
                # connection_made() and was dropped: the handshake hung. The
                # task's first step runs before the loop next polls the socket,
                # and start_tls() pauses reading there, before its first await.
                self._tls_task = self.loop.create_task(self._accept_tls(raw))
                return
        super().connection_made(transport)

    async def _accept_tls(self, transport: asyncio.Transport) -> None:
        try:
            tls_transport = await self.loop.start_tls(
                transport,
                self,
                self._shared.tls_context,
                server_side=True,
                ssl_handshake_timeout=_HANDSHAKE_TIMEOUT,
            )
        except (OSError, asyncio.TimeoutError) as exc:  # the client refused our certificate
            _log.debug("TLS handshake failed: %r", exc)
            transport.abort()
            self._shared.live.discard(self)
            return
        if tls_transport is None:  # the connection went away during the handshake
            self._shared.live.discard(self)
            return
        super().connection_made(tls_transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._shared.live.discard(self)
        if self.session is None:  # lost before the session began (TLS handshake)
            return
        transport = self.transport
        super().connection_lost(error)
        # aiosmtpd closes its transport only when its command loop sees the
        # loss, which a client gone before the greeting (greet=False, a greeting
        # or reply delay) never reaches. Python 3.10's TLS transport is still
        # "open" after the connection is lost (3.11 marks it closed) and warns
        # "unclosed transport" when collected. Closing twice is harmless.
        if transport is not None:
            transport.close()

    def abort(self) -> None:
        """Cut the connection at once, without a TLS goodbye."""
        if self._raw_transport is not None:
            self._raw_transport.abort()

    # -- hooks where faults plug in ------------------------------------------

    async def _handle_client(self) -> None:
        if await self._on_connect():
            await super()._handle_client()

    async def _on_connect(self) -> bool:
        """Before the greeting; return False (having closed the connection) to skip it."""
        shared = self._shared
        delay = shared.faults.greeting_delay
        if delay > 0 and shared.fire("greeting_delay"):
            await asyncio.sleep(delay)
        if not shared.faults.greet and shared.fire("greet"):
            # Stay connected and silent; connection_lost() cancels this wait.
            await self.loop.create_future()
        refusal = shared.faults.greeting_reply
        if refusal is not None and shared.fire("greeting_reply"):
            await self.push(self.say(replies.GREETING_REPLIES[refusal]))
            if self.transport is not None:
                self.transport.close()
            return False
        return True

    def _guarded(
        self, command: str, method: Callable[[str | None], Awaitable[None]]
    ) -> Callable[[str | None], Awaitable[None]]:
        @functools.wraps(method)
        async def run(arg: str | None) -> None:
            if not await self._on_command(command, arg):
                await method(arg)

        return run

    async def _on_command(self, command: str, arg: str | None) -> bool:
        """Before each command; True when it has answered in the command's place."""
        shared = self._shared
        needs_starttls = shared.mode == "starttls" and shared.faults.offer_starttls
        if needs_starttls and not self._secure and command not in _ALLOWED_BEFORE_STARTTLS:
            if command == "AUTH":  # the client just sent its credentials in clear text
                shared.record_auth(AuthAttempt(_mechanism_of(arg), None, success=False))
            await self.push(self.say(replies.MUST_STARTTLS))
            return True
        assert self.session is not None  # noqa: S101 - set by connection_made
        if shared.auth_required and command in _NEEDS_AUTH and not self.session.authenticated:
            await self.push(self.say(replies.AUTH_REQUIRED))
            return True
        return False

    def accept_on_reply(self, message: ReceivedMessage) -> None:
        """Record ``message`` as the next reply (the 250 after DATA) goes out."""
        self._accepted = message

    async def push(self, status: str | bytes) -> None:
        delay = self._shared.faults.reply_delay
        if delay > 0:
            await asyncio.sleep(delay)
        accepted, self._accepted = self._accepted, None
        if accepted is not None and self.transport is not None and not self.transport.is_closing():
            # Only a message whose 250 is sent counts as accepted (a client that
            # gave up during reply_delay never learns it was), and it is
            # recorded before the 250 leaves: a client that has read the 250
            # must find it in server.messages.
            self._shared.record_message(accepted)
        if isinstance(status, str):
            template = replies.GMAIL_WORDING.get(status)
            await super().push(self.say(template) if template else status)
        else:
            await super().push(status)

    # -- commands ------------------------------------------------------------

    async def smtp_EHLO(self, hostname: str | None) -> None:  # noqa: N802 - aiosmtpd's name
        if not hostname:
            await self.push(self.say(replies.EHLO_EMPTY))
            return
        assert self.session is not None  # noqa: S101 - set by connection_made
        self.envelope = self._create_envelope()  # EHLO resets the transaction
        self.session.extended_smtp = True
        self.session.host_name = hostname
        # MAIL FROM may carry SIZE=, BODY= and SMTPUTF8 parameters.
        self.command_size_limits["MAIL"] = self.command_size_limit + 26 + 10
        peer = self.session.peer[0] if self.session.peer else HOST
        faults = self._shared.faults
        lines = [
            f"{replies.HOSTNAME} at your service, [{peer}]",
            f"SIZE {replies.SIZE_LIMIT}",
            "8BITMIME",
        ]
        tls_possible = self._shared.mode == "starttls" and faults.offer_starttls
        if tls_possible and not self._secure:
            lines.append("STARTTLS")
        if self._secure or not tls_possible:
            lines.append(f"AUTH {replies.AUTH_MECHANISMS}")
        lines += ["ENHANCEDSTATUSCODES", "PIPELINING", "CHUNKING", "SMTPUTF8"]
        reply = "\r\n".join(f"250-{line}" for line in lines[:-1]) + f"\r\n250 {lines[-1]}"
        await self.push(reply)

    async def smtp_STARTTLS(self, arg: str | None) -> None:  # noqa: N802 - aiosmtpd's name
        offered = self._shared.mode == "starttls" and self._shared.faults.offer_starttls
        if not offered or self._secure:
            await self.push(self.say(replies.UNRECOGNIZED_COMMAND))
            return
        await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg: str | None) -> None:  # noqa: N802 - aiosmtpd's name
        assert self.session is not None  # noqa: S101 - set by connection_made
        if not self.session.extended_smtp:
            await self.push(self.say(replies.EHLO_FIRST))
            return
        if self.session.authenticated:
            await self.push(self.say(replies.ALREADY_AUTHENTICATED))
            return
        mechanism = _mechanism_of(arg)
        initial = (arg or "").strip().partition(" ")[2].strip() or None
        if mechanism == "PLAIN":
            username, reply = await self._auth_plain(initial)
        elif mechanism == "LOGIN":
            username, reply = await self._auth_login(initial)
        elif mechanism == "XOAUTH2":
            username, reply = await self._auth_xoauth2(initial)
        else:
            username = None
            reply = self.say(replies.UNRECOGNIZED_AUTH)
        refusal = self._shared.faults.auth_reply
        if refusal is not None and self._shared.fire("auth_reply"):
            reply = self.say(replies.AUTH_REPLIES[refusal])
        success = reply == replies.ACCEPTED
        # Recorded before the reply goes out: a client that has read the reply
        # must find its attempt in server.auth_attempts.
        self._shared.record_auth(AuthAttempt(mechanism, username, success))
        if success:
            self.session.authenticated = True
            self.auth_identity = (mechanism, username)
        await self.push(reply)

    async def _auth_plain(self, initial: str | None) -> tuple[str | None, str]:
        blob = _b64decode(initial) if initial is not None else await self._challenge("")
        parts = blob.split(b"\x00") if blob is not None else []
        if len(parts) != 3:
            return None, self._malformed
        username, password = parts[1].decode(errors="replace"), parts[2].decode(errors="replace")
        return username, self._verdict(accepted=self._shared.check_password(username, password))

    async def _auth_login(self, initial: str | None) -> tuple[str | None, str]:
        user_blob = (
            _b64decode(initial) if initial is not None else await self._challenge("Username:")
        )
        if user_blob is None:
            return None, self._malformed
        username = user_blob.decode(errors="replace")
        password_blob = await self._challenge("Password:")
        if password_blob is None:
            return username, self._malformed
        password = password_blob.decode(errors="replace")
        return username, self._verdict(accepted=self._shared.check_password(username, password))

    async def _auth_xoauth2(self, initial: str | None) -> tuple[str | None, str]:
        blob = _b64decode(initial) if initial is not None else await self._challenge("")
        if blob is None:
            return None, self._malformed
        fields = dict(part.partition(b"=")[::2] for part in blob.split(b"\x01") if b"=" in part)
        username = fields.get(b"user", b"").decode(errors="replace") or None
        bearer = fields.get(b"auth", b"").decode(errors="replace")
        token = bearer[len("Bearer ") :] if bearer.startswith("Bearer ") else ""
        if username is not None and self._shared.check_token(username, token):
            return username, replies.ACCEPTED
        # Gmail answers a bad token with a JSON challenge, then the usual 535
        # once the client has replied to it (with an empty line).
        await self.push(f"334 {replies.XOAUTH2_CHALLENGE}")
        with contextlib.suppress(ValueError):  # a line longer than the limit
            await self._reader.readline()
        return username, self._verdict(accepted=False)

    async def _challenge(self, prompt: str) -> bytes | None:
        """Send a 334 challenge and decode the reply; None when it is not base64."""
        await self.push(f"334 {base64.b64encode(prompt.encode()).decode()}")
        try:
            line = await self._reader.readline()
        except ValueError:  # longer than the line limit
            return None
        # Never logged: this line is the secret.
        return _b64decode(line.strip().decode("ascii", errors="replace"))

    @property
    def _malformed(self) -> str:
        return self.say(replies.CANNOT_DECODE)

    def _verdict(self, *, accepted: bool) -> str:
        return replies.ACCEPTED if accepted else self.say(replies.BAD_CREDENTIALS)

    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's name
        assert self.envelope is not None  # noqa: S101 - set by connection_made
        # Only where aiosmtpd would answer 354: its own checks answer the rest.
        about_to_read = bool(self.envelope.rcpt_tos) and not arg
        faults = self._shared.faults
        if about_to_read and faults.disconnect_in_data and self._shared.fire("disconnect_in_data"):
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await self._reader.readuntil(b"\r\n")  # some of the message has arrived
            self.abort()
            return
        await super().smtp_DATA(arg)


def _mechanism_of(arg: str | None) -> str:
    return (arg or "").strip().partition(" ")[0].upper()


def _b64decode(text: str) -> bytes | None:
    if text == "*":  # RFC 4954: the client cancels the exchange
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
