"""``smtp-alerts doctor`` and ``smtp-alerts send-test``: does the alert path work, and if not, why.

``doctor`` checks, one line per step: the settings; the host's addresses;
a TCP connection to the configured port and to the other one (587 and 465,
or ``ALTERNATE_PORT``); STARTTLS or TLS and the certificate on each; one
login with the configured credential, through the real SMTP transport; with
``--send``, a test message (sent on the login's connection, so a run makes
exactly one AUTH attempt). A failed step prints Gmail's diagnosis under it
and skips the steps that depend on it; the exit status is 1 when any step
needed for sending failed, 2 for unusable settings.

``send-test`` sends one test message through the whole delivery chain the
engine uses (both ports, the backup server, the apprise URLs) and says which
channel took it.

The secret is never printed: errors carry none (the transport scrubs
them), the settings line says only where the password comes from, and every
line is scrubbed once more before it is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
import textwrap
import time
from typing import TYPE_CHECKING, NamedTuple, TextIO

from .._delivery.diagnosis import diagnose
from .._util.net import Security, security_for_port
from .._util.smtp_reply import one_line
from ..errors import ConfigurationError, DeliveryError
from ..settings import Settings
from .probes import CertificateInfo, TLSReport, connect, probe_tls, resolve

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from .._delivery.chain import Outcome
    from .._delivery.diagnosis import Diagnosis
    from ..models import OutgoingMessage
    from ..transports.smtp import SMTPTransport
    from ..transports.xoauth2 import TokenProvider


__all__ = [
    "CERT_EXPIRY_WARNING_DAYS",
    "DEFAULT_STEP_TIMEOUT",
    "Report",
    "build_test_message",
    "run_doctor",
]

DEFAULT_STEP_TIMEOUT = 15.0
"""Seconds each doctor step may take."""
CERT_EXPIRY_WARNING_DAYS = 14
"""A certificate expiring sooner than this many days gets a warning."""

_LABEL_WIDTH = 12
_WRAP = 100
# The protocol steps after which the message itself is being sent; a failure
# at any other step is a failure to connect or log in.
_SENDING_STEPS = ("mail", "rcpt", "data")
# Secrets shorter than this are not scrubbed from output by substitution:
# replacing a two-letter "password" would garble every line (and such a
# password never appears anyway; the scrubbing is a second line of defence).
_MIN_SCRUB = 6


class _Marks(NamedTuple):
    ok: str
    fail: str
    warn: str
    info: str
    skip: str


_UNICODE_MARKS = _Marks("✔", "✘", "!", "·", "-")
_ASCII_MARKS = _Marks("[ok]  ", "[FAIL]", "[warn]", "[info]", "[skip]")


class Report:
    """Writes one line per step, with a mark, and counts failures and warnings.

    Args:
        stream: where to write; its encoding decides between ``✔``/``✘`` and ASCII.
        secrets: strings never to write (replaced by ``********``).
    """

    def __init__(self, stream: TextIO, secrets: Sequence[str] = ()) -> None:
        self._stream = stream
        self._secrets = tuple(
            dict.fromkeys(
                form
                for secret in secrets
                for form in (secret, secret.replace(" ", ""))
                if len(form) >= _MIN_SCRUB
            )
        )
        self.marks = _UNICODE_MARKS if _can_encode(stream, "✔✘·") else _ASCII_MARKS
        self.failed = 0
        self.warned = 0

    def ok(self, label: str, text: str, *, ms: float | None = None) -> None:
        """A step that passed."""
        self._line(self.marks.ok, label, text, ms)

    def fail(
        self,
        label: str,
        text: str,
        *,
        ms: float | None = None,
        why: Diagnosis | None = None,
        reply: str = "",
    ) -> None:
        """A step that failed, with the server's reply and the diagnosis under it."""
        self.failed += 1
        self._line(self.marks.fail, label, text, ms)
        if reply:
            self._indented("server said: ", one_line(reply))
        if why is not None:
            self._diagnosis(why)

    def warn(
        self, label: str, text: str, *, ms: float | None = None, why: Diagnosis | None = None
    ) -> None:
        """Something worth knowing that does not stop alerts from being sent."""
        self.warned += 1
        self._line(self.marks.warn, label, text, ms)
        if why is not None:
            self._diagnosis(why)

    def info(self, label: str, text: str) -> None:
        """A fact, not a check."""
        self._line(self.marks.info, label, text, None)

    def skip(self, label: str, text: str) -> None:
        """A step not taken because one it depends on failed."""
        self._line(self.marks.skip, label, text, None)

    def _diagnosis(self, why: Diagnosis) -> None:
        self._indented(f"{why.code}: ", why.problem)
        self._indented("fix: ", why.fix)

    def _indented(self, head: str, text: str) -> None:
        indent = " " * (len(self.marks.ok) + 1 + _LABEL_WIDTH + 1)
        self._write(
            textwrap.fill(
                text,
                width=_WRAP,
                initial_indent=indent + head,
                subsequent_indent=indent + " " * len(head),
                break_long_words=False,
                break_on_hyphens=False,
            )
        )

    def _line(self, mark: str, label: str, text: str, ms: float | None) -> None:
        timing = f"  ({ms:.0f} ms)" if ms is not None else ""
        self._write(f"{mark} {label:<{_LABEL_WIDTH}} {text}{timing}")

    def _write(self, line: str) -> None:
        for secret in self._secrets:
            line = line.replace(secret, "********")
        print(line, file=self._stream, flush=True)


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
    out = stream if stream is not None else sys.stdout
    if not timeout > 0:
        Report(out).fail("settings", "--timeout must be a positive number of seconds")
        return 2
    try:
        settings = Settings()
    except ConfigurationError as exc:
        report = Report(out)
        lines = [line.strip() for line in str(exc).splitlines()[1:]] or [str(exc)]
        for line in lines:
            report.fail("settings", line)
        return 2
    report = Report(out, _secrets_of(settings))
    report.ok("settings", _describe(settings, oauth=token_provider is not None))
    try:
        with _library_logs_silenced():
            if only_send:
                return asyncio.run(_send_test(settings, report, timeout, token_provider))
            return asyncio.run(_doctor(settings, report, timeout, token_provider, send=send))
    except _UnusableSettingsError as exc:
        report.fail("settings", str(exc))
        return 2


def build_test_message(settings: Settings, *, command: str = "send-test") -> OutgoingMessage:
    """A test message, rendered like every digest (headers, both parts, Auto-Submitted).

    Args:
        settings: who sends it, and to whom.
        command: the command named in it.

    Returns:
        The message, with a Message-ID of its own.
    """
    from .._engine.render import RenderContext, render  # noqa: PLC0415 - only when a message is sent
    from ..models import Digest  # noqa: PLC0415

    context = RenderContext.from_settings(settings)
    notice = (
        "smtp-alerts test message: alerts from this machine reach this address "
        f"(sent by `smtp-alerts {command}`)"
    )
    now = time.time()
    digest = Digest(
        group="smtp-alerts-test",
        incident_id=f"test-{int(now)}-{secrets.token_hex(4)}",
        sequence=1,
        problems=(),
        created=now,
        reason="test",
        notices=(notice,),
    )
    return render(digest, context)


# -- doctor ----------------------------------------------------------------------------


class _UnusableSettingsError(Exception):
    """The settings load, but a transport cannot be built from them (a bad CA file...)."""


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
        addresses = await resolve(host, port, timeout=timeout)
    except DeliveryError as error:
        _failed(report, settings, "resolve", host, started=started, error=error)
        report.skip("connect", "skipped: the host name does not resolve")
        return _summary(report)
    report.ok("resolve", f"{host} -> {', '.join(addresses)}", ms=_ms(started))

    primary = await _check_port(settings, report, port, settings.effective_security, timeout)
    other = _other_port(settings)
    other_works = False
    if other is not None:
        used = other == settings.effective_alternate_port
        role = (
            " (the other port: tried when the first fails)"
            if used
            else " (the other standard port: unused unless SMTP_ALERTS_ALTERNATE_PORT names it)"
        )
        security = security_for_port(other)
        other_works = await _check_port(settings, report, other, security, timeout, role=role)
    if primary:
        await _login(settings, report, timeout, token_provider, send=send)
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
) -> bool:
    """Connect, then check STARTTLS / TLS and the certificate; whether all passed.

    With a ``role`` (the other port), a failure is only a warning.
    """
    host = settings.host
    where = f"{host}:{port}"

    def failed(label: str, error: DeliveryError, started: float) -> bool:
        if role:
            report.warn(label, f"{where}{role}: {error.message}", ms=_ms(started))
        else:
            _failed(report, settings, label, where, started=started, error=error)
        return False

    started = time.perf_counter()
    try:
        peer = await connect(host, port, timeout=timeout)
    except DeliveryError as error:
        return failed("connect", error, started)
    shown = f" ({peer})" if peer != host else ""
    report.ok("connect", f"{where}{shown}{role}", ms=_ms(started))

    label = "encryption" if security == "none" else security
    started = time.perf_counter()
    try:
        tls = await probe_tls(host, port, security, ca_file=settings.ca_file, timeout=timeout)
    except DeliveryError as error:
        return failed(label, error, started)
    _report_tls(report, settings, where, tls, started)
    return True


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
            ms=_ms(started),
        )
        return
    how = "STARTTLS" if tls.security == "starttls" else "TLS from the first byte"
    report.ok(tls.security, f"{where}: {how}, {tls.version}{auth}", ms=_ms(started))
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
) -> None:
    """One login through the real transport; with ``send``, a test message on it."""
    transport = _transport(settings, timeout, token_provider)
    has_secret = token_provider is not None or (
        settings.password is not None or settings.password_file is not None
    )
    who = settings.username if has_secret else None
    if who is None:
        report.info("login", "none configured (no SMTP_ALERTS_USERNAME and PASSWORD)")
    if send:
        await _login_and_send(settings, report, transport, who)
        return
    if who is not None:
        started = time.perf_counter()
        try:
            await transport.check_login()
        except DeliveryError as error:
            _failed(
                report,
                settings,
                "login",
                f"{who} at {transport.name}",
                started=started,
                error=error,
            )
            return
        report.ok("login", f"{who} accepted by {transport.name}", ms=_ms(started))
    report.skip("send", "no test message sent (add --send to send one)")


async def _login_and_send(
    settings: Settings, report: Report, transport: SMTPTransport, who: str | None
) -> None:
    """Log in and send on one connection: one AUTH, whatever happens."""
    message = build_test_message(settings, command="doctor --send")
    started = time.perf_counter()
    try:
        await transport.send(message)
    except DeliveryError as error:
        if who is not None and not _while_sending(error):
            _failed(
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
        _failed(
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
        "send", f"test message {message.message_id} accepted for {recipients}", ms=_ms(started)
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
    warnings = f" ({report.warned} warning(s))" if report.warned else ""
    report.ok("result", f"alerts can be sent with these settings{warnings}")
    return 0


# -- send-test -------------------------------------------------------------------------


class _ChannelLines:
    """One line per channel of the chain, written when the chain moves on from it."""

    def __init__(self, report: Report, settings: Settings) -> None:
        self._report = report
        self._settings = settings
        self._outcomes: list[Outcome] = []
        self.tried: set[str] = set()
        self.took: str | None = None

    def attempt(self, outcome: Outcome) -> None:
        if self._outcomes and self._outcomes[-1].channel != outcome.channel:
            self.flush()
        self._outcomes.append(outcome)
        self.tried.add(outcome.channel)

    def flush(self) -> None:
        outcomes, self._outcomes = self._outcomes, []
        if not outcomes:
            return
        last = outcomes[-1]
        tries = f" after {len(outcomes)} tries" if len(outcomes) > 1 else ""
        if last.error is None:
            self.took = last.channel
            self._report.ok(last.channel, f"took the test message{tries}", ms=last.duration * 1000)
            return
        self._report.fail(
            last.channel,
            f"did not take the test message{tries}",
            ms=last.duration * 1000,
            why=_why(self._settings, last.error, server=last.channel),
            reply=last.error.reply,
        )


async def _send_test(
    settings: Settings, report: Report, timeout: float, token_provider: TokenProvider | None
) -> int:
    from .._delivery.chain import FallbackChain, NoChannelTookError  # noqa: PLC0415
    from .._delivery.channels import build_channels  # noqa: PLC0415 - aiosmtplib loads only here

    problems: list[str] = []
    try:
        channels = build_channels(
            settings, token_provider=token_provider, on_problem=problems.append
        )
    except ValueError as exc:
        raise _UnusableSettingsError(str(exc)) from exc
    for problem in problems:
        report.warn("channels", problem)
    lines = _ChannelLines(report, settings)
    chain = FallbackChain(channels, deadline=settings.timeout, on_attempt=lines.attempt)
    message = build_test_message(settings)
    started = time.perf_counter()
    failures: Sequence[DeliveryError] = ()
    try:
        await asyncio.wait_for(chain.send(message), timeout)
    except NoChannelTookError as exc:
        failures = exc.failures
    except asyncio.TimeoutError:
        lines.flush()
        report.fail("send-test", f"no channel took the test message within {timeout:g}s")
        return 1
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(chain.aclose(), 2.0)
    lines.flush()
    for failure in failures:
        if failure.channel not in lines.tried:
            report.skip(failure.channel or "channel", failure.message)
    if lines.took is None:
        report.fail("send-test", "no channel took the test message", ms=_ms(started))
        return 1
    recipients = ", ".join(message.recipients)
    report.ok("send-test", f"sent to {recipients} through {lines.took}", ms=_ms(started))
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
        raise _UnusableSettingsError(str(exc)) from exc


def _failed(
    report: Report,
    settings: Settings,
    label: str,
    text: str,
    *,
    started: float,
    error: DeliveryError,
) -> None:
    """A failed step: what failed, the server's reply if any, the diagnosis."""
    why = _why(settings, error)
    report.fail(label, text, ms=_ms(started), why=why, reply=error.reply)


def _why(settings: Settings, error: DeliveryError, *, server: str | None = None) -> Diagnosis:
    account = settings.username
    if settings.backup_host is not None and (server or error.channel) == (
        f"{settings.backup_host}:{settings.backup_port}"
    ):
        account = settings.backup_username
    return diagnose(error, account=account, server=server or error.channel or None)


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


def _describe(settings: Settings, *, oauth: bool) -> str:
    where = f"{settings.host}:{settings.port} {settings.effective_security}"
    if settings.username is None:
        login = "no login"
    elif oauth:
        login = f"login {settings.username} with OAuth2 (XOAUTH2)"
    elif settings.password is not None:
        login = f"login {settings.username} with the password in SMTP_ALERTS_PASSWORD"
    elif settings.password_file is not None:
        login = f"login {settings.username} with the password in {settings.password_file}"
    else:
        login = f"login {settings.username} without a password (SMTP_ALERTS_PASSWORD unset)"
    return f"{where}, {login}, alerts to {', '.join(settings.to)}"


def _secrets_of(settings: Settings) -> list[str]:
    found = [url.get_secret_value() for url in settings.fallback_urls]
    if settings.backup_password is not None:
        found.append(settings.backup_password.get_secret_value())
    with contextlib.suppress(OSError, UnicodeDecodeError):
        password = settings.read_password()
        if password:
            found.append(password)
    return found


@contextlib.contextmanager
def _library_logs_silenced() -> Iterator[None]:
    """Keep the library's own warnings (each failed try) off stderr: the report says it all.

    A handler on the ``smtp_alerts`` logger keeps :data:`logging.lastResort`
    from printing them when the program has configured no logging; a
    program that has still gets them.
    """
    logger = logging.getLogger("smtp_alerts")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _can_encode(stream: TextIO, text: str) -> bool:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True
