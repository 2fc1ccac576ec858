"""A local HTTP endpoint that records what webhook channels (apprise URLs) send.

:class:`WebhookListener` serves ``http://127.0.0.1:PORT/`` from a background
thread with the standard library's :class:`~http.server.ThreadingHTTPServer`
and records every request as a :class:`WebhookRequest`. Its misbehaviour can
be changed while it runs (``listener.status = 503``), so a test can break the
endpoint and then heal it::

    with WebhookListener() as listener:
        transport = AppriseTransport([listener.apprise_url("json")])
        listener.fail_times = 1  # the first request gets a 500
        ...
        (request,) = listener.wait_for_requests(1)
        assert request.json["title"] == "..."
"""

from __future__ import annotations

import contextlib
import http
import json
import socket
import threading
import types
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["WebhookListener", "WebhookRequest"]

_HOST = "127.0.0.1"
_THREAD_TIMEOUT = 10.0  # starting or stopping the server thread never takes this long
_SOCKET_TIMEOUT = 30.0  # a client that connects and never sends cannot hold a thread forever


@dataclass(frozen=True)
class WebhookRequest:
    """One request the listener received.

    Attributes:
        method: ``POST``, ``GET``...
        path: the path with its query string, e.g. ``/hook?key=value``.
        headers: the headers, names in lower case (the last value of a repeated one).
        body: the raw body.
        json: the body parsed as JSON when it is JSON, else ``None``.
        form: the fields of a ``application/x-www-form-urlencoded`` body, else ``None``.
    """

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    json: Any = None
    form: Mapping[str, str] | None = None

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced)."""
        return self.body.decode("utf-8", "replace")


class WebhookListener:
    """An HTTP server on 127.0.0.1 that records requests and misbehaves on demand.

    The knobs are read when a request arrives, so they can be changed while
    the listener runs. Every request is recorded as soon as its body is read,
    before any delay or hang.

    Args:
        status: the reply status (default 200).
        delay: seconds to wait before replying.
        hang: never reply, until ``hang`` is set back to False or the listener stops.
        fail_times: reply 500 to this many requests, then ``status``.
    """

    def __init__(
        self, *, status: int = 200, delay: float = 0.0, hang: bool = False, fail_times: int = 0
    ) -> None:
        self._condition = threading.Condition()
        self._status = status
        self._delay = delay
        self._hang = hang
        self._fail_times = fail_times
        self._requests: list[WebhookRequest] = []
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- knobs ---------------------------------------------------------------------

    @property
    def status(self) -> int:
        """The status of the next replies."""
        with self._condition:
            return self._status

    @status.setter
    def status(self, value: int) -> None:
        with self._condition:
            self._status = value

    @property
    def delay(self) -> float:
        """Seconds each request waits before its reply."""
        with self._condition:
            return self._delay

    @delay.setter
    def delay(self, value: float) -> None:
        with self._condition:
            self._delay = value

    @property
    def hang(self) -> bool:
        """Whether requests get no reply (until this is cleared or the listener stops)."""
        with self._condition:
            return self._hang

    @hang.setter
    def hang(self, value: bool) -> None:
        with self._condition:
            self._hang = value
            self._condition.notify_all()  # releases the requests that hang

    @property
    def fail_times(self) -> int:
        """How many of the next requests get a 500 before ``status`` applies again."""
        with self._condition:
            return self._fail_times

    @fail_times.setter
    def fail_times(self, value: int) -> None:
        with self._condition:
            self._fail_times = value

    # -- what arrived ----------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the listener serves on (chosen by the system)."""
        if self._server is None:
            raise RuntimeError("the listener is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/``."""
        return f"http://{_HOST}:{self.port}/"

    def apprise_url(self, scheme: str = "json", *, path: str = "/") -> str:
        """An apprise URL that posts to this listener, e.g. ``json://127.0.0.1:PORT/``.

        Args:
            scheme: an apprise scheme that takes a host and port: ``json``,
                ``form``, ``xml``, ``ntfy``...
            path: the path (and query) after the port.

        Returns:
            The URL.
        """
        return f"{scheme}://{_HOST}:{self.port}/{path.lstrip('/')}"

    @property
    def requests(self) -> list[WebhookRequest]:
        """The requests received so far, oldest first (a copy)."""
        with self._condition:
            return list(self._requests)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[WebhookRequest]:
        """Wait until at least ``count`` requests have arrived.

        Args:
            count: how many requests to wait for.
            timeout: the longest wait, in seconds.

        Returns:
            All the requests received so far.

        Raises:
            TimeoutError: fewer than ``count`` requests arrived in time.
        """
        with self._condition:
            if not self._condition.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(
                    f"{len(self._requests)} of {count} requests arrived within {timeout:g}s"
                )
            return list(self._requests)

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> WebhookListener:
        """Start serving on a free port of 127.0.0.1; returns the listener."""
        if self._server is not None:
            raise RuntimeError("the listener is already running")
        self._stopping.clear()
        server = ThreadingHTTPServer((_HOST, 0), _handler_class(self._record, self._track))
        # Request threads are joined by server_close() (block_on_close), so
        # stop() leaves none behind.
        server.daemon_threads = False
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"webhook-listener-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release hanging requests and close every socket. Idempotent."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        with self._condition:
            self._stopping.set()
            self._condition.notify_all()  # hanging and delayed requests end now
            connections = list(self._connections)
        for connection in connections:
            # Unblocks a handler still reading a request that never completes.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.shutdown()
        server.server_close()  # joins the request threads
        thread.join(_THREAD_TIMEOUT)
        self._server = self._thread = None

    def __enter__(self) -> WebhookListener:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"<WebhookListener {where} requests={len(self.requests)}>"

    # -- called by the request threads -------------------------------------------------

    def _track(self, connection: socket.socket, *, active: bool) -> None:
        with self._condition:
            if not active:
                self._connections.discard(connection)
                return
            self._connections.add(connection)
            if self._stopping.is_set():  # accepted just as stop() began: end it now
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def _record(self, request: WebhookRequest) -> int | None:
        """Record ``request``, wait as the knobs say; the status to reply, None for none."""
        with self._condition:
            self._requests.append(request)
            self._condition.notify_all()
            delay = self._delay
            if delay > 0:
                self._condition.wait_for(self._stopping.is_set, delay)
            self._condition.wait_for(lambda: not self._hang or self._stopping.is_set())
            if self._stopping.is_set():
                return None
            if self._fail_times > 0:
                self._fail_times -= 1
                return 500
            return self._status


def _handler_class(
    record: Callable[[WebhookRequest], int | None],
    track: Callable[..., None],
) -> type[BaseHTTPRequestHandler]:
    """A request handler class that reports to a listener's ``record`` and ``track``."""

    class Handler(BaseHTTPRequestHandler):
        timeout = _SOCKET_TIMEOUT

        def setup(self) -> None:
            super().setup()
            track(self.connection, active=True)

        def finish(self) -> None:
            track(self.connection, active=False)
            with contextlib.suppress(OSError):  # the client may be gone already
                super().finish()

        def handle_one_request(self) -> None:
            with contextlib.suppress(OSError):  # stop() cut the connection
                super().handle_one_request()

        def do_request(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            content_type = headers.get("content-type", "").split(";")[0].strip().lower()
            status = record(
                WebhookRequest(
                    method=self.command,
                    path=self.path,
                    headers=types.MappingProxyType(headers),
                    body=body,
                    json=_parse_json(body, content_type),
                    form=_parse_form(body, content_type),
                )
            )
            if status is None:  # hung until the listener stopped: no reply at all
                self.close_connection = True
                return
            phrase = _phrase(status)
            reply = json.dumps({} if status < 400 else {"error": phrase}).encode()
            self.send_response(status, phrase)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_request  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            """Stay quiet: tests read the recorded requests, not stderr."""

    return Handler


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _parse_json(body: bytes, content_type: str) -> Any:
    if not body or "json" not in content_type:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _parse_form(body: bytes, content_type: str) -> Mapping[str, str] | None:
    if content_type != "application/x-www-form-urlencoded":
        return None
    fields = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return types.MappingProxyType(fields)
