"""A small HTTP/1.1 client for checks: asyncio streams and h11.

Why not a full client library: a check needs one request, the status, the
time to the response headers and at most the start of the body, all
cancellable by the check's timeout on the engine's loop. `h11
<https://h11.readthedocs.io>`_ (the protocol core under httpx, httpcore and
uvicorn) does the parsing: chunked bodies, keep-alive framing, malformed
responses. It is pure Python, ~250 KB with no dependencies, and imports in
about 8 ms, where httpx takes about 32 ms (plus httpcore, anyio, certifi,
idna: ~4 MB), aiohttp about 115 ms (~13 MB with its C extensions) and
requests about 59 ms (and a thread per request, which a timeout cannot stop).
It is imported only when an HTTP check first runs.

What it does: GET or HEAD, your extra headers, TLS verified against the
system's trust store (plus an optional CA file), redirects followed up to
:data:`MAX_REDIRECTS` (your headers are dropped when a redirect leaves the
origin, as browsers drop credentials), and at most :data:`MAX_BODY` bytes of
body read, only when asked for. What it does not: proxies, HTTP/2,
compression (it asks for none), cookies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from .._version import VERSION
from ._check import close_stream, open_stream

if TYPE_CHECKING:
    import asyncio
    import ssl
    from collections.abc import Sequence

    import h11

__all__ = ["MAX_BODY", "MAX_REDIRECTS", "HttpResponse", "fetch", "parse_url"]

MAX_BODY = 1_048_576
"""Most bytes of a response body read for matching (the start is kept)."""

MAX_REDIRECTS = 5
"""Most redirects followed before a check fails."""

USER_AGENT = f"smtp-alerts/{VERSION} (check)"

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_READ_SIZE = 65_536


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """What a check needs of a response.

    Attributes:
        status: the status code.
        reason: the reason phrase.
        body: the body's start (empty unless asked for).
        truncated: whether the body was longer than what was read.
        elapsed: seconds from the request's start to the last response's
            headers (or its body, when read).
        redirects: how many redirects were followed.
        location: where a redirect that was not followed pointed.
    """

    status: int
    reason: str
    body: bytes = b""
    truncated: bool = False
    elapsed: float = 0.0
    redirects: int = 0
    location: str = ""


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    host: str
    port: int
    target: str  # the request-target: path and query
    host_header: str


def parse_url(url: str) -> _Target:
    """Split an http(s) URL into what a request needs.

    Raises:
        ValueError: not an ``http`` or ``https`` URL with a host.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http:// or https:// URL with a host: {url!r}")
    default = 443 if scheme == "https" else 80
    port = parts.port or default  # raises ValueError for a bad port
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(scheme, host, port, target, shown if port == default else f"{shown}:{port}")


async def fetch(
    url: str,
    *,
    method: str = "GET",
    headers: Sequence[tuple[str, str]] = (),
    ssl_context: ssl.SSLContext,
    read_body: bool = False,
    follow_redirects: bool = True,
) -> HttpResponse:
    """Send one request (and its redirects) and return the final response.

    Args:
        url: an ``http://`` or ``https://`` URL.
        method: ``GET`` or ``HEAD``.
        headers: extra request headers.
        ssl_context: the TLS context for https.
        read_body: read up to :data:`MAX_BODY` bytes of the body.
        follow_redirects: follow 301, 302, 303, 307 and 308 responses.

    Returns:
        The final response.

    Raises:
        ValueError: a bad URL, or too many redirects.
        OSError: the connection failed (``ssl.SSLError`` for TLS).
        h11.RemoteProtocolError: the server's answer is not valid HTTP/1.1.
    """
    started = time.perf_counter()
    current = url
    origin = _origin(parse_url(url))
    for redirects in range(MAX_REDIRECTS + 1):
        target = parse_url(current)
        extra = headers if _origin(target) == origin else ()
        response, location = await _exchange(
            target, method, extra, ssl_context, read_body=read_body, started=started
        )
        if response.status not in _REDIRECTS or not location:
            return _with(response, redirects=redirects)
        if not follow_redirects:
            return _with(response, redirects=redirects, location=location)
        current = urljoin(current, location)
        if response.status == 303:
            method = "GET"
    raise ValueError(f"more than {MAX_REDIRECTS} redirects (the last to {current})")


def _origin(target: _Target) -> tuple[str, str, int]:
    return (target.scheme, target.host.lower(), target.port)


def _with(response: HttpResponse, *, redirects: int, location: str = "") -> HttpResponse:
    return HttpResponse(
        status=response.status,
        reason=response.reason,
        body=response.body,
        truncated=response.truncated,
        elapsed=response.elapsed,
        redirects=redirects,
        location=location,
    )


async def _exchange(
    target: _Target,
    method: str,
    headers: Sequence[tuple[str, str]],
    ssl_context: ssl.SSLContext,
    *,
    read_body: bool,
    started: float,
) -> tuple[HttpResponse, str]:
    """One request on a new connection; returns the response and its Location."""
    import h11  # noqa: PLC0415 - loaded when the first HTTP check runs

    reader, writer = await open_stream(
        target.host, target.port, ssl_context=ssl_context if target.scheme == "https" else None
    )
    try:
        connection = h11.Connection(our_role=h11.CLIENT)
        request = h11.Request(
            method=method,
            target=target.target,
            headers=[
                ("Host", target.host_header),
                ("User-Agent", USER_AGENT),
                ("Accept", "*/*"),
                ("Accept-Encoding", "identity"),
                ("Connection", "close"),
                *headers,
            ],
        )
        for event_out in (request, h11.EndOfMessage()):
            writer.write(connection.send(event_out) or b"")
        await writer.drain()
        return await _read_response(connection, reader, read_body=read_body, started=started)
    finally:
        await close_stream(writer)


async def _read_response(
    connection: h11.Connection,
    reader: asyncio.StreamReader,
    *,
    read_body: bool,
    started: float,
) -> tuple[HttpResponse, str]:
    """Read the response's head (and up to MAX_BODY bytes of its body, if asked)."""
    import h11  # noqa: PLC0415 - loaded when the first HTTP check runs

    head: h11.Response | None = None
    body = bytearray()
    truncated = False
    elapsed = 0.0
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await reader.read(_READ_SIZE))
        elif isinstance(event, h11.Response):
            head = event
            elapsed = time.perf_counter() - started
            if not read_body:
                break
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                del body[MAX_BODY:]
                truncated = True
                break
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            break
    if head is None:
        raise h11.RemoteProtocolError("the server closed the connection without a response")
    if read_body:
        elapsed = time.perf_counter() - started
    location = next(
        (value.decode("latin-1") for name, value in head.headers if name.lower() == b"location"),
        "",
    )
    response = HttpResponse(
        status=head.status_code,
        reason=head.reason.decode("latin-1"),
        body=bytes(body),
        truncated=truncated,
        elapsed=elapsed,
    )
    return response, location
