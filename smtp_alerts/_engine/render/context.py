"""Who sends a rendering, to whom, from which host, and under which size cap.

:class:`RenderContext` is everything a rendering needs besides the digest. Its
addresses are checked when it is made, so the recipients and the sender can
never carry a header or an extra recipient, however the context was built.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..._environment import QuickSettings
    from ...settings import Settings

__all__ = ["DEFAULT_MAX_BYTES", "MIN_MAX_BYTES", "RenderContext"]

DEFAULT_MAX_BYTES = 1_000_000
"""Default cap on the serialised message: far below Gmail's 25 MB, quick to send."""

MIN_MAX_BYTES = 65_536
"""Smallest accepted ``max_bytes``: the tightest rendering (headers, up to 100
recipients, notices, summary, no rows) always fits in it."""

# Same shape as the settings' check: local@domain, no spaces, separators,
# quotes, brackets or controls, so an address cannot add a recipient or a header.
_ADDRESS = re.compile(
    r"^[^@\s<>,;:\"'()\[\]\\\x00-\x1f\x7f]+@[^@\s<>,;:\"'()\[\]\\\x00-\x1f\x7f]+$"
)


def _short_hostname() -> str:
    # gethostname() reads a kernel value; getfqdn() would ask DNS, which can block.
    return socket.gethostname().split(".", 1)[0] or "localhost"


@dataclass(frozen=True)
class RenderContext:
    """Everything a rendering needs besides the digest itself.

    Args:
        sender: the From: and envelope sender address.
        recipients: the envelope recipients; listed in To: when there are at most 100.
        hostname: short name of the machine that raised the alerts.
        subject_prefix: put before every subject; None means ``[hostname]``,
            an empty string means no prefix.
        max_bytes: cap on the whole serialised message, at least 64 KiB.

    Raises:
        ValueError: an address is not a plain ``local@domain`` address, there is
            no recipient, or ``max_bytes`` is below 64 KiB.
    """

    sender: str
    recipients: tuple[str, ...]
    hostname: str
    subject_prefix: str | None = None
    max_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        # Checked here and not only in Settings: a context built by hand must
        # not be able to carry a header or an extra recipient either.
        for address in (self.sender, *self.recipients):
            if not _ADDRESS.match(address):
                raise ValueError(f"{address!r} is not a plain email address (local@domain)")
        if not self.recipients:
            raise ValueError("a RenderContext needs at least one recipient")
        if self.max_bytes < MIN_MAX_BYTES:
            raise ValueError(
                f"max_bytes must be at least {MIN_MAX_BYTES:,}, not {self.max_bytes:,}"
            )

    @classmethod
    def from_settings(
        cls, settings: Settings | QuickSettings, *, hostname: str | None = None
    ) -> RenderContext:
        """Build the context for the configured sender, recipients and prefix.

        Args:
            settings: the library's settings (or, while an engine starts, the
                quick check's values).
            hostname: the host name to show; defaults to the short form of
                :func:`socket.gethostname`.

        Returns:
            A context with the default ``max_bytes``.
        """
        return cls(
            sender=settings.sender,
            recipients=tuple(settings.to),
            hostname=hostname if hostname is not None else _short_hostname(),
            subject_prefix=settings.subject_prefix,
        )
