"""What every check is: a name, an interval, a timeout and an async probe.

A :class:`Check` subclass implements :meth:`Check.probe`; :meth:`Check.run`
wraps it so that it always returns a :class:`CheckResult` within the check's
``timeout``: a probe that raises gives a failed result naming the error, a
probe that overruns is cancelled (a command is killed) and gives a failed
result saying so. Nothing a check does can raise into the runner.

Also here, the two helpers the built-in checks share: :func:`in_thread` runs
a blocking call on a thread of its own (never on the engine's few delivery
workers, which a hung DNS look-up or a stuck user function would otherwise
hold), and :func:`open_stream` resolves and connects with it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from .._util.humanize import format_duration
from ._state import CheckPolicy, require_name
from ._text import clip

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_TIMEOUT",
    "Check",
    "CheckResult",
    "close_stream",
    "describe_error",
    "format_latency",
    "in_thread",
    "open_stream",
]

T = TypeVar("T")

DEFAULT_INTERVAL = 60.0
"""Seconds between two runs of a check."""

DEFAULT_TIMEOUT = 10.0
"""Seconds a check's run may take before it counts as failed."""

_DETAIL_MAX = 500


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one run of a check.

    Attributes:
        ok: whether the check passed.
        detail: what it saw, in a line: a status and latency, or the error.
        latency: seconds the run took (for HTTP, until the response headers).
    """

    ok: bool
    detail: str = ""
    latency: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Check(abc.ABC):
    """A check: subclasses implement :meth:`probe`.

    Attributes:
        name: the check's name, unique among the checks of a monitor; its
            identity in alerts and in the state kept across restarts.
        interval: seconds between two runs (a runner adds some jitter).
        timeout: seconds a run may take; past it the run fails.
        policy: retries, recovery, reminders and flapping; the monitor's
            default when None.

    Raises:
        ValueError: an empty name, or an interval or timeout that is not positive.
    """

    kind: ClassVar[str] = "check"

    name: str
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    policy: CheckPolicy | None = None

    def __post_init__(self) -> None:
        require_name(self.name)
        for field_name in ("interval", "timeout"):
            value: object = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{self.name}: {field_name} must be > 0 seconds, got {value!r}")

    @abc.abstractmethod
    async def probe(self) -> CheckResult:
        """Look once at what the check watches; may raise, may overrun.

        Returns:
            The result; :meth:`run` turns exceptions and overruns into results.
        """

    def timeout_detail(self) -> str:
        """The detail of a run that overran its timeout."""
        return f"timed out after {format_duration(self.timeout)}"

    async def run(self) -> CheckResult:
        """Run :meth:`probe` under the timeout; never raises (except cancellation).

        Returns:
            The probe's result, or a failed result for an error or an overrun.
        """
        started = time.perf_counter()
        try:
            # `object`: a subclass without a type checker may return anything.
            result: object = await asyncio.wait_for(self.probe(), self.timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return CheckResult(False, self.timeout_detail(), time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - any failure of a probe is a failed check
            return CheckResult(False, describe_error(exc), time.perf_counter() - started)
        if not isinstance(result, CheckResult):
            return CheckResult(
                False,
                f"the probe returned {type(result).__name__}, not a CheckResult",
                time.perf_counter() - started,
            )
        return result


def describe_error(exc: BaseException) -> str:
    """An error as a short line for a check's detail, most specific cause first."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        text = f"TLS certificate not trusted: {exc.verify_message or exc.reason}"
    elif isinstance(exc, ssl.SSLError):
        text = f"TLS error: {exc.reason or exc}"
    elif isinstance(exc, socket.gaierror):
        text = f"cannot resolve the host name: {exc.strerror or exc}"
    elif isinstance(exc, ConnectionRefusedError):
        text = "connection refused"
    elif isinstance(exc, ConnectionResetError):
        text = "connection reset by the server"
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        name = type(exc).__name__
        text = f"{name}: {exc}" if str(exc) else name
    return clip(text, _DETAIL_MAX)


def format_latency(seconds: float) -> str:
    """``0.0351`` as ``35 ms``, ``2.5`` as ``2.50 s``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


async def in_thread(fn: Callable[..., T], /, *args: Any) -> T:
    """Run a blocking call on a new daemon thread and await its result.

    A thread of its own, not the loop's executor: the engine's executor is a
    handful of threads that delivery needs (DNS for the SMTP server), and a
    check's call may hang far past its timeout. Cancelling the await leaves
    the thread to finish on its own; its result is dropped.

    Args:
        fn: the blocking callable.
        *args: its arguments.

    Returns:
        What ``fn`` returned.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: T | None, error: BaseException | None) -> None:
        if future.done():
            return  # cancelled meanwhile: nobody waits for it
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)  # type: ignore[arg-type]  # None only with an error

    def work() -> None:
        value: T | None = None
        error: BaseException | None = None
        try:
            value = fn(*args)
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            error = exc
        except BaseException as exc:  # noqa: BLE001 - SystemExit from a callable must not stop the loop
            error = RuntimeError(f"{type(exc).__name__} raised: {exc}")
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=work, name="smtp-alerts-check", daemon=True).start()
    return await future


async def open_stream(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Resolve ``host`` (on a thread of its own) and connect to its first address that answers.

    Args:
        host: a host name or address.
        port: the TCP port.
        ssl_context: wrap the connection in TLS with this context.
        server_hostname: the name to verify the certificate against; ``host``
            when omitted.

    Returns:
        The connection's reader and writer.

    Raises:
        OSError: no address could be reached (the last address's error).
        ssl.SSLError: the TLS handshake failed (no other address is tried).
    """
    infos = await in_thread(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
    error: OSError = OSError(f"{host} has no address")
    for family, _, _, _, address in infos:
        try:
            # A numeric address: asyncio connects without resolving again.
            return await asyncio.open_connection(
                str(address[0]),
                int(address[1]),
                family=family,
                ssl=ssl_context,
                server_hostname=(server_hostname or host) if ssl_context is not None else None,
            )
        except ssl.SSLError:  # noqa: PERF203 - one attempt per address is the point
            raise  # the server answered: another address of it will not do better
        except OSError as exc:
            error = exc
    raise error


async def close_stream(writer: asyncio.StreamWriter) -> None:
    """Close a connection, waiting a moment for the close to complete."""
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 1.0)
