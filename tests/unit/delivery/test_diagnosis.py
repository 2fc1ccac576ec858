"""The diagnosis table: each failure, and the fix a person is told, in Gmail's terms."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from smtp_alerts._delivery.diagnosis import (
    APP_PASSWORDS_URL,
    GMAIL_SCOPE,
    UNLOCK_URL,
    Diagnosis,
    diagnose,
    is_auth_failure,
)
from smtp_alerts._util.humanize import format_time
from smtp_alerts.errors import (
    AuthenticationError,
    CertificateVerifyError,
    ConnectError,
    DeliveryError,
    DeliveryTimeoutError,
    MessageTooLargeError,
    PermanentReplyError,
    QuotaExceededError,
    RecipientsRefusedError,
    StartTLSNotOfferedError,
    TLSError,
)

ACCOUNT = "alerts@example.com"
SERVER = "smtp.gmail.com:587"

# Gmail's replies, word for word (as aiosmtplib hands them over: codes stripped
# from the line starts, enhanced codes kept).
BAD_CREDENTIALS = (
    "5.7.8 Username and Password not accepted. For more information, go to\n"
    "5.7.8  https://support.google.com/mail/?p=BadCredentials a1-2sm3 - gsmtp"
)
APP_PASSWORD_REQUIRED = (
    "5.7.9 Application-specific password required. Learn more at\n"
    "5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor a1-2sm3 - gsmtp"
)
WEB_LOGIN_REQUIRED = (
    "5.7.14 <https://accounts.google.com/signin/continue?sarp=1> Please log in via your "
    "web browser and\n5.7.14 then try again.\n"
    "5.7.14  Learn more at https://support.google.com/mail/answer/78754 a1-2sm3 - gsmtp"
)
MUST_STARTTLS = "5.7.0 Must issue a STARTTLS command first. a1-2sm3 - gsmtp"
AUTH_REQUIRED = (
    "5.7.0 Authentication Required. For more information, go to\n"
    "5.7.0  https://support.google.com/mail/?p=WantAuthError a1-2sm3 - gsmtp"
)
TOO_MANY_LOGINS = "4.7.0 Too many login attempts, please try again later. a1-2sm3 - gsmtp"


def _auth(code: int, reply: str, *, step: str = "auth", xoauth2: bool = False) -> DeliveryError:
    error = AuthenticationError(
        f"the server refused the credentials ({code})",
        channel=SERVER,
        step=step,
        code=code,
        reply=reply,
    )
    error.mechanism = "XOAUTH2" if xoauth2 else ""
    return error


@dataclass(frozen=True)
class Row:
    """One row of the table: the failure, the label, and words the diagnosis must hold."""

    error: DeliveryError
    code: str
    problem: str
    fix: str


ROWS = {
    "535 5.7.8": Row(_auth(535, BAD_CREDENTIALS), "535 5.7.8", ACCOUNT, APP_PASSWORDS_URL),
    "534 5.7.9": Row(
        _auth(534, APP_PASSWORD_REQUIRED), "534 5.7.9", "2-Step Verification", "app password"
    ),
    "534 5.7.14": Row(_auth(534, WEB_LOGIN_REQUIRED), "534 5.7.14", "browser", UNLOCK_URL),
    "530 5.7.0 STARTTLS": Row(
        _auth(530, MUST_STARTTLS), "530 5.7.0", "STARTTLS", "SMTP_ALERTS_SECURITY=starttls"
    ),
    "530 5.7.0 on AUTH": Row(
        _auth(530, AUTH_REQUIRED), "530 5.7.0", "port and the security", "SMTP_ALERTS_PORT=587"
    ),
    "530 5.7.0 at MAIL": Row(
        _auth(530, AUTH_REQUIRED, step="mail"),
        "530 5.7.0",
        "requires a login",
        "SMTP_ALERTS_USERNAME",
    ),
    "454 4.7.0": Row(_auth(454, TOO_MANY_LOGINS), "454 4.7.0", "too many login attempts", "Wait"),
    "XOAUTH2 refused": Row(
        _auth(535, BAD_CREDENTIALS, xoauth2=True), "535 5.7.8", "OAuth2 access token", GMAIL_SCOPE
    ),
    "no AUTH offered": Row(
        AuthenticationError(
            "127.0.0.1 offers no AUTH PLAIN or LOGIN (offered: none)", channel=SERVER, step="auth"
        ),
        "no AUTH",
        "no way to log in",
        "SMTP_ALERTS_SECURITY",
    ),
    "other auth refusal": Row(
        AuthenticationError("could not read the password (PermissionError)", step="auth"),
        "auth",
        "could not read the password",
        "app password",
    ),
    "DNS": Row(
        ConnectError("could not resolve smtp.gmial.com: Name or service not known", step="resolve"),
        "DNS",
        "could not be looked up",
        "SMTP_ALERTS_HOST",
    ),
    "no STARTTLS": Row(
        StartTLSNotOfferedError("did not offer STARTTLS", step="starttls"),
        "no STARTTLS",
        "not even the login",
        "strips STARTTLS",
    ),
    "certificate": Row(
        CertificateVerifyError(
            "the certificate of smtp.gmail.com could not be verified (unable to get local "
            "issuer certificate); set SMTP_ALERTS_CA_FILE if the server uses a private CA",
            step="starttls",
        ),
        "certificate",
        "not trusted (unable to get local issuer certificate)",
        "SMTP_ALERTS_CA_FILE",
    ),
    "TLS": Row(
        TLSError("TLS with smtp.gmail.com failed (WRONG_VERSION_NUMBER)", step="connect"),
        "TLS",
        "WRONG_VERSION_NUMBER",
        "587 starttls, 465 tls",
    ),
    "timeout": Row(
        DeliveryTimeoutError("no delivery within the 30s deadline", step="deadline"),
        "timeout",
        "did not answer in time",
        "SMTP_ALERTS_TIMEOUT",
    ),
    "connect": Row(
        ConnectError("could not connect to smtp.gmail.com:587: Connection refused"),
        "connect",
        "Could not connect to smtp.gmail.com:587: Connection refused.",
        "firewall",
    ),
    "quota": Row(
        QuotaExceededError("quota", code=550, reply="5.4.5 Daily user sending limit exceeded."),
        "550 5.4.5",
        "daily sending limit",
        "SMTP_ALERTS_MAX_PER_DAY",
    ),
    "too large": Row(
        MessageTooLargeError("too large", code=552, reply="5.3.4 Your message exceeded"),
        "552 5.3.4",
        "too large",
        "SIZE",
    ),
    "recipients": Row(
        RecipientsRefusedError("every recipient was refused", code=550),
        "550",
        "every recipient",
        "SMTP_ALERTS_TO",
    ),
    "other reply": Row(
        PermanentReplyError("the server refused mail", step="mail", code=553, reply="5.1.8 bad"),
        "553 5.1.8",
        "did not take the message",
        "smtp-alerts doctor",
    ),
}


class TestDiagnose:
    """Each row of the table gives its own label, problem and fix."""

    @pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
    def test_row(self, row: Row) -> None:
        """The failure gets its row's label, and the problem and fix say the row's words."""
        diagnosis = diagnose(row.error, account=ACCOUNT, server=SERVER)
        assert diagnosis.code == row.code
        assert row.problem in diagnosis.problem
        assert row.fix in diagnosis.fix

    def test_454_states_until_when(self) -> None:
        """A 454 with a pause names the time the credential is tried again, in UTC."""
        until = 1_700_003_600.0
        diagnosis = diagnose(_auth(454, TOO_MANY_LOGINS), account=ACCOUNT, paused_until=until)
        assert f"paused until {format_time(until)}" in diagnosis.fix
        assert "2023-11-14 23:13" in format_time(until)

    def test_token_provider_failure(self) -> None:
        """An XOAUTH2 failure with no reply (the provider failed) says so, with the scope."""
        error = AuthenticationError("the OAuth token provider failed (RefreshError)", step="auth")
        error.mechanism = "XOAUTH2"
        diagnosis = diagnose(error, account=ACCOUNT, server=SERVER)
        assert diagnosis.code == "XOAUTH2"
        assert "token provider failed (RefreshError)" in diagnosis.problem
        assert GMAIL_SCOPE in diagnosis.fix

    def test_server_falls_back_to_the_channel(self) -> None:
        """Without ``server`` the error's channel is named."""
        diagnosis = diagnose(_auth(535, BAD_CREDENTIALS))
        assert diagnosis.problem.startswith(SERVER)

    def test_str(self) -> None:
        """A diagnosis reads as one line: label, problem, fix."""
        assert str(Diagnosis("535 5.7.8", "Refused.", "Use an app password.")) == (
            "535 5.7.8: Refused. Fix: Use an app password."
        )


class TestIsAuthFailure:
    """What the auth watcher counts."""

    def test_auth_errors_count(self) -> None:
        """Authentication errors count, whatever their code."""
        assert is_auth_failure(_auth(535, BAD_CREDENTIALS))
        assert is_auth_failure(_auth(454, TOO_MANY_LOGINS))

    def test_network_errors_do_not(self) -> None:
        """A refused connection or a bad certificate is not the credential's fault."""
        assert not is_auth_failure(ConnectError("refused"))
        assert not is_auth_failure(CertificateVerifyError("untrusted"))
