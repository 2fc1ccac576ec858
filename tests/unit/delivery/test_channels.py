"""Channels from settings: which transports the settings make, in order, and how each is set."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from pathlib import Path

import pytest

from smtp_alerts import Settings
from smtp_alerts._delivery.channels import build_channels, smtp_channel
from smtp_alerts.errors import DeliveryError
from smtp_alerts.models import OutgoingMessage
from smtp_alerts.transports.smtp import SMTPTransport

MESSAGE = OutgoingMessage("<m@x>", EmailMessage(), "a@x.org", ("b@x.org",), "title", "summary")
GMAIL = {"username": "me@gmail.com", "password": "abcd efgh ijkl mnop", "to": ["on@example.com"]}


class TestBuildChannels:
    def test_gmail_gets_both_ports_sharing_one_credential(self) -> None:
        """smtp.gmail.com on 587 adds 465 (TLS) as the alternate, with the same credential."""
        primary, alternate = build_channels(Settings(**GMAIL))
        assert (
            repr(primary) == "<SMTPTransport smtp.gmail.com:587 starttls username='me@gmail.com'>"
        )
        assert repr(alternate) == "<SMTPTransport smtp.gmail.com:465 tls username='me@gmail.com'>"
        assert primary.credential == alternate.credential == "me@gmail.com@smtp.gmail.com:587"

    def test_backup_server_has_its_own_account(self) -> None:
        """The backup server comes after both ports, with its own security and credential."""
        settings = Settings(
            **GMAIL,
            backup_host="mail.example.com",
            backup_port=465,
            backup_username="backup@example.com",
            backup_password="backup-secret",
        )
        *_, backup = build_channels(settings)
        assert repr(backup) == (
            "<SMTPTransport mail.example.com:465 tls username='backup@example.com'>"
        )
        assert backup.credential == "backup@example.com@mail.example.com:465"

    def test_alternate_port_zero_leaves_one_channel(self) -> None:
        """ALTERNATE_PORT=0 turns the second port off."""
        assert len(build_channels(Settings(**GMAIL, alternate_port=0))) == 1


class TestSMTPChannel:
    def test_follows_the_settings(self) -> None:
        """Host, port, security, login and the overall deadline come from the settings."""
        transport = smtp_channel(Settings(**GMAIL, port=465, timeout="12s"))
        assert isinstance(transport, SMTPTransport)
        assert repr(transport) == "<SMTPTransport smtp.gmail.com:465 tls username='me@gmail.com'>"
        assert transport.timeout == 12.0

    def test_another_port_is_secured_as_that_port_speaks(self) -> None:
        """With ``port``, the security follows that port, not SECURITY."""
        transport = smtp_channel(Settings(**GMAIL, security="starttls"), port=465)
        assert repr(transport) == "<SMTPTransport smtp.gmail.com:465 tls username='me@gmail.com'>"

    def test_reads_the_password_file_on_each_connection(self, tmp_path: Path) -> None:
        """The password is PASSWORD_FILE's current content, read when asked, not at build time."""
        secret = tmp_path / "app-password"
        secret.write_text("first\n")
        transport = smtp_channel(Settings(**{**GMAIL, "password": None}, password_file=secret))
        secret.write_text("second\n")
        password = transport._password
        assert callable(password)
        assert password() == "second"


class TestUnusableChannel:
    def test_a_channel_that_cannot_be_built_is_one_failed_channel(self, tmp_path: Path) -> None:
        """A CA file that is no certificate fails its channels' sends, not the whole set."""
        bad_ca = tmp_path / "ca.pem"
        bad_ca.write_text("not a certificate")
        problems: list[str] = []
        channels = build_channels(
            Settings(**GMAIL, ca_file=bad_ca, alternate_port=0), on_problem=problems.append
        )
        (channel,) = channels
        assert channel.name == "smtp.gmail.com:587"
        assert len(problems) == 1
        assert "cannot be used" in problems[0]
        with pytest.raises(DeliveryError, match="could not be set up"):
            asyncio.run(channel.send(MESSAGE))
