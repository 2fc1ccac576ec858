"""The Gmail-like SMTP server in smtp_alerts.testing, driven by the stdlib's smtplib."""

from __future__ import annotations

import base64
import contextlib
import gc
import json
import logging
import re
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtp_alerts import Settings
from smtp_alerts.testing import AuthAttempt, Faults, GmailServer

PASSWORD = "abcd efgh ijkl mnop"
USER = "alerts@example.com"
MESSAGE = (
    "From: alerts@example.com\r\nTo: oncall@example.com\r\nSubject: db is down\r\n"
    "Message-ID: <1@example.com>\r\n\r\nThe database is down.\r\n"
)
GSMTP_ID = r"\S+ - gsmtp"


def _trusting(server: GmailServer) -> ssl.SSLContext:
    context = ssl.create_default_context()
    server.ca.configure_trust(context)
    return context


def _client(server: GmailServer, *, timeout: float = 2.0) -> smtplib.SMTP:
    """An smtplib client at the server's first command, TLS already on when the mode needs it."""
    # local_hostname: smtplib would otherwise call socket.getfqdn(), which can stall on DNS.
    if server.mode == "tls":
        return smtplib.SMTP_SSL(
            server.host,
            server.port,
            local_hostname="client.example",
            timeout=timeout,
            context=_trusting(server),
        )
    return smtplib.SMTP(server.host, server.port, local_hostname="client.example", timeout=timeout)


def _secure_client(server: GmailServer) -> smtplib.SMTP:
    """A client after EHLO, STARTTLS (in starttls mode) and EHLO again."""
    client = _client(server)
    client.ehlo()
    if server.mode == "starttls":
        client.starttls(context=_trusting(server))
        client.ehlo()
    return client


def _plain_blob(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def _xoauth2_blob(user: str, token: str) -> str:
    return base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode()


@pytest.fixture
def debug_logs() -> Iterator[list[str]]:
    """Every record of the server's, aiosmtpd's and asyncio's loggers, formatted, at DEBUG."""
    lines: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    loggers = [logging.getLogger(name) for name in ("smtp_alerts", "mail.log", "asyncio")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield lines
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def server() -> Iterator[GmailServer]:
    """A Gmail-like server in starttls mode."""
    with GmailServer() as running:
        yield running


class TestGmailServer:
    """GmailServer: Gmail's conversation, recording, faults and lifecycle."""

    def test_greeting_uses_gmails_words(self, server: GmailServer) -> None:
        """The 220 greeting reads like smtp.gmail.com's."""
        client = _client(server)
        code, _ = client.ehlo()
        client.close()
        assert code == 250
        with socket.create_connection((server.host, server.port), timeout=2) as raw:
            greeting = raw.recv(200).decode()
        assert re.fullmatch(rf"220 smtp\.gmail\.com ESMTP {GSMTP_ID}\r\n", greeting)

    def test_ehlo_offers_starttls_then_auth(self, server: GmailServer) -> None:
        """Before TLS EHLO offers STARTTLS and no AUTH; after it, AUTH and no STARTTLS."""
        client = _client(server)
        _, before = client.ehlo()
        client.starttls(context=_trusting(server))
        _, after = client.ehlo()
        client.quit()
        assert before.decode().splitlines() == [
            "smtp.gmail.com at your service, [127.0.0.1]",
            "SIZE 35882577",
            "8BITMIME",
            "STARTTLS",
            "ENHANCEDSTATUSCODES",
            "PIPELINING",
            "CHUNKING",
            "SMTPUTF8",
        ]
        assert after.decode().splitlines() == [
            "smtp.gmail.com at your service, [127.0.0.1]",
            "SIZE 35882577",
            "8BITMIME",
            "AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH",
            "ENHANCEDSTATUSCODES",
            "PIPELINING",
            "CHUNKING",
            "SMTPUTF8",
        ]

    def test_auth_and_mail_before_starttls_are_refused(self, server: GmailServer) -> None:
        """AUTH and MAIL before STARTTLS get Gmail's 530 5.7.0, and the AUTH is still recorded."""
        client = _client(server)
        client.ehlo()
        auth = client.docmd("AUTH", "PLAIN " + _plain_blob(USER, PASSWORD))
        mail = client.docmd("MAIL", f"FROM:<{USER}>")
        client.quit()
        for code, text in (auth, mail):
            assert code == 530
            assert re.fullmatch(
                rf"5\.7\.0 Must issue a STARTTLS command first\. {GSMTP_ID}", text.decode()
            )
        assert server.auth_attempts == [("PLAIN", None, False)]

    def test_mail_without_auth_is_refused(self, server: GmailServer) -> None:
        """MAIL after TLS but before AUTH gets 530 5.7.0 Authentication Required."""
        client = _secure_client(server)
        code, text = client.docmd("MAIL", f"FROM:<{USER}>")
        client.quit()
        assert code == 530
        assert text.decode().startswith("5.7.0 Authentication Required.")
        assert "https://support.google.com/mail/?p=WantAuthError" in text.decode()

    def test_auth_plain_and_login_succeed(self, server: GmailServer) -> None:
        """The app password works with AUTH PLAIN and with AUTH LOGIN (both forms)."""
        replies = []
        for command in (
            "PLAIN " + _plain_blob(USER, PASSWORD),
            "LOGIN " + base64.b64encode(USER.encode()).decode(),
            "LOGIN",
        ):
            client = _secure_client(server)
            reply = client.docmd("AUTH", command)
            if command == "LOGIN":
                assert reply == (334, b"VXNlcm5hbWU6")  # "Username:"
                reply = client.docmd(base64.b64encode(USER.encode()).decode())
            if reply[0] == 334:
                assert reply == (334, b"UGFzc3dvcmQ6")  # "Password:"
                reply = client.docmd(base64.b64encode(PASSWORD.encode()).decode())
            replies.append(reply)
            client.quit()
        assert replies == [(235, b"2.7.0 Accepted")] * 3
        assert server.auth_attempts == [
            ("PLAIN", USER, True),
            ("LOGIN", USER, True),
            ("LOGIN", USER, True),
        ]

    def test_wrong_password_gets_gmails_535(self, server: GmailServer) -> None:
        """A wrong password gets Gmail's two-line 535 5.7.8 and one failed attempt."""
        client = _secure_client(server)
        code, text = client.docmd("AUTH", "PLAIN " + _plain_blob(USER, "wrong"))
        client.quit()
        assert code == 535
        first, second = text.decode().split("\n")
        assert first == "5.7.8 Username and Password not accepted. For more information, go to"
        assert re.fullmatch(
            rf"5\.7\.8  https://support\.google\.com/mail/\?p=BadCredentials {GSMTP_ID}", second
        )
        assert server.auth_attempts == [AuthAttempt("PLAIN", USER, success=False)]

    def test_xoauth2_token_accepted(self) -> None:
        """AUTH XOAUTH2 with the configured bearer token is accepted."""
        with GmailServer(xoauth2_token="ya29.good") as server:
            client = _secure_client(server)
            reply = client.docmd("AUTH", "XOAUTH2 " + _xoauth2_blob(USER, "ya29.good"))
            client.quit()
            assert reply == (235, b"2.7.0 Accepted")
            assert server.auth_attempts == [("XOAUTH2", USER, True)]

    def test_xoauth2_failure_is_a_json_challenge_then_535(self, server: GmailServer) -> None:
        """A refused token gets a 334 with Gmail's JSON error, then 535 after the empty reply."""
        client = _secure_client(server)
        code, challenge = client.docmd("AUTH", "XOAUTH2 " + _xoauth2_blob(USER, "ya29.expired"))
        final = client.docmd("")
        client.quit()
        assert code == 334
        assert json.loads(base64.b64decode(challenge)) == {
            "status": "400",
            "schemes": "Bearer",
            "scope": "https://mail.google.com/",
        }
        assert final[0] == 535
        assert server.auth_attempts == [("XOAUTH2", USER, False)]

    def test_message_is_recorded_with_envelope_and_auth(self, server: GmailServer) -> None:
        """An accepted message is recorded with its envelope, parsed form, raw bytes and login."""
        client = _secure_client(server)
        client.login(USER, PASSWORD)
        client.sendmail(USER, ["oncall@example.com", "ops@example.com"], MESSAGE)
        noop_reply = client.noop()
        quit_reply = client.quit()
        (received,) = server.wait_for_messages(1, timeout=2)
        assert received.sender == USER
        assert received.recipients == ("oncall@example.com", "ops@example.com")
        assert received.message["Subject"] == "db is down" == received.subject
        assert received.message.get_content() == "The database is down.\n"
        assert received.raw == MESSAGE.encode()
        assert (received.auth_mechanism, received.auth_username) == ("PLAIN", USER)
        assert re.fullmatch(rf"2\.0\.0 OK  {GSMTP_ID}", noop_reply[1].decode())
        assert re.fullmatch(rf"2\.0\.0 closing connection {GSMTP_ID}", quit_reply[1].decode())

    def test_data_reply_uses_gmails_words(self, server: GmailServer) -> None:
        """The reply to the message data is Gmail's 250 2.0.0 OK with a timestamp."""
        client = _secure_client(server)
        client.login(USER, PASSWORD)
        client.mail(USER)
        client.rcpt("oncall@example.com")
        code, text = client.data(MESSAGE.encode())
        client.quit()
        assert code == 250
        assert re.fullmatch(rf"2\.0\.0 OK  \d{{10}} {GSMTP_ID}", text.decode())

    def test_implicit_tls_mode(self) -> None:
        """In tls mode TLS starts with the connection and AUTH is offered at once."""
        with GmailServer(mode="tls") as server:
            client = _client(server)
            _, features = client.ehlo()
            client.login(USER, PASSWORD)
            client.sendmail(USER, ["oncall@example.com"], MESSAGE)
            client.quit()
            assert "STARTTLS" not in features.decode()
            assert len(server.wait_for_messages(1, timeout=2)) == 1

    def test_implicit_tls_handshake_with_the_client_hello_on_arrival(self) -> None:
        """Every handshake completes though the ClientHello comes with the connection.

        smtplib sends it at once; on Python 3.10 it used to reach the server's TLS
        protocol before that was set up, which dropped it, and the handshake hung.
        """
        with GmailServer(mode="tls") as server:
            for _ in range(20):
                _client(server, timeout=1.0).quit()
            assert server.connections == 20

    def test_client_gone_before_the_greeting_leaves_no_tls_transport_open(self) -> None:
        """A TLS client that leaves while the greeting is held leaves no transport unclosed."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            with GmailServer(mode="tls", greet=False) as server, contextlib.ExitStack() as stack:
                for _ in range(3):
                    raw = socket.create_connection((server.host, server.port), timeout=1)
                    tls = _trusting(server).wrap_socket(raw, server_hostname=server.host)
                    stack.enter_context(tls)
                deadline = time.monotonic() + 5
                while server.fired["greet"] < 3 and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert server.fired["greet"] == 3
            gc.collect()  # an unclosed transport warns as it is collected
        assert not [str(w.message) for w in caught if w.category is ResourceWarning]

    def test_plain_mode_offers_auth_without_tls(self) -> None:
        """In plain mode there is no STARTTLS and AUTH works in clear text."""
        with GmailServer(mode="plain") as server:
            client = _client(server)
            _, features = client.ehlo()
            client.login(USER, PASSWORD)
            client.sendmail(USER, ["oncall@example.com"], MESSAGE)
            client.quit()
            assert "STARTTLS" not in features.decode()
            assert "AUTH LOGIN PLAIN" in features.decode()
            assert server.settings().effective_security == "none"

    def test_auth_optional(self) -> None:
        """With auth_required=False a client may send without AUTH."""
        with GmailServer(auth_required=False) as server:
            client = _secure_client(server)
            client.sendmail(USER, ["oncall@example.com"], MESSAGE)
            client.quit()
            (received,) = server.wait_for_messages(1, timeout=2)
            assert received.auth_mechanism is None

    def test_starttls_can_be_withheld(self) -> None:
        """offer_starttls=False hides STARTTLS, refuses it, and offers AUTH in clear text."""
        with GmailServer(offer_starttls=False) as server:
            client = _client(server)
            _, features = client.ehlo()
            code, _ = client.docmd("STARTTLS")
            client.quit()
            assert "STARTTLS" not in features.decode()
            assert "AUTH " in features.decode()
            assert code == 502

    def test_silent_server_never_greets(self) -> None:
        """greet=False accepts the connection and never sends a byte."""
        with (
            GmailServer(greet=False) as server,
            socket.create_connection((server.host, server.port), timeout=0.2) as raw,
            pytest.raises(TimeoutError),
        ):
            raw.recv(10)

    def test_reply_delay_delays_every_reply(self) -> None:
        """reply_delay holds back the greeting and each reply."""
        with GmailServer(reply_delay=0.1) as server:
            started = time.monotonic()
            client = _client(server)
            client.ehlo()
            elapsed = time.monotonic() - started
            client.close()
        assert elapsed >= 0.2

    def test_faults_and_password_can_change_while_running(self) -> None:
        """A broken server heals when its faults change, and a rotated password takes effect."""
        with GmailServer(greet=False) as server:
            with pytest.raises((TimeoutError, smtplib.SMTPServerDisconnected)):
                _client(server, timeout=0.2)
            server.faults.greet = True
            server.password = "new app password"
            client = _secure_client(server)
            old = client.docmd("AUTH", "PLAIN " + _plain_blob(USER, PASSWORD))
            new = client.docmd("AUTH", "PLAIN " + _plain_blob(USER, "new app password"))
            client.quit()
            assert (old[0], new[0]) == (535, 235)

    def test_drop_connections_cuts_clients(self, server: GmailServer) -> None:
        """drop_connections() closes every open client connection."""
        client = _secure_client(server)
        server.drop_connections()
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
        client.close()

    @pytest.mark.parametrize(
        ("fault", "value", "expected"),
        [
            (
                "auth_reply",
                "454",
                [r"4\.7\.0 Too many login attempts, please try again later\. {id}"],
            ),
            (
                "auth_reply",
                "530",
                [
                    r"5\.7\.0 Authentication Required\. For more information, go to",
                    r"5\.7\.0  https://support\.google\.com/mail/\?p=WantAuthError {id}",
                ],
            ),
            (
                "auth_reply",
                "534-5.7.9",
                [
                    r"5\.7\.9 Application-specific password required\. Learn more at",
                    r"5\.7\.9  https://support\.google\.com/mail/\?p=InvalidSecondFactor {id}",
                ],
            ),
            (
                "auth_reply",
                "534-5.7.14",
                [
                    (
                        r"5\.7\.14 <https://accounts\.google\.com/signin/continue\?\S+> Please"
                        r" log in via your web browser and"
                    ),
                    r"5\.7\.14 then try again\.",
                    r"5\.7\.14  Learn more at https://support\.google\.com/mail/answer/78754 {id}",
                ],
            ),
            (
                "auth_reply",
                "535",
                [
                    r"5\.7\.8 Username and Password not accepted\. For more information, go to",
                    r"5\.7\.8  https://support\.google\.com/mail/\?p=BadCredentials {id}",
                ],
            ),
            (
                "mail_reply",
                "550-5.4.5",
                [
                    r"5\.4\.5 Daily user sending limit exceeded\. For more information on Gmail",
                    r"5\.4\.5 sending limits go to",
                    r"5\.4\.5  https://support\.google\.com/a/answer/166852 {id}",
                ],
            ),
            (
                "data_reply",
                "552",
                [
                    r"5\.3\.4 Your message exceeded Google's message size limits\. Please visit",
                    r"5\.3\.4  https://support\.google\.com/mail/\?p=MaxSizeError to view our size",
                    r"5\.3\.4 guidelines\. {id}",
                ],
            ),
        ],
    )
    def test_fault_replies_use_gmails_words(
        self, server: GmailServer, fault: str, value: str, expected: list[str]
    ) -> None:
        """Each scripted refusal is Gmail's reply, line for line, and counts as fired."""
        setattr(server.faults, fault, value)
        client = _secure_client(server)
        reply = client.docmd("AUTH", "PLAIN " + _plain_blob(USER, PASSWORD))
        if fault == "mail_reply":
            reply = client.mail(USER)
        elif fault == "data_reply":
            client.mail(USER)
            client.rcpt("oncall@example.com")
            reply = client.data(MESSAGE.encode())
        client.quit()
        assert reply[0] == int(value[:3])
        lines = reply[1].decode().split("\n")
        assert len(lines) == len(expected)
        for line, pattern in zip(lines, expected, strict=True):
            assert re.fullmatch(pattern.format(id=GSMTP_ID), line), line
        assert server.fired == {fault: 1}
        assert server.messages == []

    def test_421_greeting_then_close(self, server: GmailServer) -> None:
        """greeting_reply='421' greets with Gmail's 421 4.7.0 and closes the connection."""
        server.faults.greeting_reply = "421"
        with socket.create_connection((server.host, server.port), timeout=2) as raw:
            greeting = raw.makefile("rb").read()
        assert re.fullmatch(
            rf"421 4\.7\.0 Try again later, closing connection\. {GSMTP_ID}\r\n", greeting.decode()
        )

    def test_refuse_connections_closes_and_reopens_the_port(self, server: GmailServer) -> None:
        """refuse_connections makes the port refuse at once; switching it off reopens it."""
        port = server.port
        server.faults.refuse_connections = True
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((server.host, port), timeout=2)
        server.faults.refuse_connections = False
        _client(server).quit()
        assert (server.port, server.connections) == (port, 1)

    def test_replacing_faults_replaces_the_refusal(self, server: GmailServer) -> None:
        """Assigning a new Faults object applies its refusal; the old object no longer acts."""
        old = server.faults
        server.faults = Faults(refuse_connections=True)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((server.host, server.port), timeout=2)
        server.faults = Faults()
        old.refuse_connections = True
        _client(server).quit()
        assert server.connections == 1

    def test_disconnect_in_data(self, server: GmailServer) -> None:
        """disconnect_in_data cuts the connection after 354 and records nothing."""
        server.faults.disconnect_in_data = True
        client = _secure_client(server)
        client.login(USER, PASSWORD)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.sendmail(USER, ["oncall@example.com"], MESSAGE)
        client.close()
        assert server.fired == {"disconnect_in_data": 1}
        assert server.messages == []

    def test_faults_refuse_unknown_replies(self) -> None:
        """A reply fault outside Gmail's known replies is rejected on assignment."""
        faults = Faults()
        with pytest.raises(ValueError, match="auth_reply must be one of"):
            faults.auth_reply = "999"  # type: ignore[assignment]
        with pytest.raises(ValueError, match="greeting_reply"):
            Faults(greeting_reply="554")  # type: ignore[arg-type]
        assert faults == Faults()

    def test_faults_argument(self) -> None:
        """GmailServer(faults=...) starts with those faults and refuses the older keywords too."""
        with pytest.raises(ValueError, match="not both"):
            GmailServer(faults=Faults(), greet=False)
        with GmailServer(faults=Faults(greet=False, fail_times=1)) as server:
            with pytest.raises((TimeoutError, smtplib.SMTPServerDisconnected)):
                _client(server, timeout=0.2)
            _client(server).quit()  # fail_times spent: the server greets again
            assert server.fired == {"greet": 1}
            assert server.faults.fail_times == 0

    def test_counts_connections(self, server: GmailServer) -> None:
        """connections counts every accepted TCP connection."""
        for _ in range(2):
            _client(server).quit()
        assert server.connections == 2

    def test_wait_for_messages_times_out(self, server: GmailServer) -> None:
        """wait_for_messages raises TimeoutError when too few messages arrived."""
        with pytest.raises(TimeoutError, match="0 of 1 messages"):
            server.wait_for_messages(1, timeout=0.05)

    def test_settings_point_at_the_server(self, server: GmailServer) -> None:
        """settings() describes this server, with short windows, and overrides win."""
        settings = server.settings(group_wait="1s")
        assert isinstance(settings, Settings)
        assert (settings.host, settings.port, settings.effective_security) == (
            "127.0.0.1",
            server.port,
            "starttls",
        )
        assert (settings.username, settings.read_password(), settings.sender) == (
            USER,
            PASSWORD,
            USER,
        )
        assert settings.ca_file == server.ca_file
        assert settings.to == ["oncall@example.com"]
        assert (settings.group_wait, settings.group_interval) == (1.0, 0.0)
        assert settings.fallback_urls == []

    def test_settings_with_password_file(self, server: GmailServer, tmp_path: Path) -> None:
        """A password_file override replaces the password rather than clashing with it."""
        secret = tmp_path / "password"
        secret.write_text(PASSWORD + "\n")
        settings = server.settings(password_file=secret)
        assert settings.password is None
        assert settings.read_password() == PASSWORD

    def test_lifecycle(self) -> None:
        """start() binds 127.0.0.1, stop() is idempotent and removes the CA file."""
        server = GmailServer(mode="tls")
        with pytest.raises(RuntimeError):
            _ = server.port
        server.start()
        ca_file = server.ca_file
        assert ca_file.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
        assert server.host == "127.0.0.1"
        assert repr(server) == f"<GmailServer tls 127.0.0.1:{server.port}>"
        server.stop()
        server.stop()
        assert not ca_file.exists()

    def test_stop_with_clients_mid_handshake(self) -> None:
        """stop() returns promptly even with a client stuck in the TLS handshake."""
        server = GmailServer(mode="tls").start()
        raw = socket.create_connection((server.host, server.port), timeout=1)
        started = time.monotonic()
        server.stop()
        raw.close()
        assert time.monotonic() - started < 1

    def test_secrets_never_logged(self, debug_logs: list[str]) -> None:
        """No log line of the server (or aiosmtpd) shows the password or its base64 forms."""
        with GmailServer(xoauth2_token="ya29.secret-token") as server:
            client = _secure_client(server)
            client.docmd("AUTH", "PLAIN " + _plain_blob(USER, "wrong password"))
            client.docmd("AUTH", "LOGIN " + base64.b64encode(USER.encode()).decode())
            client.docmd(base64.b64encode(b"wrong password").decode())
            client.docmd("AUTH", "XOAUTH2 " + _xoauth2_blob(USER, "ya29.secret-token"))
            client.quit()
        assert len(server.auth_attempts) == 3
        secrets = [
            "wrong password",
            base64.b64encode(b"wrong password").decode(),
            _plain_blob(USER, "wrong password"),
            "ya29.secret-token",
            _xoauth2_blob(USER, "ya29.secret-token"),
        ]
        text = "\n".join(debug_logs)
        assert "AUTH PLAIN as alerts@example.com: False" in text
        for secret in secrets:
            assert secret not in text

    def test_fixtures(self, gmail_server: GmailServer, gmail_server_tls: GmailServer) -> None:
        """The pytest plugin's fixtures give a running starttls server and a tls one."""
        assert (gmail_server.mode, gmail_server_tls.mode) == ("starttls", "tls")
        assert gmail_server.port != gmail_server_tls.port

    def test_importing_the_testing_package_is_light(self) -> None:
        """Importing smtp_alerts.testing and the plugin loads neither aiosmtpd nor trustme."""
        code = (
            "import sys, smtp_alerts.testing, smtp_alerts.testing._pytest_plugin;"
            "print(sorted({'aiosmtpd', 'trustme', 'aiosmtplib'} & set(sys.modules)))"
        )
        result = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert result.stdout.strip() == "[]"


class TestEnviron:
    def test_environ_configures_settings_for_this_server(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The variables from environ() alone make Settings that point at the server."""
        with GmailServer(mode="tls") as server:
            for name, value in server.environ(GROUP_WAIT="1h").items():
                monkeypatch.setenv(name, value)
            settings = Settings()
            assert (settings.host, settings.port) == (server.host, server.port)
            assert settings.effective_security == "tls"
            assert settings.read_password() == server.password
            assert settings.ca_file == server.ca_file
            assert settings.group_wait == 3600
