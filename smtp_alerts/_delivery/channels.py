"""The delivery channels the settings describe, in the order they are tried.

1. ``HOST:PORT`` (Gmail on 587, STARTTLS);
2. ``HOST:ALTERNATE_PORT`` (Gmail on 465, for networks that block 587);
3. the backup SMTP server, ``BACKUP_HOST``, with its own port, security and
   credentials;
4. the apprise URLs of ``FALLBACK_URLS`` (apprise loads only if there are some).

What none of them takes stays in the spool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .._util.clock import SYSTEM_CLOCK, Clock
from ..settings import Settings
from ..transports import Transport

if TYPE_CHECKING:
    from ..transports.xoauth2 import TokenProvider

__all__ = ["build_channels"]


def build_channels(
    settings: Settings,
    *,
    token_provider: TokenProvider | None = None,
    on_problem: Callable[[str], None] = print,
    clock: Clock = SYSTEM_CLOCK,
) -> list[Transport]:
    """The transports for every channel the settings name, in order.

    Args:
        settings: the settings.
        token_provider: XOAUTH2 tokens for the primary account (and its other port).
        on_problem: told about a channel that cannot be used as configured.
        clock: the current time, for the OAuth tokens' lifetimes.

    Returns:
        The transports; at least the primary SMTP one.
    """
    from ..transports.smtp import SMTPTransport  # noqa: PLC0415 - aiosmtplib loads with the engine

    primary = SMTPTransport.from_settings(settings, token_provider=token_provider, clock=clock)
    channels: list[Transport] = [primary]
    alternate = settings.effective_alternate_port
    if alternate is not None and alternate != settings.port:
        # For networks that block one of Gmail's ports; the same account.
        channels.append(
            SMTPTransport.from_settings(
                settings, token_provider=token_provider, clock=clock, port=alternate
            )
        )
    if settings.backup_host is not None:
        secret = settings.backup_password
        channels.append(
            SMTPTransport(
                host=settings.backup_host,
                port=settings.backup_port,
                security=settings.effective_backup_security,
                username=settings.backup_username,
                password=secret.get_secret_value() if secret is not None else None,
                ca_file=settings.ca_file,
                timeout=settings.timeout,
            )
        )
    if settings.fallback_urls:
        from ..transports.apprise import AppriseTransport  # noqa: PLC0415 - only with URLs

        urls = [url.get_secret_value() for url in settings.fallback_urls]
        fallback = AppriseTransport(urls, timeout=settings.timeout)
        # Load apprise now (we run on a worker thread at engine start), so a URL
        # it cannot use is reported at start-up rather than at the first failure.
        try:
            fallback.load()
        except ValueError as exc:
            on_problem(f"SMTP_ALERTS_FALLBACK_URLS: {exc}; those channels are not used")
        channels.append(fallback)
    return channels
