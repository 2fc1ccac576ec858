"""TLS for every client smtp-alerts opens: one verifying context, one reading of its failures."""

from __future__ import annotations

import ssl
from pathlib import Path

from ..errors import CertificateVerifyError, ConnectError, DeliveryError, TLSError

__all__ = ["tls_failure", "verifying_context"]


def verifying_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """A client context: the system's trust store plus ``ca_file``; names and chains checked.

    There is no way to turn verification off: a server whose certificate is
    not trusted gets nothing (``CA_FILE`` adds a private or intercepting CA).

    Raises:
        ValueError: ``ca_file`` cannot be loaded.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load CA certificates from {str(ca_file)!r}: {exc}") from exc
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def tls_failure(failure: ssl.SSLError, *, host: str, channel: str, step: str) -> DeliveryError:
    """The library's error for a failed TLS handshake, whichever SMTP client saw it.

    Args:
        failure: the :mod:`ssl` error.
        host: the server's name, for the message.
        channel: the channel's name.
        step: the protocol step (``starttls``, ``connect``...).
    """
    if isinstance(failure, ssl.SSLCertVerificationError):
        return CertificateVerifyError(
            f"the certificate of {host} could not be verified "
            f"({failure.verify_message or failure.reason}); set "
            "SMTP_ALERTS_CA_FILE if the server uses a private CA",
            channel=channel,
            step=step,
        )
    if isinstance(failure, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return ConnectError(
            f"{host} closed the connection during the TLS handshake", channel=channel, step=step
        )
    return TLSError(
        f"TLS with {host} failed ({failure.reason or type(failure).__name__})",
        channel=channel,
        step=step,
    )
