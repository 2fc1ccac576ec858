"""The delivery channels the settings describe, in the order they are tried.

1. ``HOST:PORT`` (Gmail on 587, STARTTLS);
2. ``HOST:ALTERNATE_PORT`` (Gmail on 465, for networks that block 587);
3. the backup SMTP server, ``BACKUP_HOST``, with its own port, security and
   credentials;
4. the apprise URLs of ``FALLBACK_URLS`` (apprise loads only if there are some).

What none of them takes stays in the spool. This is where settings become
transports: the transports themselves know no settings. A channel that cannot
be built is one failed channel (its sends fail and say why), never a failure
of the others or of the spool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .._util.clock import SYSTEM_CLOCK, Clock
from .._util.net import security_for_port
from ..errors import DeliveryError
from ..models import OutgoingMessage
from ..transports import Transport

if TYPE_CHECKING:
    from ..settings import Settings
    from ..transports.smtp import SMTPTransport
    from ..transports.xoauth2 import TokenProvider

__all__ = ["build_channels", "prepare_channels", "smtp_channel"]


def prepare_channels(*, fallback: bool) -> None:
    """What must happen before the interpreter's shutdown can begin; cheap.

    Called from the caller's thread as the engine starts: a short script may
    log one error and exit while the channels are still being built on the
    engine's thread, and apprise must still be able to load then. Some of
    apprise's plugins import ``concurrent.futures.thread``, which registers a
    shutdown hook as it loads, and that raises once the interpreter's shutdown
    has begun; so it is imported here (a cheap standard-library import).

    Args:
        fallback: whether ``FALLBACK_URLS`` names any URL.
    """
    if fallback:
        import concurrent.futures.thread  # noqa: F401, PLC0415 - for its side effect only


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
    channels: list[Transport] = []

    def add(name: str, build: Callable[[], Transport]) -> Transport:
        try:
            channel = build()
        except Exception as exc:  # noqa: BLE001 - one failed channel, never the engine
            on_problem(f"smtp-alerts: the {name} channel cannot be used: {exc}")
            channel = _Unusable(name, f"{type(exc).__name__}: {exc}")
        channels.append(channel)
        return channel

    primary = add(
        f"{settings.host}:{settings.port}",
        lambda: smtp_channel(settings, token_provider=token_provider, clock=clock),
    )
    alternate = settings.effective_alternate_port
    if alternate is not None and alternate != settings.port:
        # For networks that block one of Gmail's ports. The same account, so
        # the same credential: refused on one port, refused on both.
        other = add(
            f"{settings.host}:{alternate}",
            lambda: smtp_channel(
                settings, token_provider=token_provider, clock=clock, port=alternate
            ),
        )
        other.credential = primary.credential
    backup = settings.backup_host
    if backup is not None:
        add(f"{backup}:{settings.backup_port}", lambda: _backup_channel(settings, backup))
    if settings.fallback_urls:
        add("apprise", lambda: _fallback_channel(settings, on_problem))
    return channels


def smtp_channel(
    settings: Settings,
    *,
    token_provider: TokenProvider | None = None,
    clock: Clock = SYSTEM_CLOCK,
    port: int | None = None,
) -> SMTPTransport:
    """The SMTP transport for ``HOST``, as the settings describe it.

    The password is read through :meth:`Settings.read_password` on every new
    connection, so a rotated ``PASSWORD_FILE`` is picked up without a restart.

    Args:
        settings: the settings.
        token_provider: use AUTH XOAUTH2 with tokens from this callable; the
            settings must then hold no password.
        clock: the current time, for token lifetimes.
        port: another port of ``HOST`` (the alternate), secured as that port
            speaks (465 TLS, else STARTTLS) whatever ``SECURITY`` says.

    Returns:
        The transport.

    Raises:
        ValueError: the settings do not make a usable transport (an unreadable
            CA file...).
    """
    from ..transports.smtp import SMTPTransport  # noqa: PLC0415 - aiosmtplib loads with the engine

    has_password = settings.password is not None or settings.password_file is not None
    return SMTPTransport(
        host=settings.host,
        port=settings.port if port is None else port,
        security=settings.effective_security if port is None else security_for_port(port),
        username=settings.username,
        password=settings.read_password if has_password else None,
        token_provider=token_provider,
        ca_file=settings.ca_file,
        timeout=settings.timeout,
        clock=clock,
    )


def _backup_channel(settings: Settings, host: str) -> SMTPTransport:
    """The backup server: its own port, security and account; the primary's CA file."""
    from ..transports.smtp import SMTPTransport  # noqa: PLC0415 - aiosmtplib loads with the engine

    secret = settings.backup_password
    return SMTPTransport(
        host=host,
        port=settings.backup_port,
        security=settings.effective_backup_security,
        username=settings.backup_username,
        password=secret.get_secret_value() if secret is not None else None,
        ca_file=settings.ca_file,
        timeout=settings.timeout,
    )


def _fallback_channel(settings: Settings, on_problem: Callable[[str], None]) -> Transport:
    """One apprise transport for every URL of ``FALLBACK_URLS``, already loaded."""
    from ..transports.apprise import AppriseTransport  # noqa: PLC0415 - only with URLs

    urls = [url.get_secret_value() for url in settings.fallback_urls]
    fallback = AppriseTransport(urls, timeout=settings.timeout)
    # Load apprise now, on a thread of its own: a URL it cannot use is
    # reported at start-up, and the SMTP channels need not wait for it.
    fallback.start_loading(
        lambda problem: on_problem(
            f"SMTP_ALERTS_FALLBACK_URLS: {problem}; those channels are not used"
        )
    )
    return fallback


class _Unusable(Transport):
    """A channel that could not be built: each send fails and says why."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self._reason = reason

    async def send(self, _message: OutgoingMessage, /) -> None:
        raise DeliveryError(f"this channel could not be set up: {self._reason}", channel=self.name)
