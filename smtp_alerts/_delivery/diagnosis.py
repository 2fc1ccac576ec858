"""What a delivery failure means, and what a person should do about it, in Gmail's terms.

One table shared by the meta-alert (the engine telling a human that its own
credential stopped working) and by ``smtp-alerts doctor`` / ``send-test``.
No I/O: a :class:`~smtp_alerts.errors.DeliveryError` goes in, a
:class:`Diagnosis` comes out. Nothing here ever sees a secret: errors carry
none (see :mod:`smtp_alerts.errors`).

=====================  ==========================================================
failure                what to do
=====================  ==========================================================
535 5.7.8              the password was not accepted: use an app password, check
                       it was not revoked
534 5.7.9              2-Step Verification is on: an app password is required
534 5.7.14             Google wants one sign-in from a browser first
530 5.7.0              on AUTH: STARTTLS missing (port and security do not match);
                       on MAIL/RCPT: no login where one is required
454 4.7.0              too many login attempts: paused, say until when
XOAUTH2 refused        the token expired, was revoked, or lacks the mail scope
no AUTH offered        the login was about to happen without TLS (security none)
=====================  ==========================================================

DNS, connection, TLS, certificate, quota and size failures get a diagnosis
too, for the doctor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._util.humanize import format_time
from ..errors import (
    AuthenticationError,
    CertificateVerifyError,
    ConnectError,
    DeliveryError,
    DeliveryTimeoutError,
    MessageTooLargeError,
    QuotaExceededError,
    RecipientsRefusedError,
    StartTLSNotOfferedError,
    TLSError,
)
from .policy import enhanced_code

__all__ = ["APP_PASSWORDS_URL", "Diagnosis", "diagnose", "is_auth_failure"]

#: Where a Google account's app passwords are made and revoked.
APP_PASSWORDS_URL = "https://myaccount.google.com/apppasswords"
#: Where Google asks for the browser sign-in that unlocks a blocked login.
UNLOCK_URL = "https://accounts.google.com/DisplayUnlockCaptcha"
#: The OAuth scope Gmail's SMTP needs.
GMAIL_SCOPE = "https://mail.google.com/"

_PARENTHESIZED = re.compile(r"\(([^()]+)\)")


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """What went wrong and how to fix it.

    Attributes:
        code: the failure's short label, e.g. ``535 5.7.8`` or ``certificate``.
        problem: what is wrong, in one sentence.
        fix: what to do about it, in one or two sentences.
    """

    code: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.code}: {self.problem} Fix: {self.fix}"


def is_auth_failure(error: DeliveryError) -> bool:
    """Whether ``error`` says the credential (not the network) was refused.

    These are what the auth watcher counts: 530, 534, 535 and 454 4.7.0 on
    AUTH, and every XOAUTH2 refusal or token-provider failure.
    """
    return isinstance(error, AuthenticationError)


def diagnose(  # noqa: PLR0911 - one return per row of the table
    error: DeliveryError,
    *,
    account: str | None = None,
    server: str | None = None,
    paused_until: float | None = None,
) -> Diagnosis:
    """The diagnosis of one delivery failure.

    Args:
        error: the failure, from any transport.
        account: the login (``USERNAME``), named in the fix where it helps.
        server: ``host:port``, named in the fix where it helps.
        paused_until: when the credential will be tried again (epoch seconds),
            for a 454 4.7.0.

    Returns:
        The :class:`Diagnosis`.
    """
    who = f"the account {account}" if account else "the account"
    where = server or error.channel or "the server"
    code, enhanced = error.code, enhanced_code(error)
    label = f"{code} {enhanced}".strip() if code is not None else ""
    reply = f"{error.reply} {error.message}".lower()

    if isinstance(error, AuthenticationError) and _is_xoauth2(error) and code is None:
        # No reply: the token never reached the server (the provider failed).
        return Diagnosis(
            "XOAUTH2",
            f"The OAuth2 login of {who} could not be attempted: {error.message}.",
            "Check the token provider: its refresh token may have expired or been revoked "
            "(authorize again), or it may ask for the wrong scope (Gmail's SMTP needs "
            f"{GMAIL_SCOPE}); the server must offer AUTH XOAUTH2 (Gmail does).",
        )
    if isinstance(error, AuthenticationError) and _is_xoauth2(error):
        return Diagnosis(
            label or "XOAUTH2",
            f"{where} refused the OAuth2 access token for {who}.",
            "The token expired, was revoked, or lacks the mail scope: make the token "
            f"provider return a fresh access token with the scope {GMAIL_SCOPE}, for the "
            "same address as SMTP_ALERTS_USERNAME.",
        )
    if code == 454 and enhanced in ("4.7.0", ""):
        if paused_until is not None:
            wait = (
                f"Sending through this account is paused until {format_time(paused_until)} "
                "so that Google does not lock it"
            )
        else:
            wait = "Wait before trying again (Google lifts this block after a while)"
        return Diagnosis(
            label or "454",
            f"{where} refused the login: too many login attempts for {who}.",
            f"{wait}; meanwhile check that no other program is logging in with a wrong password.",
        )
    if code == 535:
        return Diagnosis(
            label,
            f"{where} did not accept the username and password of {who}.",
            "Use an app password, not the account password, and check that it was not "
            f"revoked ({APP_PASSWORDS_URL}); the username must be the full address. "
            "With SMTP_ALERTS_PASSWORD_FILE, write the new app password into that file: "
            "it is read again before the next try, no restart needed.",
        )
    if code == 534 and enhanced == "5.7.9":
        return Diagnosis(
            label,
            f"{who.capitalize()} has 2-Step Verification, so its own password cannot be "
            "used over SMTP.",
            f"Create an app password at {APP_PASSWORDS_URL} and set it as "
            "SMTP_ALERTS_PASSWORD (or in SMTP_ALERTS_PASSWORD_FILE).",
        )
    if code == 534:
        return Diagnosis(
            label or "534",
            f"Google blocked the login of {who} until someone signs in from a browser.",
            f"Sign in to {who.removeprefix('the account ')} once in a browser (or open "
            f"{UNLOCK_URL} while signed in), then the next try will be accepted.",
        )
    if code == 530:
        # Gmail answers a login on an unencrypted connection with 530 5.7.0;
        # at MAIL or RCPT the same code means no login was made at all.
        if "starttls" in reply or error.step == "auth":
            return Diagnosis(
                label or "530",
                f"{where} wants STARTTLS before the login: the port and the security do not match.",
                "Use SMTP_ALERTS_PORT=587 with SMTP_ALERTS_SECURITY=starttls, or 465 with "
                "tls (or leave SECURITY unset: it follows the port).",
            )
        return Diagnosis(
            label or "530",
            f"{where} requires a login and none was made.",
            "Set SMTP_ALERTS_USERNAME to the full address and SMTP_ALERTS_PASSWORD (or "
            "SMTP_ALERTS_PASSWORD_FILE) to an app password.",
        )
    if isinstance(error, AuthenticationError) and "offers no AUTH" in error.message:
        return Diagnosis(
            "no AUTH",
            f"{where} offered no way to log in on this connection.",
            "Gmail offers the login only after STARTTLS (port 587) or on TLS (port 465): "
            "set SMTP_ALERTS_SECURITY to starttls or tls (or leave it unset: it follows "
            "the port).",
        )
    if isinstance(error, AuthenticationError):
        return Diagnosis(
            label or "auth",
            f"{where} refused the login of {who}: {error.message}.",
            "Check SMTP_ALERTS_USERNAME and the app password; for Gmail, use an app "
            f"password from {APP_PASSWORDS_URL}.",
        )
    return _delivery_diagnosis(error, where, label)


def _delivery_diagnosis(  # noqa: PLR0911 - one return per row of the table
    error: DeliveryError, where: str, label: str
) -> Diagnosis:
    if error.step == "resolve":
        return Diagnosis(
            "DNS",
            f"The name of {where} could not be looked up: {error.message}.",
            "Check the spelling of SMTP_ALERTS_HOST (Gmail: smtp.gmail.com) and that this "
            "machine can resolve names (its DNS servers, /etc/resolv.conf).",
        )
    if isinstance(error, StartTLSNotOfferedError):
        return Diagnosis(
            "no STARTTLS",
            f"{where} did not offer STARTTLS, so nothing was sent (not even the login).",
            "Port 587 offers STARTTLS and 465 speaks TLS from the start; if the port is "
            "right, something on the network path (a proxy or firewall) strips STARTTLS.",
        )
    if isinstance(error, CertificateVerifyError):
        reason = _PARENTHESIZED.search(error.message)
        return Diagnosis(
            "certificate",
            f"The certificate of {where} is not trusted "
            f"({reason.group(1) if reason else error.message}).",
            "If the server uses a private CA, or a proxy on this network intercepts TLS, add "
            "that CA with SMTP_ALERTS_CA_FILE; check that SMTP_ALERTS_HOST is the name the "
            "certificate is for. The check is never switched off.",
        )
    if isinstance(error, TLSError):
        return Diagnosis(
            "TLS",
            f"The secure connection to {where} failed: {error.message}.",
            "Check that the port and SMTP_ALERTS_SECURITY match (587 starttls, 465 tls).",
        )
    if isinstance(error, DeliveryTimeoutError):
        return Diagnosis(
            "timeout",
            f"{where} did not answer in time ({error.message}).",
            "Check that outgoing connections to this port are allowed (many networks block "
            "SMTP ports); try the other port (587 or 465), or raise SMTP_ALERTS_TIMEOUT.",
        )
    if isinstance(error, ConnectError):
        said = error.message.rstrip(".")
        problem = (
            f"{said[:1].upper()}{said[1:]}."
            if said.startswith(("could not connect", "lost the connection"))
            else f"Could not connect to {where}: {said}."
        )
        return Diagnosis(
            "connect",
            problem,
            "Check SMTP_ALERTS_HOST and SMTP_ALERTS_PORT, DNS, and that a firewall lets "
            "outgoing connections to this port through; try the other port (587 or 465).",
        )
    if isinstance(error, QuotaExceededError):
        return Diagnosis(
            label or "quota",
            "The account's daily sending limit is reached (500 a day for a personal Gmail "
            "account, 2,000 for Workspace).",
            "Sending resumes within 24 hours; lower SMTP_ALERTS_MAX_PER_DAY, or add a backup "
            "server or SMTP_ALERTS_FALLBACK_URLS so alerts still get through.",
        )
    if isinstance(error, MessageTooLargeError):
        return Diagnosis(
            label or "size",
            f"{where} refused the message as too large.",
            "Digests shrink automatically; if this persists the server's limit is unusually "
            "small: check its SIZE limit.",
        )
    if isinstance(error, RecipientsRefusedError):
        return Diagnosis(
            label or "recipients",
            f"{where} refused every recipient: {error.message}.",
            "Check the addresses in SMTP_ALERTS_TO.",
        )
    return Diagnosis(
        label or (error.step or "delivery"),
        f"{where} did not take the message: {error.message}.",
        "Try again later; if it persists, run `smtp-alerts doctor` for a step-by-step check.",
    )


def _is_xoauth2(error: AuthenticationError) -> bool:
    return error.mechanism == "XOAUTH2"
