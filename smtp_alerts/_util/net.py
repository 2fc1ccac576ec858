"""Where a connection goes and how it is secured: small values shared by settings and clients.

The settings validate with them, the SMTP transport and the doctor's probes
connect with them; none of them looks anything up on the network.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Literal

__all__ = ["Security", "ehlo_hostname", "is_ehlo_name", "is_loopback", "security_for_port"]

Security = Literal["starttls", "tls", "none"]
"""How a connection is secured: STARTTLS (mandatory), TLS from the first byte, or none."""


def security_for_port(port: int) -> Security:
    """The security a port speaks when none is set: ``tls`` on 465, else ``starttls``."""
    return "tls" if port == 465 else "starttls"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address (no DNS look-up)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_ehlo_name(name: str) -> bool:
    """Whether ``name`` fits on the EHLO line: printable ASCII, no spaces."""
    return bool(name) and all(33 <= ord(ch) < 127 for ch in name)


def ehlo_hostname() -> str:
    """The name a client says EHLO with: this machine's host name, else ``localhost``."""
    # Not socket.getfqdn() (smtplib's and aiosmtplib's default): it may block on
    # DNS, and aiosmtplib would run it in a worker thread, which is refused
    # during interpreter shutdown.
    name = socket.gethostname()
    return name if is_ehlo_name(name) else "localhost"
