"""SMTPTransport against the real Gmail-like server: delivery, reuse, failures, deadlines."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import pytest

from smtp_alerts._delivery.channels import smtp_channel
from smtp_alerts.errors import (
    AuthenticationError,
    CertificateVerifyError,
    ConnectError,
    DeliveryTimeoutError,
    StartTLSNotOfferedError,
)
from smtp_alerts.testing import GmailServer
from smtp_alerts.transports.smtp import SMTPTransport
from tests.helpers import SENDER, make_message

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TOKEN = "ya29.a0-secret-oauth-token"


def _transport(server: GmailServer, **overrides: Any) -> SMTPTransport:
    """A transport for ``server`` with short timeouts; ``overrides`` win."""
    options: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "security": {"starttls": "starttls", "tls": "tls", "plain": "none"}[server.mode],
        "username": server.username,
        "password": server.password,
        "ca_file": server.ca_file,
        "timeout": 1.0,
        "local_hostname": "client.example",
    }
    options.update(overrides)
    return SMTPTransport(**options)


@pytest.fixture(params=["starttls", "tls"])
def server(request: pytest.FixtureRequest) -> Iterator[GmailServer]:
    """A Gmail-like server in STARTTLS (587) and in implicit TLS (465) mode."""
    with GmailServer(mode=request.param) as running:
        yield running


@pytest.fixture
def debug_logs() -> Iterator[list[str]]:
    """Every record of smtp_alerts', aiosmtpd's and aiosmtplib's loggers, at DEBUG."""
    lines: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    names = ("smtp_alerts", "mail.log", "aiosmtplib", "asyncio")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield lines
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


class TestSMTPTransport:
    """SMTPTransport: one AUTH, mandatory TLS, reuse, deadlines and error mapping."""

    @pytest.mark.asyncio
    async def test_delivers_with_envelope_and_headers(self, server: GmailServer) -> None:
        """A message arrives over STARTTLS and implicit TLS with its envelope and headers."""
        transport = _transport(server)
        message = make_message(["oncall@example.com", "ops@example.com"])
        await transport.send(message)
        await transport.aclose()
        (received,) = server.messages
        assert received.sender == SENDER
        assert received.recipients == ("oncall@example.com", "ops@example.com")
        assert received.message["Subject"] == "[ERROR] db is down"
        assert received.message["Message-ID"] == message.message_id
        assert received.message["Auto-Submitted"] == "auto-generated"
        assert received.message.get_content() == "The database is down.\n"
        assert (received.auth_mechanism, received.auth_username) == ("PLAIN", SENDER)
        assert server.auth_attempts == [("PLAIN", SENDER, True)]

    @pytest.mark.asyncio
    async def test_delivers_without_tls_on_loopback(self) -> None:
        """security='none' talks plain SMTP to a loopback server."""
        with GmailServer(mode="plain") as server:
            transport = _transport(server, ca_file=None)
            await transport.send(make_message())
            await transport.aclose()
            assert len(server.messages) == 1

    @pytest.mark.asyncio
    async def test_reuses_one_connection(self, server: GmailServer) -> None:
        """Consecutive sends share one connection and one AUTH; after aclose a new one opens."""
        transport = _transport(server)
        await transport.send(make_message(subject="first"))
        await transport.send(make_message(subject="second"))
        assert server.connections == 1
        assert len(server.auth_attempts) == 1
        await transport.aclose()
        await transport.aclose()
        await transport.send(make_message(subject="third"))
        await transport.aclose()
        assert server.connections == 2
        assert [received.subject for received in server.messages] == ["first", "second", "third"]

    @pytest.mark.asyncio
    async def test_reconnects_after_server_drops_connection(self, server: GmailServer) -> None:
        """A connection the server dropped between sends is replaced, not reused."""
        transport = _transport(server)
        await transport.send(make_message(subject="before"))
        server.drop_connections()
        await transport.send(make_message(subject="after"))
        await transport.aclose()
        assert server.connections == 2
        assert [received.subject for received in server.messages] == ["before", "after"]

    @pytest.mark.asyncio
    async def test_wrong_password(self, server: GmailServer) -> None:
        """A wrong password is one AUTH attempt and an AuthenticationError that hides it."""
        password = "wrong pass word"
        transport = _transport(server, password=password)
        with pytest.raises(AuthenticationError) as caught:
            await transport.send(make_message())
        error = caught.value
        assert (error.code, error.step, error.channel) == (535, "auth", transport.name)
        assert "535 5.7.8" in str(error)
        assert "app password" in str(error)
        assert server.auth_attempts == [("PLAIN", SENDER, False)]
        for text in (str(error), repr(error), error.reply, repr(transport)):
            assert password not in text
        assert not server.messages

    @pytest.mark.asyncio
    async def test_refuses_server_without_starttls(self) -> None:
        """A server that does not offer STARTTLS never gets an AUTH (nor the message)."""
        with GmailServer(offer_starttls=False) as server:
            transport = _transport(server)
            with pytest.raises(StartTLSNotOfferedError) as caught:
                await transport.send(make_message())
            assert caught.value.step == "starttls"
            assert server.auth_attempts == []
            assert server.messages == []

    @pytest.mark.asyncio
    async def test_untrusted_certificate(self, server: GmailServer) -> None:
        """A certificate from a CA we were not given fails verification, before any AUTH."""
        transport = _transport(server, ca_file=None)
        with pytest.raises(CertificateVerifyError) as caught:
            await transport.send(make_message())
        assert "SMTP_ALERTS_CA_FILE" in str(caught.value)
        assert caught.value.step == {"starttls": "starttls", "tls": "connect"}[server.mode]
        assert server.auth_attempts == []

    @pytest.mark.asyncio
    async def test_another_servers_ca_is_not_trusted(self) -> None:
        """Trusting one throwaway CA does not make another server's certificate acceptable."""
        with GmailServer() as other, GmailServer(mode="tls") as server:
            transport = _transport(server, ca_file=other.ca_file)
            with pytest.raises(CertificateVerifyError):
                await transport.send(make_message())

    @pytest.mark.asyncio
    async def test_silent_server_times_out(self, server: GmailServer) -> None:
        """A server that never greets fails with DeliveryTimeoutError at about the deadline."""
        server.faults.greet = False
        transport = _transport(server, timeout=0.4)
        started = time.monotonic()
        with pytest.raises(DeliveryTimeoutError):
            await transport.send(make_message())
        assert 0.3 < time.monotonic() - started < 0.9

    @pytest.mark.asyncio
    async def test_slow_server_hits_the_overall_deadline(self) -> None:
        """Steps that each answer inside the step timeout are still cut off by the deadline."""
        # About ten replies of 0.1 s each: every step is in time, the whole is not.
        with GmailServer(reply_delay=0.1) as server:
            transport = _transport(server, timeout=0.5, step_timeout=0.3)
            started = time.monotonic()
            with pytest.raises(DeliveryTimeoutError) as caught:
                await transport.send(make_message())
            elapsed = time.monotonic() - started
            assert caught.value.step == "deadline"
            assert elapsed < 0.8  # the sum of the steps is about 1 s
            assert not server.messages

    @pytest.mark.asyncio
    async def test_after_a_timeout_the_connection_is_not_reused(self) -> None:
        """A send that timed out drops its connection; the next send opens a fresh one."""
        with GmailServer(reply_delay=0.1) as server:
            transport = _transport(server, timeout=0.5, step_timeout=0.3)
            with pytest.raises(DeliveryTimeoutError):
                await transport.send(make_message())
            server.faults.reply_delay = 0
            await transport.send(make_message())
            await transport.aclose()
            assert server.connections == 2
            assert len(server.messages) == 1

    @pytest.mark.asyncio
    async def test_many_recipients_are_split(self, server: GmailServer) -> None:
        """More than 100 recipients go out in several transactions and every one receives it."""
        recipients = [f"user{number}@example.com" for number in range(250)]
        transport = _transport(server, timeout=5.0)
        await transport.send(make_message(recipients))
        await transport.aclose()
        batches = [received.recipients for received in server.messages]
        assert [len(batch) for batch in batches] == [100, 100, 50]
        assert [address for batch in batches for address in batch] == recipients
        assert server.connections == 1

    @pytest.mark.asyncio
    async def test_xoauth2_success(self, server: GmailServer) -> None:
        """An OAuth token from a sync or async provider logs in with AUTH XOAUTH2."""
        server.xoauth2_token = TOKEN

        async def async_provider() -> str:
            return TOKEN

        for provider in (lambda: TOKEN, async_provider):
            transport = _transport(server, password=None, token_provider=provider)
            await transport.send(make_message())
            await transport.aclose()
        assert [received.auth_mechanism for received in server.messages] == ["XOAUTH2"] * 2
        assert server.auth_attempts == [("XOAUTH2", SENDER, True)] * 2

    @pytest.mark.asyncio
    async def test_xoauth2_failure(self, server: GmailServer) -> None:
        """A refused token is one AUTH attempt and an AuthenticationError that hides it."""
        transport = _transport(server, password=None, token_provider=lambda: TOKEN)
        with pytest.raises(AuthenticationError) as caught:
            await transport.send(make_message())
        error = caught.value
        assert (error.code, error.step) == (535, "auth")
        assert server.auth_attempts == [("XOAUTH2", SENDER, False)]
        for text in (str(error), repr(error), error.reply):
            assert TOKEN not in text

    @pytest.mark.asyncio
    async def test_token_provider_failure(self, gmail_server: GmailServer) -> None:
        """A token provider that raises is an AuthenticationError, and nothing is sent."""

        def broken() -> str:
            raise RuntimeError("refresh token revoked")

        transport = _transport(gmail_server, password=None, token_provider=broken)
        with pytest.raises(AuthenticationError, match="token provider failed"):
            await transport.send(make_message())
        assert gmail_server.connections == 0

    @pytest.mark.asyncio
    async def test_password_callable_is_read_per_connection(
        self, gmail_server: GmailServer
    ) -> None:
        """A password callable is called once per new connection, so rotation takes effect."""
        passwords = iter(["old password", gmail_server.password])
        calls: list[str] = []

        def password() -> str:
            calls.append("read")
            return next(passwords)

        transport = _transport(gmail_server, password=password)
        with pytest.raises(AuthenticationError):
            await transport.send(make_message())
        await transport.send(make_message())
        await transport.send(make_message())
        await transport.aclose()
        assert len(calls) == 2
        assert [attempt.success for attempt in gmail_server.auth_attempts] == [False, True]
        assert len(gmail_server.messages) == 2

    @pytest.mark.asyncio
    async def test_smtp_channel_rereads_the_password_file(
        self, gmail_server: GmailServer, tmp_path: Path
    ) -> None:
        """smtp_channel reads PASSWORD_FILE on each connection: a fixed file heals the channel."""
        secret = tmp_path / "app-password"
        secret.write_text("stale password\n")
        transport = smtp_channel(gmail_server.settings(password_file=secret))
        assert transport.timeout == 5.0
        with pytest.raises(AuthenticationError):
            await transport.send(make_message())
        secret.write_text(gmail_server.password + "\n")
        await transport.send(make_message())
        await transport.aclose()
        assert len(gmail_server.messages) == 1

    @pytest.mark.asyncio
    async def test_connection_refused(self) -> None:
        """Nothing listening on the port is a transient ConnectError at the connect step."""
        with GmailServer() as server:
            transport = _transport(server)
        with pytest.raises(ConnectError) as caught:
            await transport.send(make_message())
        assert caught.value.step == "connect"
        assert caught.value.transient

    @pytest.mark.asyncio
    async def test_mail_without_auth_is_an_authentication_error(
        self, gmail_server: GmailServer
    ) -> None:
        """Without credentials Gmail's 530 on MAIL becomes an AuthenticationError."""
        transport = _transport(gmail_server, username=None, password=None)
        with pytest.raises(AuthenticationError) as caught:
            await transport.send(make_message())
        assert (caught.value.code, caught.value.step) == (530, "mail")
        assert gmail_server.auth_attempts == []

    @pytest.mark.asyncio
    async def test_secrets_never_logged(
        self, gmail_server: GmailServer, debug_logs: list[str]
    ) -> None:
        """Neither the transport nor the server logs the password, even at DEBUG."""
        password = "do-not-log-me"
        transport = _transport(gmail_server, password=password)
        with pytest.raises(AuthenticationError):
            await transport.send(make_message())
        good = _transport(gmail_server)
        await good.send(make_message())
        await good.aclose()
        text = "\n".join(debug_logs)
        assert "AUTH PLAIN as alerts@example.com" in text
        assert password not in text
        assert gmail_server.password not in text

    @pytest.mark.asyncio
    async def test_concurrent_sends_share_the_connection(self, gmail_server: GmailServer) -> None:
        """Sends awaited together take turns on one connection."""
        transport = _transport(gmail_server)
        await asyncio.gather(*(transport.send(make_message(subject=f"#{n}")) for n in range(3)))
        await transport.aclose()
        assert gmail_server.connections == 1
        assert sorted(received.subject for received in gmail_server.messages) == [
            "#0",
            "#1",
            "#2",
        ]

    def test_rejects_inconsistent_options(self) -> None:
        """Mutually exclusive or unsafe options fail at construction with ValueError."""
        base: dict[str, Any] = {"host": "smtp.gmail.com", "port": 587, "security": "starttls"}
        bad: list[dict[str, Any]] = [
            {"username": SENDER, "password": "x", "token_provider": lambda: TOKEN},
            {"password": "x"},
            {"username": SENDER, "password": "x", "security": "none"},
            {"timeout": 0},
            {"step_timeout": -1},
            {"local_hostname": "evil\r\nRCPT TO:<x@example.com>"},
        ]
        for options in bad:
            with pytest.raises(ValueError, match=r"\w"):
                SMTPTransport(**{**base, **options})

    def test_defaults(self) -> None:
        """The step timeout defaults to the deadline capped at 10 s; repr shows no secret."""
        transport = SMTPTransport(
            host="smtp.gmail.com",
            port=587,
            security="starttls",
            username=SENDER,
            password="hunter2 hunter2",
        )
        assert (transport.timeout, transport.step_timeout) == (30.0, 10.0)
        assert SMTPTransport(host="h", port=25, security="none", timeout=2).step_timeout == 2.0
        assert repr(transport) == (
            "<SMTPTransport smtp.gmail.com:587 starttls username='alerts@example.com'>"
        )
