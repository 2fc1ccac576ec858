"""Network probes for ``smtp-alerts doctor``: DNS, TCP, STARTTLS / TLS and the certificate.

Each probe does one thing and either returns what it saw or raises the
:class:`~smtp_alerts.errors.DeliveryError` subclass the SMTP transport would
raise for the same failure, so :func:`smtp_alerts._delivery.diagnosis.diagnose`
explains both alike. None of them logs in: the login is checked by the
transport itself (:meth:`SMTPTransport.check_login`), with its single AUTH.

The TLS probe speaks just enough SMTP (greeting, EHLO, STARTTLS, EHLO,
QUIT) through :mod:`smtplib` in a worker thread, with a context built like
the transport's: system CAs plus ``CA_FILE``, host name checked, certificate
required. It keeps the certificate to show (``aiosmtplib`` stays the
transport's alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import os
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .._util.net import ehlo_hostname
from .._util.smtp_reply import one_line
from .._util.tls import tls_failure, verifying_context
from ..errors import (
    CertificateVerifyError,
    ConnectError,
    DeliveryError,
    DeliveryTimeoutError,
    PermanentReplyError,
    StartTLSNotOfferedError,
    TemporaryReplyError,
)

if TYPE_CHECKING:
    from pathlib import Path

    from .._util.net import Security

__all__ = ["CertificateInfo", "TLSReport", "connect", "probe_tls", "resolve"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """What a person checks in a server certificate.

    Attributes:
        subject: the subject's common name (or organisation), or ``""``.
        names: the subject alternative names, as ``DNS:x`` / ``IP:x``.
        matched: the name that matched the host, or ``""`` when none did.
        issuer: the issuer's common name (and organisation when it adds something).
        not_after: when it expires, epoch seconds.
    """

    subject: str
    names: tuple[str, ...]
    matched: str
    issuer: str
    not_after: float

    @classmethod
    def from_peercert(cls, cert: dict[str, Any], host: str) -> CertificateInfo:
        """Read :meth:`ssl.SSLSocket.getpeercert`'s dictionary for ``host``."""
        subject = _name(cert.get("subject", ()))
        issuer = _name(cert.get("issuer", ()))
        names = tuple(
            f"{'IP' if kind == 'IP Address' else kind}:{value}"
            for kind, value in cert.get("subjectAltName", ())
            if kind in ("DNS", "IP Address")
        )
        issuer_text = issuer.get("commonName", "")
        organisation = issuer.get("organizationName", "")
        if organisation and organisation not in issuer_text:
            issuer_text = f"{issuer_text} ({organisation})" if issuer_text else organisation
        return cls(
            subject=subject.get("commonName") or subject.get("organizationName", ""),
            names=names,
            matched=next((name for name in names if _matches(name, host)), ""),
            issuer=issuer_text or "unknown",
            not_after=ssl.cert_time_to_seconds(cert["notAfter"]),
        )


@dataclass(frozen=True, slots=True)
class TLSReport:
    """The outcome of a TLS probe.

    Attributes:
        security: ``starttls``, ``tls`` or ``none`` (no TLS was attempted).
        version: the TLS version, e.g. ``TLSv1.3``; ``""`` without TLS.
        certificate: the verified server certificate; None without TLS.
        auth: the AUTH mechanisms offered on the (secured) connection.
        starttls_offered: whether the server offered STARTTLS (on ``none``:
            whether it could have been used).
    """

    security: Security
    version: str
    certificate: CertificateInfo | None
    auth: tuple[str, ...]
    starttls_offered: bool


async def resolve(host: str, port: int, *, timeout: float) -> list[str]:
    """The addresses ``host`` resolves to, in the resolver's order.

    Raises:
        ConnectError: the name does not resolve.
        DeliveryTimeoutError: the resolver did not answer within ``timeout``.
    """
    loop = asyncio.get_running_loop()
    channel = f"{host}:{port}"
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout
        )
    except socket.gaierror as exc:
        raise ConnectError(
            f"could not resolve {host}: {exc.strerror or exc}", channel=channel, step="resolve"
        ) from exc
    except asyncio.TimeoutError as exc:
        raise DeliveryTimeoutError(
            f"resolving {host} took more than {timeout:g}s", channel=channel, step="resolve"
        ) from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def connect(host: str, port: int, *, timeout: float) -> str:
    """Open (and close) a TCP connection to ``host:port``; the address reached.

    Raises:
        ConnectError: refused, unreachable...
        DeliveryTimeoutError: no connection within ``timeout``.
    """
    channel = f"{host}:{port}"
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except asyncio.TimeoutError as exc:
        raise DeliveryTimeoutError(
            f"no TCP connection to {channel} within {timeout:g}s (a firewall may drop it)",
            channel=channel,
            step="connect",
        ) from exc
    except OSError as exc:
        # asyncio words a refusal "Connect call failed (...)": the errno says it better.
        reason = os.strerror(exc.errno) if exc.errno else exc.strerror or str(exc)
        raise ConnectError(
            f"could not connect to {channel}: {reason}",
            channel=channel,
            step="connect",
        ) from exc
    peer = writer.get_extra_info("peername")
    writer.transport.abort()  # nothing to say: the TLS probe has its own connection
    await asyncio.sleep(0)  # lets the loop close the socket now
    return str(peer[0]) if peer else host


async def probe_tls(
    host: str,
    port: int,
    security: Security,
    *,
    ca_file: Path | None,
    timeout: float,
    local_hostname: str | None = None,
) -> TLSReport:
    """Greet, secure the connection as ``security`` says, verify the certificate, QUIT.

    Raises:
        DeliveryError: the subclass the transport raises for the same failure
            (no STARTTLS, an untrusted certificate, a failed handshake...).
    """
    try:
        context = verifying_context(ca_file)
    except ValueError as exc:
        raise CertificateVerifyError(str(exc), step="tls") from exc
    name = local_hostname or ehlo_hostname()
    probe = _Probe(host, port, security, context, timeout, name)
    return await _in_daemon_thread(probe.run)


async def _in_daemon_thread(work: Callable[[], T]) -> T:
    """``work()`` in a thread of its own that nobody waits for once we stop waiting.

    Not :func:`asyncio.to_thread`: on Ctrl-C, ``asyncio.run()`` and then the
    interpreter would wait for its thread, blocked in a read until the
    step's timeout (a minute, say) while the person waits for the prompt.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():  # else cancelled: nobody waits for the outcome
            outcome()

    def run() -> None:
        try:
            result = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            report = functools.partial(settle, functools.partial(future.set_exception, exc))
        else:
            report = functools.partial(settle, functools.partial(future.set_result, result))
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits either
            loop.call_soon_threadsafe(report)

    threading.Thread(target=run, name="smtp-alerts-doctor-probe", daemon=True).start()
    return await future


@dataclass
class _Probe:
    """One TLS probe, in a worker thread; ``step`` tracks where a failure happened."""

    host: str
    port: int
    security: Security
    context: ssl.SSLContext
    timeout: float
    local_hostname: str
    step: str = "greeting"

    @property
    def channel(self) -> str:
        return f"{self.host}:{self.port}"

    def run(self) -> TLSReport:
        smtp: smtplib.SMTP | None = None
        try:
            smtp = self._open()
            return self._converse(smtp)
        except DeliveryError:
            raise
        except Exception as exc:
            raise _error(
                exc, host=self.host, channel=self.channel, step=self.step, timeout=self.timeout
            ) from exc
        finally:
            if smtp is not None:
                smtp.close()

    def _open(self) -> smtplib.SMTP:
        if self.security == "tls":
            self.step = "tls"
            return smtplib.SMTP_SSL(
                self.host,
                self.port,
                local_hostname=self.local_hostname,
                timeout=self.timeout,
                context=self.context,
            )
        return smtplib.SMTP(
            self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
        )

    def _converse(self, smtp: smtplib.SMTP) -> TLSReport:
        self.step = "ehlo"
        _ehlo(smtp)
        offered = smtp.has_extn("starttls")
        if self.security == "starttls":
            self._starttls(smtp, offered=offered)
        auth = tuple(smtp.esmtp_features.get("auth", "").upper().split())
        sock = smtp.sock
        certificate = version = None
        if isinstance(sock, ssl.SSLSocket):
            peer = sock.getpeercert()
            certificate = CertificateInfo.from_peercert(dict(peer), self.host) if peer else None
            version = sock.version()
        self.step = "quit"
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()
        return TLSReport(self.security, version or "", certificate, auth, offered)

    def _starttls(self, smtp: smtplib.SMTP, *, offered: bool) -> None:
        if not offered:
            raise StartTLSNotOfferedError(
                f"{self.host} did not offer STARTTLS, so nothing would be sent: "
                "neither the credentials nor the message",
                channel=self.channel,
                step="starttls",
            )
        self.step = "starttls"
        smtp.starttls(context=self.context)
        self.step = "ehlo"
        _ehlo(smtp)


def _ehlo(smtp: smtplib.SMTP) -> None:
    code, reply = smtp.ehlo()
    if code != 250:  # smtplib returns a refusal instead of raising it
        raise smtplib.SMTPResponseException(code, reply)


def _error(exc: Exception, *, host: str, channel: str, step: str, timeout: float) -> DeliveryError:
    """The transport's error class for a failure of the stdlib probe."""
    if isinstance(exc, ssl.SSLError):
        return tls_failure(exc, host=host, channel=channel, step=step)
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return DeliveryTimeoutError(
            f"{host} did not answer within {timeout:g}s (at {step})", channel=channel, step=step
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
        kind = TemporaryReplyError if 400 <= exc.smtp_code < 500 else PermanentReplyError
        return kind(
            f"{host} answered {exc.smtp_code} at {step}: {one_line(reply)}",
            channel=channel,
            step=step,
            code=exc.smtp_code,
            reply=reply,
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return ConnectError(f"{host} closed the connection at {step}", channel=channel, step=step)
    if isinstance(exc, OSError):
        verb = "could not connect to" if step in ("greeting", "tls") else "lost the connection to"
        return ConnectError(f"{verb} {channel}: {exc.strerror or exc}", channel=channel, step=step)
    return DeliveryError(
        f"the exchange with {host} failed at {step} ({type(exc).__name__})",
        channel=channel,
        step=step,
    )


def _name(rdns: Any) -> dict[str, str]:
    """A certificate name (tuple of RDNs of ``(key, value)`` pairs) as a flat dict."""
    return {str(key): str(value) for rdn in rdns for key, value in rdn}


def _matches(name: str, host: str) -> bool:
    """Whether the SAN entry ``DNS:x`` / ``IP:x`` covers ``host`` (one wildcard label)."""
    kind, _, value = name.partition(":")
    if kind == "IP":
        try:
            return ipaddress.ip_address(value) == ipaddress.ip_address(host)
        except ValueError:
            return False
    pattern, host = value.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == host
