"""The built-in checks: HTTP(S), TCP connect, TLS certificate expiry, a command, a callable.

Each is a frozen dataclass (a :class:`~smtp_alerts.checks.Check`) whose
:meth:`~smtp_alerts.checks.Check.probe` looks once at what it watches. All of
them run on the engine's loop without blocking it: sockets through asyncio,
DNS and sync callables on threads of their own, commands as asyncio
subprocesses (killed, with their children, when the timeout passes)::

    from smtp_alerts.checks import CommandCheck, HttpCheck, TcpCheck, TlsExpiryCheck

    checks = [
        HttpCheck(name="website", url="https://example.com/health", body_contains="ok"),
        TcpCheck(name="database", host="db.internal", port=5432),
        TlsExpiryCheck(name="certificate", host="example.com", min_days=14),
        CommandCheck(name="backups", command="test -n \"$(find /backups -mtime -1)\""),
    ]
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .._util.humanize import format_duration, format_time
from .._util.tls import verifying_context
from ._check import (
    Check,
    CheckResult,
    close_stream,
    format_latency,
    in_thread,
    open_stream,
)
from ._text import clip

__all__ = [
    "DEFAULT_MIN_DAYS",
    "CallableCheck",
    "CommandCheck",
    "HttpCheck",
    "TcpCheck",
    "TlsExpiryCheck",
]

DEFAULT_MIN_DAYS = 14.0
"""A TLS certificate with fewer days left than this fails its check."""

_OUTPUT_TAIL = 4096  # bytes of a command's output kept (its end)
_DETAIL_MAX = 300
_SUCCESS_STATUS = range(200, 300)


@functools.lru_cache(maxsize=16)
def _context(ca_file: Path | None) -> ssl.SSLContext:
    # Loading the system's trust store takes milliseconds: once per CA file.
    return verifying_context(ca_file)


@dataclass(frozen=True, kw_only=True)
class HttpCheck(Check):
    """Fetches a URL: passes when the status is expected, fast enough, and the body matches.

    Attributes:
        url: an ``http://`` or ``https://`` URL.
        method: ``GET`` or ``HEAD``.
        expect_status: the statuses that pass; None passes any 2xx.
        max_latency: seconds the response headers (or the body, when matched)
            may take; slower fails.
        body_contains: a text the body must contain.
        body_regex: a regular expression the body must match (``re.search``).
        headers: extra request headers (never shown in reprs or alerts).
        follow_redirects: follow redirects (up to 5) instead of judging them.
        ca_file: extra CA certificates to trust, besides the system's.
    """

    kind: ClassVar[str] = "http"

    url: str
    method: str = "GET"
    expect_status: tuple[int, ...] | None = None
    max_latency: float | None = None
    body_contains: str | None = None
    body_regex: str | None = None
    headers: Mapping[str, str] | tuple[tuple[str, str], ...] = field(default=(), repr=False)
    follow_redirects: bool = True
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        from ._http import parse_url  # noqa: PLC0415 - keeps h11 out until an HTTP check exists

        try:
            parse_url(self.url)
        except ValueError as exc:
            raise ValueError(f"{self.name}: url: {exc}") from None
        method = self.method.upper()
        if method not in ("GET", "HEAD"):
            raise ValueError(f"{self.name}: method must be GET or HEAD, got {self.method!r}")
        object.__setattr__(self, "method", method)
        if method == "HEAD" and (self.body_contains or self.body_regex):
            raise ValueError(f"{self.name}: a HEAD response has no body to match")
        if self.body_regex is not None:
            try:
                re.compile(self.body_regex)
            except re.error as exc:
                raise ValueError(f"{self.name}: body_regex is not valid: {exc}") from None
        if self.expect_status is not None:
            codes = tuple(self.expect_status)
            if not codes or any(not 100 <= int(code) <= 599 for code in codes):
                raise ValueError(f"{self.name}: expect_status needs codes from 100 to 599")
            object.__setattr__(self, "expect_status", codes)
        if self.max_latency is not None and not self.max_latency > 0:
            raise ValueError(f"{self.name}: max_latency must be > 0 seconds")
        pairs = self.headers.items() if isinstance(self.headers, Mapping) else self.headers
        object.__setattr__(self, "headers", tuple((str(k), str(v)) for k, v in pairs))

    async def probe(self) -> CheckResult:
        """Fetch the URL once and judge the response."""
        from ._http import fetch  # noqa: PLC0415 - h11 loads with the first HTTP check

        matching = self.body_contains is not None or self.body_regex is not None
        headers = self.headers if isinstance(self.headers, tuple) else tuple(self.headers.items())
        response = await fetch(
            self.url,
            method=self.method,
            headers=headers,
            ssl_context=_context(self.ca_file),
            read_body=matching,
            follow_redirects=self.follow_redirects,
        )
        status = f"HTTP {response.status} {response.reason}".rstrip()
        detail = f"{status} in {format_latency(response.elapsed)}"
        problems = []
        expected = self.expect_status or _SUCCESS_STATUS
        if response.status not in expected:
            wanted = "2xx" if self.expect_status is None else ", ".join(map(str, expected))
            problem = f"expected {wanted}"
            if response.location:
                problem += f" (a redirect to {clip(response.location, 120)})"
            problems.append(problem)
        if self.max_latency is not None and response.elapsed > self.max_latency:
            problems.append(f"slower than {format_latency(self.max_latency)}")
        text = response.body.decode("utf-8", "replace") if matching else ""
        if self.body_contains is not None and self.body_contains not in text:
            problems.append(f"the body does not contain {clip(self.body_contains, 80)!r}")
        if self.body_regex is not None and re.search(self.body_regex, text) is None:
            problems.append(f"the body does not match /{clip(self.body_regex, 80)}/")
        if response.truncated and problems and matching:
            problems.append("only the body's first MiB was searched")
        if problems:
            detail += ": " + "; ".join(problems)
        return CheckResult(not problems, detail, response.elapsed)


@dataclass(frozen=True, kw_only=True)
class TcpCheck(Check):
    """Connects to a TCP port: passes when the connection opens.

    Attributes:
        host: a host name or address.
        port: the port.
    """

    kind: ClassVar[str] = "tcp"

    host: str
    port: int

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_host_port(self.name, self.host, self.port)

    async def probe(self) -> CheckResult:
        """Open a connection and close it again."""
        started = time.perf_counter()
        _, writer = await open_stream(self.host, self.port)
        latency = time.perf_counter() - started
        await close_stream(writer)
        return CheckResult(
            True, f"connected to {self.host}:{self.port} in {format_latency(latency)}", latency
        )


@dataclass(frozen=True, kw_only=True)
class TlsExpiryCheck(Check):
    """Verifies a server's TLS certificate: passes while it has ``min_days`` or more left.

    The certificate is verified as a client would (the system's trust store,
    plus ``ca_file``; the host name): an untrusted or expired certificate fails too.

    Attributes:
        host: the server's host name or address.
        port: the port (TLS from the first byte, as on 443 or 465).
        min_days: days of validity the certificate must have left.
        ca_file: extra CA certificates to trust, besides the system's.
        server_name: the name to ask for (SNI) and verify; ``host`` when omitted.
    """

    kind: ClassVar[str] = "tls"

    host: str
    port: int = 443
    min_days: float = DEFAULT_MIN_DAYS
    ca_file: Path | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_host_port(self.name, self.host, self.port)
        if self.min_days < 0:
            raise ValueError(f"{self.name}: min_days must be >= 0, got {self.min_days!r}")

    async def probe(self) -> CheckResult:
        """Handshake, then read the verified certificate's end of validity."""
        started = time.perf_counter()
        _, writer = await open_stream(
            self.host,
            self.port,
            ssl_context=_context(self.ca_file),
            server_hostname=self.server_name,
        )
        latency = time.perf_counter() - started
        try:
            certificate = writer.get_extra_info("peercert") or {}
        finally:
            await close_stream(writer)
        not_after = certificate.get("notAfter")
        if not isinstance(not_after, str):
            return CheckResult(False, "the server sent no certificate", latency)
        expires = ssl.cert_time_to_seconds(not_after)
        days = (expires - time.time()) / 86400
        until = f"{days:.1f} days left (until {format_time(expires)})"
        if days < self.min_days:
            return CheckResult(
                False,
                f"certificate expires soon: {until}, fewer than {self.min_days:g}",
                latency,
            )
        return CheckResult(True, f"certificate valid: {until}", latency)


@dataclass(frozen=True, kw_only=True)
class CommandCheck(Check):
    """Runs a command: passes when its exit code is one of ``ok_codes``.

    A string runs through the shell (``sh -c``); a list or tuple runs as is,
    with no shell. Standard output and error are read together; the last line
    is shown in the detail. On timeout the command and its children (its
    whole process group) are killed.

    Attributes:
        command: a shell command line, or the program and its arguments.
        ok_codes: the exit codes that pass.
        cwd: the working directory; the current one when omitted.
    """

    kind: ClassVar[str] = "command"

    command: str | tuple[str, ...]
    ok_codes: tuple[int, ...] = (0,)
    cwd: Path | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.command, str):
            object.__setattr__(self, "command", tuple(str(part) for part in self.command))
        if not self.command or (isinstance(self.command, str) and not self.command.strip()):
            raise ValueError(f"{self.name}: command is empty")
        object.__setattr__(self, "ok_codes", tuple(int(code) for code in self.ok_codes))

    def timeout_detail(self) -> str:
        """The detail of a run that overran: the command was killed."""
        return f"timed out after {format_duration(self.timeout)}; the command was killed"

    async def probe(self) -> CheckResult:
        """Run the command to its end (or until cancelled, then kill it)."""
        started = time.perf_counter()
        options: dict[str, Any] = {
            "stdin": subprocess.DEVNULL,
            "stdout": subprocess.PIPE,
            "stderr": subprocess.STDOUT,
            "cwd": self.cwd,
        }
        if sys.platform != "win32":
            options["start_new_session"] = True  # its own process group: killed as a whole
        if isinstance(self.command, str):
            process = await asyncio.create_subprocess_shell(self.command, **options)
        else:
            process = await asyncio.create_subprocess_exec(*self.command, **options)
        try:
            tail = await _read_tail(process)
            code = await process.wait()
        except BaseException:
            _kill(process)
            with contextlib.suppress(Exception):
                await asyncio.shield(process.wait())
            raise
        latency = time.perf_counter() - started
        lines = [line for line in tail.decode("utf-8", "replace").splitlines() if line.strip()]
        last = f": {clip(lines[-1], _DETAIL_MAX)}" if lines else ""
        if code < 0:
            name = _signal_name(-code)
            return CheckResult(False, f"killed by {name} after {format_latency(latency)}", latency)
        ok = code in self.ok_codes
        return CheckResult(ok, f"exit code {code} in {format_latency(latency)}{last}", latency)


@dataclass(frozen=True, kw_only=True)
class CallableCheck(Check):
    """Calls a function: sync ones on a thread of their own, async ones on the loop.

    The function takes no arguments and returns True or None (passed), False
    (failed), ``(ok, detail)``, or a :class:`CheckResult`; an exception fails
    the check with its type and message. A sync function cannot be stopped:
    past the timeout its result is ignored, and the check does not call it
    again while it is still running.

    Attributes:
        func: the function (or coroutine function).
    """

    kind: ClassVar[str] = "callable"

    func: Callable[[], Any]
    _running: list[bool] = field(
        default_factory=lambda: [False], init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not callable(self.func):
            raise TypeError(f"{self.name}: func must be callable, got {self.func!r}")

    async def probe(self) -> CheckResult:
        """Call the function once and interpret what it returns."""
        started = time.perf_counter()
        func = self.func
        if inspect.iscoroutinefunction(func):
            value = await func()
        else:
            if self._running[0]:
                return CheckResult(False, "the previous call has not returned yet", 0.0)
            value = await self._call_in_thread(func)
        if inspect.isawaitable(value):  # a sync function that returned a coroutine
            value = await value
        return _interpret(value, time.perf_counter() - started)

    async def _call_in_thread(self, func: Callable[[], Any]) -> Any:
        running = self._running

        def call() -> Any:
            try:
                return func()
            finally:
                running[0] = False

        running[0] = True
        try:
            return await in_thread(call)
        except asyncio.CancelledError:
            raise  # a timeout: still running in its thread, `call` clears the flag at its end
        except BaseException:
            running[0] = False  # it ended (or its thread never started)
            raise


def _interpret(value: Any, latency: float) -> CheckResult:
    if isinstance(value, CheckResult):
        return value
    if value is None or value is True:
        return CheckResult(True, f"passed in {format_latency(latency)}", latency)
    if value is False:
        return CheckResult(False, "returned False", latency)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], bool):
        return CheckResult(value[0], clip(str(value[1]), _DETAIL_MAX), latency)
    return CheckResult(
        False,
        f"returned {clip(repr(value), 80)}: expected True, False, None, (ok, detail) "
        "or a CheckResult",
        latency,
    )


async def _read_tail(process: asyncio.subprocess.Process) -> bytes:
    """Read a process's output to its end, keeping only the last bytes."""
    stream = process.stdout
    if stream is None:
        return b""
    tail = bytearray()
    while chunk := await stream.read(65_536):
        tail += chunk
        del tail[:-_OUTPUT_TAIL]
    return bytes(tail)


def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        if sys.platform != "win32":
            os.killpg(process.pid, signal.SIGKILL)  # the shell and what it started
        else:
            process.kill()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _check_host_port(name: str, host: object, port: object) -> None:
    if not isinstance(host, str) or not host.strip():
        raise ValueError(f"{name}: host is empty")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"{name}: port must be from 1 to 65535, got {port!r}")
