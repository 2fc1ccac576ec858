"""The one way smtp-alerts builds a TLS client context: verified, always."""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["verifying_context"]


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
