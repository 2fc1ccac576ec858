"""``smtp-alerts doctor``: does the alert path work, step by step, and if not, why.

``doctor`` checks, one line per step: the settings; the host's addresses;
a TCP connection to the configured port and to the other one (587 and 465,
or ``ALTERNATE_PORT``); STARTTLS or TLS and the certificate on each; one
login with the configured credential, through the real SMTP transport; with
``--send``, a test message (sent on the login's connection, so a run makes
exactly one AUTH attempt). A failed step prints Gmail's diagnosis under it
and skips the steps that depend on it; the exit status is 1 when any step
needed for sending failed, 2 for unusable settings.

The steps are here; the network probes are in :mod:`.probes`, the report
they fill (its lines, marks and exit status) in :mod:`.report`, and
``send-test`` in :mod:`.send_test`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TextIO

from .._util.net import Security, security_for_port
from ..errors import DeliveryError
from .probes import CertificateInfo, TLSReport, connect, probe_tls, resolve
from .report import Report, UnusableSettingsError, ms_since, report_failure, run_checks
from .send_test import build_test_message, run_send_test

if TYPE_CHECKING:
    from ..settings import Settings
    from ..transports.smtp import SMTPTransport
    from ..transports.xoauth2 import TokenProvider


__all__ = ["CERT_EXPIRY_WARNING_DAYS", "DEFAULT_STEP_TIMEOUT", "run_doctor"]

DEFAULT_STEP_TIMEOUT = 15.0
"""Seconds each doctor step may take."""
CERT_EXPIRY_WARNING_DAYS = 14
"""A certificate expiring sooner than this many days gets a warning."""

# The protocol steps after which the message itself is being sent; a failure
# at any other step is a failure to connect or log in.
_SENDING_STEPS = ("mail", "rcpt", "data")


def run_doctor(
    *,
    send: bool = False,
    only_send: bool = False,
    timeout: float = DEFAULT_STEP_TIMEOUT,
    token_provider: TokenProvider | None = None,
    stream: TextIO | None = None,
) -> int:
    """Run ``smtp-alerts doctor`` (or, with ``only_send``, ``send-test``).

    Args:
        send: also send a test message (``doctor --send``).
        only_send: ``send-test``: send one message through every channel in
            turn, until one takes it, instead of the step-by-step checks.
        timeout: seconds per step for ``doctor``; in all for ``send-test``.
        token_provider: for a program that logs in with XOAUTH2 and runs the
            doctor itself: its token provider, used instead of a password.
        stream: where to write; standard output when omitted.

    Returns:
        The exit status: 0 all good, 1 a needed step failed, 2 unusable settings.
    """
    if only_send:
        return run_send_test(timeout=timeout, token_provider=token_provider, stream=stream)

    async def check(settings: Settings, report: Report) -> int:
        return await _doctor(settings, report, timeout, token_provider, send=send)

    return run_checks(check, timeout=timeout, token_provider=token_provider, stream=stream)


# -- doctor ----------------------------------------------------------------------------


async def _doctor(
    settings: Settings,
    report: Report,
    timeout: float,
    token_provider: TokenProvider | None,
    *,
    send: bool,
) -> int:
    host, port = settings.host, settings.port
    started = time.perf_counter()
    try:
        async with report.waiting("resolve", f"looking up {host}"):
            addresses = await resolve(host, port, timeout=timeout)
    except DeliveryError as error:
        report_failure(report, settings, "resolve", host, started=started, error=error)
        report.skip("connect", "skipped: the host name does not resolve")
        return _summary(report)
    report.ok("resolve", f"{host} -> {', '.join(addresses)}", ms=ms_since(started))

    primary = await _check_port(settings, report, port, settings.effective_security, timeout)
    other = _other_port(settings)
    other_works: TLSReport | None = None
    if other is not None:
        used = other == settings.effective_alternate_port
        role = (
            " (the other port: tried when the first fails)"
            if used
            else " (the other standard port: unused unless SMTP_ALERTS_ALTERNATE_PORT names it)"
        )
        security = security_for_port(other)
        other_works = await _check_port(settings, report, other, security, timeout, role=role)
    if primary is not None:
        await _login(settings, report, timeout, token_provider, send=send, offered=primary.auth)
    else:
        report.skip("login", f"skipped: {host}:{port} is not usable, so no login was tried")
        if other_works:
            report.info(
                "hint",
                f"{host}:{other} works where {port} does not: SMTP_ALERTS_PORT={other} (with "
                "SMTP_ALERTS_SECURITY unset) would use it.",
            )
    _list_other_channels(settings, report)
    return _summary(report)


async def _check_port(
    settings: Settings,
    report: Report,
    port: int,
    security: Security,
    timeout: float,
    *,
    role: str = "",
) -> TLSReport | None:
    """Connect, then check STARTTLS / TLS and the certificate; what was seen, None on a failure.

    With a ``role`` (the other port), a failure is only a warning.
    """
    host = settings.host
    where = f"{host}:{port}"

    def failed(label: str, error: DeliveryError, started: float) -> None:
        if role:
            report.warn(label, f"{where}{role}: {error.message}", ms=ms_since(started))
        else:
            report_failure(report, settings, label, where, started=started, error=error)

    started = time.perf_counter()
    try:
        async with report.waiting("connect", f"connecting to {where}"):
            peer = await connect(host, port, timeout=timeout)
    except DeliveryError as error:
        failed("connect", error, started)
        return None
    shown = f" ({peer})" if peer != host else ""
    report.ok("connect", f"{where}{shown}{role}", ms=ms_since(started))

    label = "encryption" if security == "none" else security
    started = time.perf_counter()
    try:
        async with report.waiting(label, f"greeting, {label} and certificate of {where}"):
            tls = await probe_tls(host, port, security, ca_file=settings.ca_file, timeout=timeout)
    except DeliveryError as error:
        failed(label, error, started)
        return None
    _report_tls(report, settings, where, tls, started)
    return tls


def _report_tls(
    report: Report, settings: Settings, where: str, tls: TLSReport, started: float
) -> None:
    auth = f"; offers AUTH {' '.join(tls.auth)}" if tls.auth else "; offers no AUTH"
    if tls.security == "none":
        hint = " although the server offers STARTTLS" if tls.starttls_offered else ""
        report.warn(
            "encryption",
            f"{where}: none (SMTP_ALERTS_SECURITY=none){hint}: mail and login travel in "
            f"clear text{auth}",
            ms=ms_since(started),
        )
        return
    how = "STARTTLS" if tls.security == "starttls" else "TLS from the first byte"
    report.ok(tls.security, f"{where}: {how}, {tls.version}{auth}", ms=ms_since(started))
    if tls.certificate is not None:
        _report_certificate(report, settings.host, tls.certificate)


def _report_certificate(report: Report, host: str, cert: CertificateInfo) -> None:
    days = (cert.not_after - time.time()) / 86_400
    expiry = time.strftime("%Y-%m-%d", time.gmtime(cert.not_after))
    name = f"CN={cert.subject}" if cert.subject else "no subject name"
    valid_for = f"valid for {host}" + (f" ({cert.matched})" if cert.matched else "")
    text = f"{name}, {valid_for}; issued by {cert.issuer}; expires in {days:.0f} days ({expiry})"
    if days < CERT_EXPIRY_WARNING_DAYS:
        report.warn("certificate", f"{text}: soon")
    else:
        report.ok("certificate", text)


async def _login(
    settings: Settings,
    report: Report,
    timeout: float,
    token_provider: TokenProvider | None,
    *,
    send: bool,
    offered: tuple[str, ...],
) -> None:
    """One login through the real transport; with ``send``, a test message on it."""
    transport = _transport(settings, timeout, token_provider)
    has_secret = token_provider is not None or (
        settings.password is not None or settings.password_file is not None
    )
    if settings.username is not None and not has_secret:
        report.fail(
            "login",
            f"SMTP_ALERTS_USERNAME is {settings.username} but no password is set: set "
            "SMTP_ALERTS_PASSWORD or SMTP_ALERTS_PASSWORD_FILE (for Gmail, an app password); "
            "for a server that takes mail without a login, set SMTP_ALERTS_FROM instead of "
            "USERNAME",
        )
        report.skip("send", "skipped: no login, so no test message")
        return
    who = settings.username if has_secret else None
    if who is None:
        _no_login(settings, report, offered)
    if send:
        await _login_and_send(settings, report, transport, who)
        return
    if who is not None:
        started = time.perf_counter()
        try:
            async with report.waiting("login", f"logging in as {who} at {transport.name}"):
                await transport.check_login()
        except DeliveryError as error:
            report_failure(
                report,
                settings,
                "login",
                f"{who} at {transport.name}",
                started=started,
                error=error,
            )
            return
        report.ok("login", f"{who} accepted by {transport.name}", ms=ms_since(started))
    report.skip("send", "no test message sent (add --send to send one)")


def _no_login(settings: Settings, report: Report, offered: tuple[str, ...]) -> None:
    """No login is configured: fine for a relay that takes mail without one, not for Gmail."""
    if settings.host == "smtp.gmail.com":
        report.fail(
            "login",
            "none configured, and Gmail takes no mail without one: set SMTP_ALERTS_USERNAME "
            "and SMTP_ALERTS_PASSWORD (an app password)",
        )
    elif offered:
        report.warn(
            "login",
            f"none configured, but {settings.host} offers AUTH {' '.join(offered)}: a server "
            "that offers a login usually requires one; `smtp-alerts send-test` shows "
            "whether it takes mail without one",
        )
    else:
        report.info("login", "none configured (no SMTP_ALERTS_USERNAME); the server asks for none")


async def _login_and_send(
    settings: Settings, report: Report, transport: SMTPTransport, who: str | None
) -> None:
    """Log in and send on one connection: one AUTH, whatever happens."""
    message = build_test_message(settings, command="doctor --send")
    started = time.perf_counter()
    try:
        async with report.waiting("send", f"logging in and sending at {transport.name}"):
            await transport.send(message)
    except DeliveryError as error:
        if who is not None and not _while_sending(error):
            report_failure(
                report,
                settings,
                "login",
                f"{who} at {transport.name}",
                started=started,
                error=error,
            )
            report.skip("send", "skipped: no login, so no test message")
            return
        if who is not None:
            report.ok("login", f"{who} accepted by {transport.name}")
        report_failure(
            report,
            settings,
            "send",
            f"test message to {transport.name}",
            started=started,
            error=error,
        )
        return
    finally:
        await transport.aclose()
    if who is not None:
        report.ok("login", f"{who} accepted by {transport.name}")
    recipients = ", ".join(message.recipients)
    report.ok(
        "send", f"test message {message.message_id} accepted for {recipients}", ms=ms_since(started)
    )


def _list_other_channels(settings: Settings, report: Report) -> None:
    """Backup server and apprise URLs: named, not checked (``send-test`` tries them)."""
    if settings.backup_host is not None:
        login = f", login {settings.backup_username}" if settings.backup_username else ""
        report.info(
            "backup",
            f"{settings.backup_host}:{settings.backup_port} "
            f"({settings.effective_backup_security}{login}): not checked here; "
            "`smtp-alerts send-test` tries every channel",
        )
    if settings.fallback_urls:
        # Only the schemes: the rest of an apprise URL is often a token.
        schemes = ", ".join(
            dict.fromkeys(
                url.get_secret_value().partition("://")[0] for url in settings.fallback_urls
            )
        )
        report.info(
            "fallback",
            f"{len(settings.fallback_urls)} apprise URL(s) ({schemes}): not checked here; "
            "`smtp-alerts send-test` tries every channel",
        )


def _summary(report: Report) -> int:
    if report.failed:
        report.fail("result", f"{report.failed} step(s) failed; the fix is printed under each")
        return 1
    if report.warned:
        # Not "can be sent": a warning is something the doctor could not confirm.
        report.ok("result", f"no step failed; {report.warned} warning(s) above to read")
    else:
        report.ok("result", "alerts can be sent with these settings")
    return 0


# -- helpers ---------------------------------------------------------------------------


def _transport(
    settings: Settings, timeout: float, token_provider: TokenProvider | None
) -> SMTPTransport:
    from .._delivery.channels import smtp_channel  # noqa: PLC0415 - aiosmtplib loads only here

    try:
        return smtp_channel(
            settings.model_copy(update={"timeout": timeout}), token_provider=token_provider
        )
    except ValueError as exc:
        raise UnusableSettingsError(str(exc)) from exc


def _while_sending(error: DeliveryError) -> bool:
    """Whether ``error`` came after the login, while the message itself was sent."""
    if error.step in _SENDING_STEPS:
        return True
    return error.step == "deadline" and any(
        f"at {step})" in error.message for step in _SENDING_STEPS
    )


def _other_port(settings: Settings) -> int | None:
    """The second port to check: the chain's alternate, else Gmail's other standard port.

    ``ALTERNATE_PORT=0`` turns it off. On a host other than Gmail with neither
    587 nor 465 configured there is no standard other port to try.
    """
    if settings.alternate_port == 0:
        return None
    other = settings.effective_alternate_port
    if other is None:
        other = {587: 465, 465: 587}.get(settings.port)
    return other if other != settings.port else None
