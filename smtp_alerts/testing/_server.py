"""A local SMTP server that behaves like Gmail's submission service, for tests.

:class:`GmailServer` runs an `aiosmtpd <https://aiosmtpd.aio-libs.org>`_
server on ``127.0.0.1`` in a background thread with its own event loop. It
speaks like ``smtp.gmail.com``: the same greeting, EHLO keywords and reply
texts, STARTTLS before AUTH on the 587-style port, implicit TLS on the
465-style port, and Gmail's failure replies for a wrong app password or OAuth
token. Its certificate comes from a throwaway :mod:`trustme` CA, so clients
verify it for real.

Misbehaviour is described by :class:`Faults`, which can be changed while the
server runs (``server.faults.greet = False``), so a test can break the
server and then heal it. Every connection reads the faults in force when it
reaches each step. The scripted faults answer with Gmail's own words::

    server.faults.auth_reply = "454"    # the next AUTH gets "454 4.7.0 Too many login..."
    server.faults.fail_times = 1        # ... only once, then the server heals itself
    assert server.fired["auth_reply"] == 1
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import email
import email.policy
import functools
import hmac
import json
import logging
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

import trustme
from aiosmtpd.smtp import SMTP, Envelope, Session, TLSSetupException

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine
    from email.message import EmailMessage

    from ..settings import Settings

__all__ = ["AuthAttempt", "Faults", "GmailServer", "ReceivedMessage"]

_log = logging.getLogger("smtp_alerts.testing.server")

Mode = Literal["starttls", "tls", "plain"]
GreetingReply = Literal["421"]
AuthReply = Literal["454", "530", "534-5.7.9", "534-5.7.14", "535"]
MailReply = Literal["550-5.4.5"]
DataReply = Literal["552"]

_HOST = "127.0.0.1"
_HOSTNAME = "smtp.gmail.com"
_SIZE_LIMIT = 35_882_577  # what smtp.gmail.com advertises in EHLO
_AUTH_MECHANISMS = "LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH"
_THREAD_TIMEOUT = 10.0  # starting or stopping the loop thread never takes this long
# Lets a never-listening socket hold the port while refuse_connections is on.
_REUSE_PORT = hasattr(socket, "SO_REUSEPORT")
_HANDSHAKE_TIMEOUT = 10.0
_ABORT_ROUNDS = 200  # loop iterations stop() waits for aborted connections to go
_IDLE_TIMEOUT = 300.0  # Gmail drops an idle session after about five minutes too
# Commands Gmail answers before STARTTLS on port 587; everything else gets 530.
_ALLOWED_BEFORE_STARTTLS = frozenset({"EHLO", "HELO", "STARTTLS", "NOOP", "QUIT", "RSET"})
_ACCEPTED = "235 2.7.0 Accepted"
_NEEDS_AUTH = frozenset({"MAIL", "RCPT", "DATA"})
_XOAUTH2_ERROR = base64.b64encode(
    json.dumps(
        {"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"},
        separators=(",", ":"),
    ).encode()
).decode()
# Gmail's failure replies, word for word; {id} is the session id Gmail ends replies with.
_AUTH_REQUIRED = (
    "530-5.7.0 Authentication Required. For more information, go to\r\n"
    "530 5.7.0  https://support.google.com/mail/?p=WantAuthError {id} - gsmtp"
)
_BAD_CREDENTIALS = (
    "535-5.7.8 Username and Password not accepted. For more information, go to\r\n"
    "535 5.7.8  https://support.google.com/mail/?p=BadCredentials {id} - gsmtp"
)
_GREETING_REPLIES: dict[str, str] = {
    "421": "421 4.7.0 Try again later, closing connection. {id} - gsmtp",
}
_AUTH_REPLIES: dict[str, str] = {
    "454": "454 4.7.0 Too many login attempts, please try again later. {id} - gsmtp",
    "530": _AUTH_REQUIRED,
    "534-5.7.9": (
        "534-5.7.9 Application-specific password required. Learn more at\r\n"
        "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor {id} - gsmtp"
    ),
    "534-5.7.14": (
        "534-5.7.14 <https://accounts.google.com/signin/continue?sarp=1&scc=1&plt=AKgnsbt"
        "NotARealContinuationToken> Please log in via your web browser and\r\n"
        "534-5.7.14 then try again.\r\n"
        "534 5.7.14  Learn more at https://support.google.com/mail/answer/78754 {id} - gsmtp"
    ),
    "535": _BAD_CREDENTIALS,
}
_MAIL_REPLIES: dict[str, str] = {
    "550-5.4.5": (
        "550-5.4.5 Daily user sending limit exceeded. For more information on Gmail\r\n"
        "550-5.4.5 sending limits go to\r\n"
        "550 5.4.5  https://support.google.com/a/answer/166852 {id} - gsmtp"
    ),
}
_DATA_REPLIES: dict[str, str] = {
    "552": (
        "552-5.3.4 Your message exceeded Google's message size limits. Please visit\r\n"
        "552-5.3.4  https://support.google.com/mail/?p=MaxSizeError to view our size\r\n"
        "552 5.3.4 guidelines. {id} - gsmtp"
    ),
}
# What Faults accepts for each reply fault; checked on assignment, in the test's thread.
_REPLY_CHOICES: dict[str, dict[str, str]] = {
    "greeting_reply": _GREETING_REPLIES,
    "auth_reply": _AUTH_REPLIES,
    "mail_reply": _MAIL_REPLIES,
    "data_reply": _DATA_REPLIES,
}
# aiosmtpd hard-codes a few reply texts; these are Gmail's words for the same replies.
_GMAIL_WORDING = {
    "220 Ready to start TLS": "220 2.0.0 Ready to start TLS",
    "354 End data with <CR><LF>.<CR><LF>": "354  Go ahead {id} - gsmtp",
    "503 Error: need MAIL command": "503 5.5.1 RCPT first. {id} - gsmtp",
    "503 Error: need RCPT command": "503 5.5.1 RCPT first. {id} - gsmtp",
    "503 Error: nested MAIL command": "503 5.5.1 Nested MAIL command. {id} - gsmtp",
}


def _session_id() -> str:
    """An id shaped like the one Gmail puts at the end of each reply."""
    return f"{secrets.token_hex(6)}-{secrets.token_hex(5)}sm{secrets.randbelow(10**7):07d}"


@dataclass
class Faults:
    """How the server misbehaves; change the attributes at any time, even mid-test.

    Each connection reads the current values when it reaches the step they
    affect, so a test can break a running server and heal it again. Each time
    a fault changes what the server does, it *fires*: :attr:`GmailServer.fired`
    counts the firings by attribute name.

    Attributes:
        offer_starttls: whether STARTTLS is advertised and accepted. ``False``
            models a server (or an attacker stripping STARTTLS) that offers AUTH
            in clear text: a correct client must refuse to send its credentials.
        refuse_connections: nothing accepts on the port, so clients get
            ECONNREFUSED; ``False`` again makes the same port accept. The port
            stays reserved meanwhile (see :meth:`GmailServer.start`). Takes
            effect before the assignment returns; the kernel does the refusing,
            so it is neither counted in :attr:`GmailServer.fired` nor limited by
            :attr:`fail_times`.
        greet: whether the server sends its 220 greeting. ``False`` accepts the
            TCP connection (and the TLS handshake in ``tls`` mode) and then says
            nothing: a "silent" server.
        greeting_delay: seconds to wait before the greeting (on top of
            :attr:`reply_delay`): a slow server.
        greeting_reply: ``"421"`` greets with Gmail's ``421 4.7.0 Try again
            later, closing connection.`` and hangs up.
        reply_delay: seconds to wait before every reply, the greeting included.
            Not counted in :attr:`GmailServer.fired` nor limited by
            :attr:`fail_times`.
        auth_reply: Gmail's refusal to answer every AUTH with, whatever the
            credentials: ``"454"`` (4.7.0, too many login attempts), ``"530"``
            (5.7.0, authentication required), ``"534-5.7.9"`` (an app password is
            required), ``"534-5.7.14"`` (sign in with a browser first) or
            ``"535"`` (5.7.8, bad credentials).
        mail_reply: ``"550-5.4.5"`` answers MAIL FROM with Gmail's "Daily user
            sending limit exceeded".
        data_reply: ``"552"`` answers the end of every message with Gmail's
            552 5.3.4 "message exceeded Google's message size limits".
        max_message_size: when set, only messages of more than this many bytes
            (as received, after dot-unstuffing) get that 552; smaller ones pass.
        disconnect_in_data: after DATA, read the first line of the message and
            cut the connection without a reply.
        hang_after_data: read the whole message and never answer the final dot.
        fail_times: ``None``: the faults fire until changed. A number: they fire
            that many more times in all (each firing spends one), then the
            server heals itself: at ``0`` no fault fires, though the attributes
            keep their values. Set it again to re-arm.
    """

    offer_starttls: bool = True
    refuse_connections: bool = False
    greet: bool = True
    greeting_delay: float = 0.0
    greeting_reply: GreetingReply | None = None
    reply_delay: float = 0.0
    auth_reply: AuthReply | None = None
    mail_reply: MailReply | None = None
    data_reply: DataReply | None = None
    max_message_size: int | None = None
    disconnect_in_data: bool = False
    hang_after_data: bool = False
    fail_times: int | None = None

    def __setattr__(self, name: str, value: object) -> None:
        choices = _REPLY_CHOICES.get(name)
        if choices is not None and value is not None and value not in choices:
            raise ValueError(f"{name} must be one of {sorted(choices)} or None, not {value!r}")
        super().__setattr__(name, value)
        if name == "refuse_connections":
            # The server opens or closes its listening socket right now, so a
            # connection the test makes next already sees the change.
            watcher: Callable[[], None] | None = self.__dict__.get("_watcher")
            if watcher is not None:
                watcher()


def _watch_refusals(faults: Faults, watcher: Callable[[], None] | None) -> None:
    """Have ``watcher`` called whenever ``faults.refuse_connections`` is assigned."""
    # Not a field: it stays out of repr, ==, asdict() and replace().
    faults.__dict__["_watcher"] = watcher


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


class _Shared:
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
        self.live: set[_GmailSMTP] = set()  # touched only on the loop thread

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


class GmailServer:
    """An SMTP server on 127.0.0.1 that answers like smtp.gmail.com.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with GmailServer() as server:
            settings = server.settings()
            ...  # send through settings.host / settings.port
            (message,) = server.wait_for_messages(1)

    Args:
        mode: ``starttls`` (like port 587: STARTTLS required before AUTH),
            ``tls`` (like port 465: TLS from the first byte) or ``plain`` (no
            TLS at all; AUTH offered in clear).
        username: the account's address.
        password: the account's app password.
        auth_required: whether MAIL needs a successful AUTH first.
        xoauth2_token: the bearer token AUTH XOAUTH2 accepts; ``None`` makes
            every XOAUTH2 attempt fail the way Gmail fails an expired token.
        offer_starttls: see :attr:`Faults.offer_starttls`.
        greet: see :attr:`Faults.greet`.
        reply_delay: see :attr:`Faults.reply_delay`.
        faults: the misbehaviour to start with, instead of the three above.

    Raises:
        ValueError: an unknown mode, or ``faults`` together with one of
            ``offer_starttls``, ``greet`` or ``reply_delay``.
    """

    host = _HOST

    def __init__(
        self,
        *,
        mode: Mode = "starttls",
        username: str = "alerts@example.com",
        password: str = "abcd efgh ijkl mnop",  # noqa: S107 - a made-up app password
        auth_required: bool = True,
        xoauth2_token: str | None = None,
        offer_starttls: bool = True,
        greet: bool = True,
        reply_delay: float = 0.0,
        faults: Faults | None = None,
    ) -> None:
        if mode not in ("starttls", "tls", "plain"):
            raise ValueError(f"mode must be 'starttls', 'tls' or 'plain', not {mode!r}")
        if faults is None:
            faults = Faults(offer_starttls=offer_starttls, greet=greet, reply_delay=reply_delay)
        elif not (offer_starttls and greet and reply_delay == 0):
            raise ValueError(
                "pass faults=Faults(...) or offer_starttls/greet/reply_delay, not both"
            )
        self._ca = trustme.CA()
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert(_HOST, "localhost").configure_cert(tls_context)
        self._shared = _Shared(
            mode=mode,
            username=username,
            password=password,
            xoauth2_token=xoauth2_token,
            auth_required=auth_required,
            faults=faults,
            tls_context=tls_context,
        )
        _watch_refusals(faults, self._sync_listening)

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._stop_accepting_now = False  # tells the accept loop to close its listener
        self._listening_lock = threading.Lock()  # one change of refuse_connections at a time
        self._reservation: socket.socket | None = None
        self._listening_port = 0
        self._closing = False
        self._port: int | None = None
        self._tmpdir: Path | None = None

    def __repr__(self) -> str:
        where = f"{_HOST}:{self._port}" if self._port is not None else "stopped"
        return f"<GmailServer {self.mode} {where}>"

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> GmailServer:
        """Bind a free port on 127.0.0.1 and start serving in a daemon thread.

        The port stays reserved until :meth:`stop`, even while
        :attr:`Faults.refuse_connections` has closed the listening socket: a
        second socket, bound to it with ``SO_REUSEPORT`` and never listening,
        keeps other programs off it. Where ``SO_REUSEPORT`` is missing, healing
        re-binds the port with ``SO_REUSEADDR`` and fails loudly if it was taken.

        Returns:
            The server itself, for chaining.

        Raises:
            RuntimeError: the server is already running.
        """
        if self._thread is not None:
            raise RuntimeError("the GmailServer is already running")
        self._tmpdir = Path(tempfile.mkdtemp(prefix="smtp-alerts-gmail-"))
        self._ca.cert_pem.write_to_path(str(self._tmpdir / "ca.pem"))
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(_quiet_exception_handler)
        thread = threading.Thread(
            target=_run_loop, args=(loop,), name=f"GmailServer-{id(self):x}", daemon=True
        )
        self._loop, self._thread = loop, thread
        self._closing = False
        thread.start()
        try:
            future = asyncio.run_coroutine_threadsafe(self._serve(), loop)
            self._port = future.result(timeout=_THREAD_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        _log.debug("Gmail-like server (%s) listening on %s:%s", self.mode, _HOST, self._port)
        return self

    def stop(self) -> None:
        """Close every connection, stop the thread and delete the CA file; idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with self._listening_lock:  # no refuse_connections change in between
            self._closing = True
        try:
            if not loop.is_closed():
                future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
                future.result(timeout=_THREAD_TIMEOUT)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop already closed itself
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=_THREAD_TIMEOUT)
            self._loop = self._thread = self._accepting = None
            self._port = None
            if self._reservation is not None:
                self._reservation.close()
                self._reservation = None
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None

    def __enter__(self) -> GmailServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def drop_connections(self) -> None:
        """Cut every open client connection at once, as Gmail does to idle sessions."""
        loop = self._require_loop()
        asyncio.run_coroutine_threadsafe(self._abort_all(), loop).result(_THREAD_TIMEOUT)

    # -- what tests look at --------------------------------------------------

    @property
    def mode(self) -> Mode:
        """``starttls``, ``tls`` or ``plain``."""
        return self._shared.mode

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        if self._port is None:
            raise RuntimeError("the GmailServer is not running: call start() first")
        return self._port

    @property
    def ca(self) -> trustme.CA:
        """The throwaway CA that issued the server's certificate."""
        return self._ca

    @property
    def ca_file(self) -> Path:
        """A PEM file holding :attr:`ca`'s certificate; deleted by :meth:`stop`."""
        if self._tmpdir is None:
            raise RuntimeError("the GmailServer is not running: call start() first")
        return self._tmpdir / "ca.pem"

    @property
    def faults(self) -> Faults:
        """The misbehaviour in force; change it while the server runs to break or heal it."""
        return self._shared.faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        _watch_refusals(self._shared.faults, None)
        _watch_refusals(value, self._sync_listening)
        self._shared.faults = value
        self._sync_listening()

    @property
    def fired(self) -> collections.Counter[str]:
        """How many times each fault fired, by :class:`Faults` attribute name (a copy).

        A fault fires when it changes what the server does: ``greet`` for each
        connection left without a greeting, ``auth_reply`` for each AUTH it
        answered, ``max_message_size`` for each message refused as too large...
        Faults that never fired read 0.
        """
        with self._shared.condition:
            return collections.Counter(self._shared.fired)

    @property
    def auth_required(self) -> bool:
        """Whether MAIL needs a successful AUTH first; assignable while the server runs."""
        return self._shared.auth_required

    @auth_required.setter
    def auth_required(self, value: bool) -> None:
        self._shared.auth_required = value

    @property
    def username(self) -> str:
        """The account's address."""
        return self._shared.username

    @property
    def password(self) -> str:
        """The app password AUTH accepts; assign to rotate it while the server runs."""
        return self._shared.password

    @password.setter
    def password(self, value: str) -> None:
        self._shared.password = value

    @property
    def xoauth2_token(self) -> str | None:
        """The bearer token AUTH XOAUTH2 accepts; assignable while the server runs."""
        return self._shared.xoauth2_token

    @xoauth2_token.setter
    def xoauth2_token(self, value: str | None) -> None:
        self._shared.xoauth2_token = value

    @property
    def messages(self) -> list[ReceivedMessage]:
        """The messages accepted so far, oldest first (a copy)."""
        with self._shared.condition:
            return list(self._shared.messages)

    @property
    def auth_attempts(self) -> list[AuthAttempt]:
        """One ``(mechanism, username, success)`` per AUTH command, in order (a copy)."""
        with self._shared.condition:
            return list(self._shared.auth_attempts)

    @property
    def connections(self) -> int:
        """How many TCP connections the server has accepted."""
        with self._shared.condition:
            return self._shared.connections

    def wait_for_messages(self, n: int = 1, *, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Block until at least ``n`` messages arrived.

        Args:
            n: how many messages to wait for, counting those already received.
            timeout: how long to wait, in seconds.

        Returns:
            All the messages received so far (at least ``n``).

        Raises:
            TimeoutError: fewer than ``n`` messages arrived within ``timeout``.
        """
        shared = self._shared
        with shared.condition:
            if not shared.condition.wait_for(lambda: len(shared.messages) >= n, timeout=timeout):
                raise TimeoutError(
                    f"{len(shared.messages)} of {n} messages arrived within {timeout:g}s"
                )
            return list(shared.messages)

    def settings(self, **overrides: Any) -> Settings:
        """Client settings that send to this server, with short windows for tests.

        The host, port, security, credentials, CA file and sender point at
        this server; alerts go to ``oncall@example.com``; ``group_wait`` and
        ``group_interval`` are zero and ``timeout`` is 5 seconds. Fallback URLs
        are cleared and the spool lives in the server's temporary directory,
        so a test never reaches a real channel or the user's own spool.

        Args:
            **overrides: any :class:`~smtp_alerts.Settings` field; these win.

        Returns:
            The settings.
        """
        from ..settings import Settings  # noqa: PLC0415 - pydantic is not needed to serve

        security = "none" if self.mode == "plain" else self.mode
        values: dict[str, Any] = {
            "host": _HOST,
            "port": self.port,
            "security": security,
            "username": self.username,
            "password": self.password,
            "password_file": None,
            "from_": self.username,
            "to": ["oncall@example.com"],
            "ca_file": self.ca_file,
            "timeout": "5s",
            "group_wait": "0s",
            "group_interval": "0s",
            "fallback_urls": [],
            "spool_dir": self.ca_file.parent / "spool",
        }
        if overrides.get("password_file") is not None and "password" not in overrides:
            values["password"] = None  # the two are mutually exclusive
        values.update(overrides)
        return Settings(**values)

    def environ(self, **overrides: str) -> dict[str, str]:
        """The ``SMTP_ALERTS_*`` variables that point a process at this server.

        For tests that run a program in a subprocess, as a user would configure it::

            env = {**os.environ, **server.environ(GROUP_WAIT="1h")}

        Args:
            **overrides: more variables, named without the prefix (``GROUP_WAIT="1h"``).

        Returns:
            Host, port, security, credentials, CA file and recipient, plus the overrides.
        """
        variables = {
            "HOST": _HOST,
            "PORT": str(self.port),
            "SECURITY": "none" if self.mode == "plain" else self.mode,
            "USERNAME": self.username,
            "PASSWORD": self.password,
            "TO": "oncall@example.com",
            "CA_FILE": str(self.ca_file),
            **overrides,
        }
        return {f"SMTP_ALERTS_{name}": value for name, value in variables.items()}

    # -- called from the loop thread -----------------------------------------

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the GmailServer is not running: call start() first")
        return self._loop

    def _sync_listening(self) -> None:
        """Open or close the listening socket to match :attr:`Faults.refuse_connections`.

        Returns once the change is in force. Called in the thread that assigned
        the fault; before :meth:`start` there is nothing to do, since
        :meth:`_serve` reads the fault itself.
        """
        with self._listening_lock:
            loop, port = self._loop, self._port
            if loop is None or port is None or self._closing:
                return
            if threading.current_thread() is self._thread:
                # Waiting for the loop from inside it would never end.
                raise RuntimeError("change refuse_connections from outside the server's thread")
            refuse = self._shared.faults.refuse_connections
            change: Coroutine[Any, Any, object]
            if refuse and self._accepting is not None:
                change = self._stop_accepting()
            elif not refuse and self._accepting is None:
                change = self._listen(port)
            else:
                return
            asyncio.run_coroutine_threadsafe(change, loop).result(timeout=_THREAD_TIMEOUT)

    async def _serve(self) -> int:
        port = 0
        if _REUSE_PORT:
            self._reservation = reservation = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            reservation.bind((_HOST, 0))
            port = cast("int", reservation.getsockname()[1])
            if self._shared.faults.refuse_connections:
                return port
        port = await self._listen(port)
        if self._shared.faults.refuse_connections:
            # Without SO_REUSEPORT nothing holds the port unless it listens:
            # bind it all the same, so that server.port is known, then close it.
            await self._stop_accepting()
        return port

    async def _listen(self, port: int) -> int:
        # Our own accept loop rather than loop.create_server(): with a Server,
        # a connection accepted just as it closes gets a half-made transport and
        # asyncio leaks its socket. TLS on the 465-style port is likewise set up
        # by each connection (see _GmailSMTP.connection_made), so that stop()
        # can reach and abort a connection stuck in its handshake.
        try:
            listener = socket.create_server((_HOST, port), reuse_port=_REUSE_PORT)
        except OSError as exc:
            raise RuntimeError(f"GmailServer could not listen on port {port} again: {exc}") from exc
        listener.setblocking(False)
        self._stop_accepting_now = False
        self._listening_port = port = cast("int", listener.getsockname()[1])
        self._accepting = asyncio.get_running_loop().create_task(self._accept(listener))
        return port

    async def _stop_accepting(self) -> None:
        """End the accept loop and close the listening socket: the port refuses connections."""
        accepting, self._accepting = self._accepting, None
        if accepting is None:
            return
        self._stop_accepting_now = True
        # Wake the accept loop with a last connection, so that it ends between
        # two accepts instead of being cancelled inside one (which would lose
        # a socket it had just accepted).
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as waker:
            waker.setblocking(False)
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                await asyncio.wait_for(
                    loop.sock_connect(waker, (_HOST, self._listening_port)), _THREAD_TIMEOUT / 4
                )
            _, pending = await asyncio.wait({accepting}, timeout=_THREAD_TIMEOUT / 4)
        if pending:  # the wake-up call never arrived
            accepting.cancel()
            await asyncio.wait({accepting})
        elif not accepting.cancelled() and accepting.exception() is not None:
            _log.error("GmailServer stopped accepting", exc_info=accepting.exception())

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        with listener:
            while True:
                connection, _ = await loop.sock_accept(listener)
                if self._stop_accepting_now:  # the wake-up call, or a client too late
                    connection.close()
                    return
                try:
                    await loop.connect_accepted_socket(self._new_connection, connection)
                except OSError as exc:  # the client left at once
                    _log.debug("connection lost on arrival: %r", exc)
                    connection.close()

    async def _abort_all(self) -> None:
        for _ in range(_ABORT_ROUNDS):
            for connection in list(self._shared.live):
                connection.abort()
            # connection_lost() runs on a later loop iteration.
            await asyncio.sleep(0)
            if not self._shared.live:
                return

    async def _shutdown(self) -> None:
        await self._stop_accepting()
        await self._abort_all()

    def _new_connection(self) -> _GmailSMTP:
        with self._shared.condition:
            self._shared.connections += 1
        connection = _GmailSMTP(self._shared, loop=self._require_loop())
        self._shared.live.add(connection)
        return connection


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


def _quiet_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # A client that distrusts the certificate or hangs up mid-command is part of
    # what this server is for; only unexpected errors deserve the loud default.
    exception = context.get("exception")
    if isinstance(exception, (OSError, TLSSetupException)):
        _log.debug("connection ended: %r", exception)
        return
    loop.default_exception_handler(context)


class _Recorder:
    """The aiosmtpd handler: Gmail's replies for the envelope steps, and the recording.

    aiosmtpd calls each ``handle_<COMMAND>`` hook with the session, the
    envelope and the command's arguments; the reply it returns is sent as is.
    """

    def __init__(self, shared: _Shared) -> None:
        self._shared = shared

    async def handle_HELO(  # noqa: N802 - aiosmtpd's hook name
        self, _smtp: _GmailSMTP, session: Session, _envelope: Envelope, hostname: str
    ) -> str:
        session.host_name = hostname
        return f"250 {_HOSTNAME} at your service"

    async def handle_NOOP(  # noqa: N802 - aiosmtpd's hook name
        self, smtp: _GmailSMTP, _session: Session, _envelope: Envelope, _arg: str | None
    ) -> str:
        return f"250 2.0.0 OK  {smtp.gsmtp_id} - gsmtp"

    async def handle_RSET(  # noqa: N802 - aiosmtpd's hook name
        self, smtp: _GmailSMTP, _session: Session, _envelope: Envelope
    ) -> str:
        return f"250 2.1.5 Flushed {smtp.gsmtp_id} - gsmtp"

    async def handle_QUIT(  # noqa: N802 - aiosmtpd's hook name
        self, smtp: _GmailSMTP, _session: Session, _envelope: Envelope
    ) -> str:
        return f"221 2.0.0 closing connection {smtp.gsmtp_id} - gsmtp"

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook name
        self,
        smtp: _GmailSMTP,
        _session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        refusal = self._shared.faults.mail_reply
        if refusal is not None and self._shared.fire("mail_reply"):
            return _MAIL_REPLIES[refusal].format(id=smtp.gsmtp_id)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return f"250 2.1.0 OK {smtp.gsmtp_id} - gsmtp"

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self,
        smtp: _GmailSMTP,
        _session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return f"250 2.1.5 OK {smtp.gsmtp_id} - gsmtp"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, smtp: _GmailSMTP, _session: Session, envelope: Envelope
    ) -> str:
        shared = self._shared
        faults = shared.faults
        raw = envelope.original_content or b""
        if faults.hang_after_data and shared.fire("hang_after_data"):
            # Never answer the final dot; connection_lost() cancels this wait.
            await smtp.loop.create_future()
        refusal = faults.data_reply
        if refusal is not None and shared.fire("data_reply"):
            return _DATA_REPLIES[refusal].format(id=smtp.gsmtp_id)
        limit = faults.max_message_size
        if limit is not None and len(raw) > limit and shared.fire("max_message_size"):
            return _DATA_REPLIES["552"].format(id=smtp.gsmtp_id)
        mechanism, username = smtp.auth_identity or (None, None)
        smtp.accept_on_reply(
            ReceivedMessage(
                sender=envelope.mail_from or "",
                recipients=tuple(envelope.rcpt_tos),
                # Parsed with \n line ends, so get_content() reads like a Python string.
                message=email.message_from_bytes(
                    raw.replace(b"\r\n", b"\n"), policy=email.policy.default
                ),
                raw=raw,
                auth_mechanism=mechanism,
                auth_username=username,
            )
        )
        return f"250 2.0.0 OK  {int(time.time())} {smtp.gsmtp_id} - gsmtp"

    async def handle_exception(self, error: Exception) -> str:
        if not isinstance(error, TLSSetupException):  # a client refusing our certificate
            _log.error("GmailServer failed on a command", exc_info=error)
        return "451 4.3.0 Mail server temporarily rejected message."


class _GmailSMTP(SMTP):
    """One connection: aiosmtpd's SMTP session with Gmail's words and the faults.

    Extension points for new faults: :meth:`_on_connect` runs before the
    greeting, :meth:`_on_command` before every command (return True when it
    has answered instead of the command), :meth:`push` before every reply,
    :meth:`smtp_DATA` when the message starts and :meth:`_Recorder.handle_DATA`
    once it has all arrived.
    """

    def __init__(self, shared: _Shared, *, loop: asyncio.AbstractEventLoop) -> None:
        self.gsmtp_id = _session_id()
        #: ``(mechanism, username)`` once AUTH succeeded on this connection.
        self.auth_identity: tuple[str, str | None] | None = None
        self._shared = shared
        self._accepted: ReceivedMessage | None = None  # recorded when its 250 goes out
        self._implicit_tls = shared.mode == "tls"
        self._raw_transport: asyncio.Transport | None = None
        self._tls_task: asyncio.Task[None] | None = None  # held so it is not collected
        super().__init__(
            _Recorder(shared),
            data_size_limit=_SIZE_LIMIT,
            enable_SMTPUTF8=True,
            hostname=_HOSTNAME,  # also keeps aiosmtpd from calling socket.getfqdn()
            ident=f"ESMTP {self.gsmtp_id} - gsmtp",
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

    @property
    def _secure(self) -> bool:
        return self._implicit_tls or self._tls_protocol is not None

    # -- connection plumbing -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._raw_transport is None:
            self._raw_transport = raw = cast("asyncio.Transport", transport)
            if self._implicit_tls:
                # Hold the ClientHello until start_tls() owns the socket.
                raw.pause_reading()
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
        super().connection_lost(error)

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
            await self.push(_GREETING_REPLIES[refusal].format(id=self.gsmtp_id))
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
            await self.push(
                f"530 5.7.0 Must issue a STARTTLS command first. {self.gsmtp_id} - gsmtp"
            )
            return True
        assert self.session is not None  # noqa: S101 - set by connection_made
        if shared.auth_required and command in _NEEDS_AUTH and not self.session.authenticated:
            await self.push(_AUTH_REQUIRED.format(id=self.gsmtp_id))
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
            template = _GMAIL_WORDING.get(status)
            await super().push(template.format(id=self.gsmtp_id) if template else status)
        else:
            await super().push(status)

    # -- commands ------------------------------------------------------------

    async def smtp_EHLO(self, hostname: str | None) -> None:  # noqa: N802 - aiosmtpd's name
        if not hostname:
            await self.push(
                f"501 5.5.4 Empty HELO/EHLO argument not allowed, please fix your client."
                f" {self.gsmtp_id} - gsmtp"
            )
            return
        assert self.session is not None  # noqa: S101 - set by connection_made
        self.envelope = self._create_envelope()  # EHLO resets the transaction
        self.session.extended_smtp = True
        self.session.host_name = hostname
        # MAIL FROM may carry SIZE=, BODY= and SMTPUTF8 parameters.
        self.command_size_limits["MAIL"] = self.command_size_limit + 26 + 10
        peer = self.session.peer[0] if self.session.peer else _HOST
        faults = self._shared.faults
        lines = [f"{_HOSTNAME} at your service, [{peer}]", f"SIZE {_SIZE_LIMIT}", "8BITMIME"]
        tls_possible = self._shared.mode == "starttls" and faults.offer_starttls
        if tls_possible and not self._secure:
            lines.append("STARTTLS")
        if self._secure or not tls_possible:
            lines.append(f"AUTH {_AUTH_MECHANISMS}")
        lines += ["ENHANCEDSTATUSCODES", "PIPELINING", "CHUNKING", "SMTPUTF8"]
        reply = "\r\n".join(f"250-{line}" for line in lines[:-1]) + f"\r\n250 {lines[-1]}"
        await self.push(reply)

    async def smtp_STARTTLS(self, arg: str | None) -> None:  # noqa: N802 - aiosmtpd's name
        offered = self._shared.mode == "starttls" and self._shared.faults.offer_starttls
        if not offered or self._secure:
            await self.push(f"502 5.5.1 Unrecognized command. {self.gsmtp_id} - gsmtp")
            return
        await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg: str | None) -> None:  # noqa: N802 - aiosmtpd's name
        assert self.session is not None  # noqa: S101 - set by connection_made
        if not self.session.extended_smtp:
            await self.push(f"503 5.5.1 EHLO/HELO first. {self.gsmtp_id} - gsmtp")
            return
        if self.session.authenticated:
            await self.push(f"503 5.5.1 Already authenticated. {self.gsmtp_id} - gsmtp")
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
            reply = f"504 5.7.4 Unrecognized authentication type. {self.gsmtp_id} - gsmtp"
        refusal = self._shared.faults.auth_reply
        if refusal is not None and self._shared.fire("auth_reply"):
            reply = _AUTH_REPLIES[refusal].format(id=self.gsmtp_id)
        success = reply == _ACCEPTED
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
            return username, _ACCEPTED
        # Gmail answers a bad token with a JSON challenge, then the usual 535
        # once the client has replied to it (with an empty line).
        await self.push(f"334 {_XOAUTH2_ERROR}")
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
        return f"501 5.5.2 Cannot Decode response {self.gsmtp_id} - gsmtp"

    def _verdict(self, *, accepted: bool) -> str:
        return _ACCEPTED if accepted else _BAD_CREDENTIALS.format(id=self.gsmtp_id)

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
