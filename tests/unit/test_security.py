"""Credentials: never in clear text to another machine, never echoed, sent as documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from smtp_alerts import Engine, Settings
from smtp_alerts.errors import ConfigurationError
from smtp_alerts.transports.smtp import SMTPTransport, clear_text_refusal

BASE = {"to": ["oncall@example.com"], "username": "me@example.com"}


def token() -> str:
    return "ya29.secret-bearer-token"


class TestNoCredentialInClearText:
    def test_engine_refuses_a_token_provider_without_tls_to_another_host(self) -> None:
        """XOAUTH2 with SECURITY=none to a remote host: refused at start, naming the variable."""
        settings = Settings(**BASE, host="mail.example.com", port=25, security="none")
        with pytest.raises(ConfigurationError, match="SMTP_ALERTS_SECURITY=none") as caught:
            Engine(settings, token_provider=token, spool=False)
        assert "OAuth token" in str(caught.value)

    def test_loopback_may_use_a_token_without_tls(self) -> None:
        """A local relay (loopback) is this machine: allowed."""
        settings = Settings(**BASE, host="127.0.0.1", port=25, security="none")
        Engine(settings, token_provider=token, spool=False).close()

    def test_transport_refuses_a_token_without_tls_to_another_host(self) -> None:
        """The transport checks too, whoever built it."""
        with pytest.raises(ValueError, match="OAuth token in clear text"):
            SMTPTransport(
                host="mail.example.com",
                port=25,
                security="none",
                username="me@example.com",
                token_provider=token,
            )

    @pytest.mark.parametrize(
        ("encrypted", "peer", "host", "refused"),
        [
            (True, ("203.0.113.9", 587), "mail.example.com", False),
            (False, ("127.0.0.1", 25), "127.0.0.1", False),
            (False, ("::1", 25, 0, 0), "localhost", False),
            (False, ("203.0.113.9", 25), "mail.example.com", True),
            # A loopback name that reached another machine, or no peer known.
            (False, ("203.0.113.9", 25), "localhost", True),
            (False, None, "127.0.0.1", True),
        ],
    )
    def test_last_guard_on_the_connection(
        self, encrypted: bool, peer: object, host: str, refused: bool
    ) -> None:
        """At AUTH time: only an encrypted connection, or one that stays on this machine."""
        reason = clear_text_refusal(encrypted=encrypted, peer=peer, host=host)
        assert (reason is not None) is refused


class TestPasswordFile:
    def test_a_password_given_as_the_file_is_not_echoed(self) -> None:
        """PASSWORD_FILE set to the password itself: the error names the variable, not the value."""
        with pytest.raises(ConfigurationError) as caught:
            Settings(**BASE, password_file="app-password-123")
        message = str(caught.value)
        assert "SMTP_ALERTS_PASSWORD_FILE" in message
        assert "app-password-123" not in message
        assert "app-password-123" not in repr(caught.value)

    def test_only_the_first_line_is_the_password(self, tmp_path: Path) -> None:
        """A comment under the value is not sent (a wrong password counts toward the lockout)."""
        secret = tmp_path / "pw"
        secret.write_text("abcd efgh ijkl mnop\n# the app password for alerts, made 2026-01-02\n")
        settings = Settings(**BASE, password_file=secret)
        assert settings.read_password() == "abcd efgh ijkl mnop"
