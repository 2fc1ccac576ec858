"""The SMTP transport's error boundary: aiosmtplib, ssl and OSError failures as our errors."""

from __future__ import annotations

import ssl

import aiosmtplib
import pytest

from smtp_alerts.errors import (
    AuthenticationError,
    CertificateVerifyError,
    ConnectError,
    DeliveryError,
    DeliveryTimeoutError,
    MessageTooLargeError,
    PermanentReplyError,
    QuotaExceededError,
    TemporaryReplyError,
    TLSError,
)
from smtp_alerts.transports.smtp_errors import ErrorMap, reply_error, secret_forms, xoauth2_error

CHANNEL = "smtp.gmail.com:587"
PASSWORD = "abcd efgh ijkl mnop"


def _errors() -> ErrorMap:
    """The error map of a transport to Gmail that has sent its password."""
    errors = ErrorMap(channel=CHANNEL, host="smtp.gmail.com", step_timeout=2.0)
    errors.secrets = secret_forms("alerts@example.com", PASSWORD)
    return errors


def _chained(exc: BaseException, cause: BaseException) -> BaseException:
    """``exc`` raised from ``cause``, as aiosmtplib raises its own errors."""
    exc.__cause__ = cause
    return exc


def _ssl_error(kind: type[ssl.SSLError], reason: str) -> ssl.SSLError:
    """An ssl error as the ssl module makes them (with its ``reason``, and ``verify_message``)."""
    error = kind(1, f"[SSL: {reason}] {reason.lower().replace('_', ' ')}")
    error.reason = reason
    if isinstance(error, ssl.SSLCertVerificationError):
        error.verify_message = "self-signed certificate"
    return error


class TestErrorMap:
    """ErrorMap: each low-level failure becomes the most specific DeliveryError."""

    def test_step_timeout(self) -> None:
        """aiosmtplib's step timeout is a transient DeliveryTimeoutError naming the timeout."""
        error = _errors().translate(aiosmtplib.SMTPTimeoutError("Timed out"), "ehlo")
        assert type(error) is DeliveryTimeoutError
        assert (error.channel, error.step, error.transient) == (CHANNEL, "ehlo", True)
        assert "within the 2s step timeout" in error.message

    def test_refused_connection(self) -> None:
        """A refused connection says so in the OS's words, at the connect step."""
        refused = ConnectionRefusedError(111, "Connection refused")
        cause = _chained(aiosmtplib.SMTPConnectError("Error connecting"), refused)
        error = _errors().translate(cause, "connect")
        assert type(error) is ConnectError
        assert error.message == "could not connect to smtp.gmail.com: Connection refused"

    def test_disconnect_mid_way(self) -> None:
        """A server that hangs up after the greeting lost the connection, at that step."""
        error = _errors().translate(aiosmtplib.SMTPServerDisconnected("gone"), "mail")
        assert type(error) is ConnectError
        assert error.message.startswith("lost the connection to smtp.gmail.com")
        assert error.step == "mail"

    def test_bad_greeting_is_the_greeting_step(self) -> None:
        """A refusal instead of the 220 greeting is reported at step greeting."""
        greeting = aiosmtplib.SMTPConnectResponseError(421, "4.7.0 Try again later")
        error = _errors().translate(greeting, "connect")
        assert type(error) is TemporaryReplyError
        assert (error.step, error.code) == ("greeting", 421)

    @pytest.mark.parametrize(
        ("failure", "expected"),
        [
            (
                _ssl_error(ssl.SSLCertVerificationError, "CERTIFICATE_VERIFY_FAILED"),
                CertificateVerifyError,
            ),
            (_ssl_error(ssl.SSLEOFError, "UNEXPECTED_EOF_WHILE_READING"), ConnectError),
            (_ssl_error(ssl.SSLError, "WRONG_VERSION_NUMBER"), TLSError),
        ],
    )
    def test_tls_failure_anywhere_in_the_chain(
        self, failure: ssl.SSLError, expected: type[DeliveryError]
    ) -> None:
        """An ssl error behind aiosmtplib's own is read as every client reads TLS failures."""
        cause = _chained(aiosmtplib.SMTPConnectError("Error connecting"), failure)
        error = _errors().translate(cause, "starttls")
        assert type(error) is expected
        assert error.step == "starttls"

    def test_other_protocol_errors(self) -> None:
        """Any other aiosmtplib error is a plain DeliveryError naming its type."""
        error = _errors().translate(aiosmtplib.SMTPDataError(-1, "odd"), "data")
        assert type(error) is DeliveryError
        assert "SMTPDataError" in error.message

    def test_secrets_scrubbed_from_replies(self) -> None:
        """A server echoing the password, raw or base64, never puts it in our error."""
        (raw, plain_b64, *_) = secret_forms("alerts@example.com", PASSWORD)
        echo = aiosmtplib.SMTPAuthenticationError(535, f"5.7.8 no {raw} and no {plain_b64}")
        error = _errors().translate(echo, "auth")
        assert isinstance(error, AuthenticationError)
        assert PASSWORD not in str(error)
        assert plain_b64 not in str(error)
        assert PASSWORD not in error.reply

    def test_map_exceptions_raises_from_the_original(self) -> None:
        """map_exceptions raises the translated error from the low-level one."""
        original = aiosmtplib.SMTPResponseException(550, "5.4.5 Daily user sending limit")
        with pytest.raises(QuotaExceededError) as caught, _errors().map_exceptions("mail"):
            raise original
        assert caught.value.__cause__ is original

    def test_map_exceptions_lets_our_errors_through(self) -> None:
        """A DeliveryError raised inside is already ours: it passes unchanged."""
        ours = xoauth2_error("the OAuth token provider failed", channel=CHANNEL)
        with pytest.raises(AuthenticationError) as caught, _errors().map_exceptions("auth"):
            raise ours
        assert caught.value is ours
        assert caught.value.mechanism == "XOAUTH2"


class TestReplyClassification:
    """reply_error: SMTP replies to the smtp_alerts.errors tree."""

    @pytest.mark.parametrize(
        ("step", "code", "reply", "expected", "enhanced"),
        [
            (
                "auth",
                535,
                "5.7.8 Username and Password not accepted.",
                AuthenticationError,
                "5.7.8",
            ),
            (
                "auth",
                534,
                "5.7.9 Application-specific password required.",
                AuthenticationError,
                "5.7.9",
            ),
            (
                "auth",
                454,
                "4.7.0 Too many login attempts, please try again later.",
                AuthenticationError,
                "4.7.0",
            ),
            (
                "auth",
                530,
                "5.7.0 Must issue a STARTTLS command first.",
                AuthenticationError,
                "5.7.0",
            ),
            ("auth", 504, "5.7.4 Unrecognized authentication type.", PermanentReplyError, "5.7.4"),
            ("mail", 530, "5.7.0 Authentication Required.", AuthenticationError, "5.7.0"),
            ("mail", 550, "5.4.5 Daily user sending limit exceeded.", QuotaExceededError, "5.4.5"),
            ("data", 550, "5.7.1 Message rejected as spam.", PermanentReplyError, "5.7.1"),
            ("data", 552, "5.3.4 Message size exceeds fixed limit", MessageTooLargeError, "5.3.4"),
            ("mail", 421, "4.7.0 Temporary System Problem.", TemporaryReplyError, "4.7.0"),
            ("greeting", 554, "Service unavailable", PermanentReplyError, None),
        ],
    )
    def test_classifies(
        self, step: str, code: int, reply: str, expected: type[DeliveryError], enhanced: str | None
    ) -> None:
        """Each reply maps to its error class, keeping the code, step and enhanced status."""
        error = reply_error(channel="smtp.gmail.com:587", step=step, code=code, reply=reply)
        assert type(error) is expected
        assert (error.code, error.step, error.reply) == (code, step, reply)
        assert (enhanced or str(code)) in str(error)
        assert error.transient == (400 <= code < 500 and expected is TemporaryReplyError)

    def test_xoauth2_failures_are_authentication_errors(self) -> None:
        """Any refusal of an XOAUTH2 attempt counts as an authentication failure."""
        error = reply_error(
            channel="c", step="auth", code=555, reply="5.5.2 Syntax error", xoauth2=True
        )
        assert isinstance(error, AuthenticationError)

    def test_multiline_reply_reads_as_one_line(self) -> None:
        """Gmail's two-line 535 becomes one readable sentence with its link."""
        reply = (
            "5.7.8 Username and Password not accepted. For more information, go to\n"
            "5.7.8  https://support.google.com/mail/?p=BadCredentials abc - gsmtp"
        )
        error = reply_error(channel="c", step="auth", code=535, reply=reply)
        assert (
            "(535 5.7.8) Username and Password not accepted. For more information, go to "
            "https://support.google.com/mail/?p=BadCredentials abc - gsmtp"
        ) in str(error)
