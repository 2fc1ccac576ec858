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

This module holds the server: its thread, its loop, its listening socket and
what tests read from it. Each connection is a
:class:`~smtp_alerts.testing._session.GmailSession` (with the aiosmtpd handler
of :mod:`._handler`); Gmail's words are in :mod:`._replies`, the faults in
:mod:`._faults`, what the server and its connections share in :mod:`._state`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import shutil
import socket
import ssl
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import trustme
from aiosmtpd.smtp import TLSSetupException

from ._faults import Faults, watch_refusals
from ._session import GmailSession
from ._state import HOST, AuthAttempt, Mode, ReceivedMessage, SharedState

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from ..settings import Settings

__all__ = ["GmailServer"]

_log = logging.getLogger("smtp_alerts.testing.server")

# aiosmtpd's own logger: a line per odd command or dropped session, with the raw bytes.
_AIOSMTPD_LOGGER = "mail.log"
_aiosmtpd_log_lock = threading.Lock()

_THREAD_TIMEOUT = 10.0  # starting or stopping the loop thread never takes this long
# Lets a never-listening socket hold the port while refuse_connections is on.
_REUSE_PORT = hasattr(socket, "SO_REUSEPORT")
_ABORT_ROUNDS = 200  # loop iterations stop() waits for aborted connections to go


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

    host = HOST

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
        self._ca.issue_cert(HOST, "localhost").configure_cert(tls_context)
        self._shared = SharedState(
            mode=mode,
            username=username,
            password=password,
            xoauth2_token=xoauth2_token,
            auth_required=auth_required,
            faults=faults,
            tls_context=tls_context,
        )
        watch_refusals(faults, self._sync_listening)

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
        where = f"{HOST}:{self._port}" if self._port is not None else "stopped"
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
        _keep_aiosmtpd_log()
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
        _log.debug("Gmail-like server (%s) listening on %s:%s", self.mode, HOST, self._port)
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
        watch_refusals(self._shared.faults, None)
        watch_refusals(value, self._sync_listening)
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
        so a test never reaches a real channel or the user's own spool. The
        ``SMTP_ALERTS_*`` environment is not read at all: a setting there
        (even a wrong or unknown one) changes nothing.

        Args:
            **overrides: any :class:`~smtp_alerts.Settings` field; these win.

        Returns:
            The settings.
        """
        from ..settings import Settings  # noqa: PLC0415 - pydantic is not needed to serve

        security = "none" if self.mode == "plain" else self.mode
        values: dict[str, Any] = {
            "host": HOST,
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
        return Settings(_environment={}, **values)

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
            "HOST": HOST,
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
            reservation.bind((HOST, 0))
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
        # by each connection (see GmailSession.connection_made), so that stop()
        # can reach and abort a connection stuck in its handshake.
        try:
            listener = socket.create_server((HOST, port), reuse_port=_REUSE_PORT)
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
                    loop.sock_connect(waker, (HOST, self._listening_port)), _THREAD_TIMEOUT / 4
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

    def _new_connection(self) -> GmailSession:
        with self._shared.condition:
            self._shared.connections += 1
        connection = GmailSession(self._shared, loop=self._require_loop())
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


class _ToServerLog(logging.Handler):
    """Passes aiosmtpd's records on to the server's own logger, at DEBUG."""

    def emit(self, record: logging.LogRecord) -> None:
        _log.debug("aiosmtpd: %s", record.getMessage())


def _keep_aiosmtpd_log() -> None:
    """Keep aiosmtpd's lines (``('127.0.0.1', 42898) unrecognised: ...``) in the server's log.

    aiosmtpd logs them as warnings to ``mail.log``. In a process that has
    configured no logging (the demo, a user's script) the warnings reached
    :data:`logging.lastResort`, which printed them, control bytes and all,
    on the host program's stderr. They are the server's business: they go to
    ``smtp_alerts.testing.server`` at DEBUG, where a test can read them.
    """
    logger = logging.getLogger(_AIOSMTPD_LOGGER)
    with _aiosmtpd_log_lock:
        if not any(isinstance(handler, _ToServerLog) for handler in logger.handlers):
            logger.addHandler(_ToServerLog())
        logger.propagate = False
