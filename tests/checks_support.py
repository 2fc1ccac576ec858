"""Local servers the check tests flip up and down: HTTP(S) and a TLS listener.

Real sockets on 127.0.0.1, port 0, each served by a thread; a test changes
what they answer between two runs of a check.
"""

from __future__ import annotations

import datetime
import http.server
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import trustme


class FlipServer:
    """An HTTP server whose answer the test sets: status, body, delay, redirect.

    Args:
        tls: serve HTTPS with a certificate from ``ca`` (a trustme CA).
        ca: the CA; a new one when omitted.
        not_after: when the certificate expires (HTTPS only).
    """

    def __init__(
        self,
        *,
        tls: bool = False,
        ca: trustme.CA | None = None,
        not_after: datetime.datetime | None = None,
    ) -> None:
        self.status = 200
        self.body = b"all good"
        self.delay = 0.0
        self.location = ""
        self.requests: list[tuple[str, str]] = []
        self.ca = ca or trustme.CA()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer(with_body=True)

            def do_HEAD(self) -> None:
                self._answer(with_body=False)

            def _answer(self, *, with_body: bool) -> None:
                server.requests.append((self.command, self.path))
                if server.delay:
                    time.sleep(server.delay)
                body = server.body
                if server.location and self.path != "/landing":
                    self.send_response(302)
                    self.send_header("Location", server.location)
                    body = b""
                else:
                    self.send_response(server.status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
                pass  # quiet test output

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.scheme = "http"
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ca.issue_cert("localhost", "127.0.0.1", not_after=not_after).configure_cert(
                context
            )
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
            self.scheme = "https"
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str = "/health") -> str:
        """The URL of ``path`` on this server."""
        return f"{self.scheme}://localhost:{self.port}{path}"

    def down(self, status: int = 503) -> None:
        """Answer with an error status from now on."""
        self.status = status

    def up(self) -> None:
        """Answer 200 from now on."""
        self.status = 200

    def __enter__(self) -> FlipServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


def write_ca(ca: trustme.CA, directory: Path) -> Path:
    """The CA's certificate as a PEM file in ``directory``."""
    path = directory / "test-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts connections and then says nothing (a TLS handshake hangs)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for sock in accepted:
            sock.close()
        listener.close()


@contextmanager
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full: a new connection hangs (Linux drops its SYN)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port: int = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # never accepted: they fill the queue
            filler = socket.socket()
            filler.setblocking(False)
            with suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.05)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
