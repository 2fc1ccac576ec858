"""AlertHandler end to end, through the Gmail-like server with STARTTLS/TLS and AUTH."""

from __future__ import annotations

import email.policy
import logging
import logging.config
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest

from smtp_alerts import AlertHandler, Engine
from smtp_alerts.errors import ConfigurationError
from smtp_alerts.testing import GmailServer


@pytest.fixture
def app_logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("tests.handler.shop")
    log.propagate = False
    yield log
    for handler in log.handlers[:]:
        log.removeHandler(handler)
        handler.close()


def text_of(message: Any) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(message: Any) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


@pytest.fixture(params=["starttls", "tls"])
def any_server(request: pytest.FixtureRequest) -> Iterator[GmailServer]:
    with GmailServer(mode=request.param) as server:
        yield server


class TestEndToEnd:
    def test_digest_through_gmail_like_server(
        self, any_server: GmailServer, app_logger: logging.Logger
    ) -> None:
        """Errors logged through the handler arrive as one digest over TLS with AUTH."""
        handler = AlertHandler(engine=Engine(any_server.settings(group_wait="10s")))
        app_logger.addHandler(handler)
        for order in range(500):
            app_logger.error("payment failed for order %s", order)
        prices: dict[str, int] = {}
        try:
            prices["sku"]
        except KeyError:
            app_logger.exception("could not price item")
        assert handler.flush(timeout=10)
        (received,) = any_server.messages
        message = received.message
        assert list(received.recipients) == ["oncall@example.com"]
        assert any_server.auth_attempts[-1][2] is True
        assert message["Auto-Submitted"] == "auto-generated"
        assert message["Message-ID"]
        assert message["Date"]
        assert "2 problems" in message["Subject"]
        assert "501 events" in message["Subject"]
        text = text_of(message)
        assert "500" in text
        assert "payment failed for order 0" in text
        assert "KeyError" in text
        assert text.count("Traceback (most recent call last)") == 1
        handler.close()

    def test_dictconfig_from_environment(
        self, gmail_server: GmailServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """dictConfig with only class and level reads every setting from SMTP_ALERTS_*."""
        settings = gmail_server.settings()
        password = settings.read_password()
        assert password is not None
        env = {
            "HOST": settings.host,
            "PORT": str(settings.port),
            "USERNAME": settings.username,
            "PASSWORD": password,
            "TO": "ops@example.com,dev@example.com",
            "CA_FILE": str(settings.ca_file),
            "GROUP_WAIT": "1h",
        }
        for name, value in env.items():
            monkeypatch.setenv(f"SMTP_ALERTS_{name}", str(value))
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {"alerts": {"class": "smtp_alerts.AlertHandler", "level": "ERROR"}},
                "loggers": {"tests.dictconfig": {"handlers": ["alerts"], "propagate": False}},
            }
        )
        log = logging.getLogger("tests.dictconfig")
        (handler,) = log.handlers
        assert isinstance(handler, AlertHandler)
        log.warning("below the handler's level")
        log.error("configured from the environment")
        assert handler.flush(timeout=10)
        (received,) = gmail_server.messages
        assert sorted(received.recipients) == ["dev@example.com", "ops@example.com"]
        assert "configured from the environment" in text_of(received.message)
        assert "below the handler's level" not in text_of(received.message)
        log.removeHandler(handler)
        handler.close()

    def test_missing_settings_fail_at_start(self) -> None:
        """A handler built without settings fails at once, naming the variable."""
        with pytest.raises(ConfigurationError, match="SMTP_ALERTS_TO"):
            AlertHandler()


class TestInjection:
    def test_log_text_cannot_inject_headers(
        self, gmail_server: GmailServer, app_logger: logging.Logger
    ) -> None:
        """CR/LF in the message, logger name and exception text add no header or recipient."""
        handler = AlertHandler(engine=Engine(gmail_server.settings(group_wait="1h")))
        evil = logging.getLogger("evil\r\nBcc: attacker@evil.example")
        evil.propagate = False
        evil.addHandler(handler)
        app_logger.addHandler(handler)
        evil.error("subject\r\nBcc: attacker@evil.example\r\n\r\nbody")
        try:
            raise ValueError("x\r\nTo: attacker@evil.example")
        except ValueError:
            app_logger.exception("boom\nCc: attacker@evil.example")
        app_logger.error("<script>alert(1)</script>")
        assert handler.flush(timeout=10)
        evil.removeHandler(handler)
        (received,) = gmail_server.messages
        assert list(received.recipients) == ["oncall@example.com"]
        parsed = message_from_bytes(received.raw, policy=email.policy.default)
        names = {name.lower() for name in parsed.keys()}  # noqa: SIM118 - header names, not a dict
        assert not names & {"bcc", "cc"}
        assert parsed.get_all("To") == ["oncall@example.com"]
        assert "attacker" not in str(parsed["Subject"])
        assert "<script>" not in html_of(parsed)
        assert "&lt;script&gt;" in html_of(parsed)
        handler.close()


class TestTransportSafety:
    def test_no_starttls_means_no_auth(self, app_logger: logging.Logger) -> None:
        """A server that does not offer STARTTLS never receives the credentials."""
        with GmailServer(offer_starttls=False) as server:
            engine = Engine(server.settings(timeout="2s"))
            app_logger.addHandler(AlertHandler(engine=engine))
            app_logger.error("must not be sent in clear")
            assert not engine.flush(timeout=10)
            assert server.auth_attempts == []
            assert server.messages == []
            # A flush may try the spooled digest once more: the kind is what counts.
            assert set(engine.stats().failures) == {"StartTLSNotOfferedError"}
            engine.close(timeout=1)

    def test_untrusted_certificate_refused(self, app_logger: logging.Logger) -> None:
        """A server whose certificate is not signed by a trusted CA gets nothing."""
        with GmailServer() as server:
            engine = Engine(server.settings(ca_file=None, timeout="2s"))
            app_logger.addHandler(AlertHandler(engine=engine))
            app_logger.error("must not reach an impostor")
            assert not engine.flush(timeout=10)
            assert server.auth_attempts == []
            assert server.messages == []
            # A flush may try the spooled digest once more: the kind is what counts.
            assert set(engine.stats().failures) == {"CertificateVerifyError"}
            engine.close(timeout=1)


class TestBounds:
    def test_flush_and_close_bounded_with_silent_server(self, app_logger: logging.Logger) -> None:
        """flush(timeout) and close() return within their bound when the server never answers."""
        with GmailServer(greet=False) as server:
            engine = Engine(server.settings(timeout="3s", shutdown_timeout="0.5s"))
            handler = AlertHandler(engine=engine)
            app_logger.addHandler(handler)
            app_logger.error("into the void")
            started = time.monotonic()
            assert handler.flush(timeout=0.5) is False
            assert time.monotonic() - started < 1.5
            started = time.monotonic()
            app_logger.removeHandler(handler)
            handler.close()  # flushes, bounded by SHUTDOWN_TIMEOUT: it does not own the engine
            assert time.monotonic() - started < 1.5
            started = time.monotonic()
            assert engine.close() is False
            assert time.monotonic() - started < 1.5
            # The attempt goes on in the background until its own deadline; wait
            # for it here so its report belongs to this test.
            assert engine._thread is not None
            engine._thread.join(10)
            assert not engine._thread.is_alive()

    def test_first_alert_latency_is_group_wait(
        self, gmail_server: GmailServer, app_logger: logging.Logger
    ) -> None:
        """The first alert is accepted by the server GROUP_WAIT after it was logged, not later."""
        handler = AlertHandler(engine=Engine(gmail_server.settings(group_wait="300ms")))
        app_logger.addHandler(handler)
        started = time.monotonic()
        app_logger.error("first")
        gmail_server.wait_for_messages(1, timeout=5)
        elapsed = time.monotonic() - started
        assert 0.3 <= elapsed < 3.0  # the tight figure comes from benchmarks/, not from here
        handler.close()


class TestSettingsInCode:
    """``AlertHandler(to=[...])`` configures the engine the whole process shares (issue 13)."""

    def test_the_first_handler_configures_the_process_engine(self, tmp_path: Path) -> None:
        """get_engine() and the crash hooks use it; a second equal handler shares it."""
        source = """
            import logging, smtp_alerts
            handler = smtp_alerts.AlertHandler(to=["lead@example.com"], group_wait="1h")
            logging.getLogger().addHandler(handler)
            assert smtp_alerts.get_engine() is handler.engine
            again = smtp_alerts.AlertHandler(to=["lead@example.com"], group_wait="1h")
            assert again.engine is handler.engine
            other = smtp_alerts.AlertHandler(to=["billing@example.com"])
            assert other.engine is not handler.engine
            other.close()
            smtp_alerts.install_crash_hooks()
            logging.error("an error through the handler")
            raise KeyError("database_url")
        """
        with GmailServer() as server:
            env = {k: v for k, v in server.environ().items() if k != "SMTP_ALERTS_TO"}
            script = tmp_path / "app.py"
            script.write_text(textwrap.dedent(source), encoding="utf-8")
            result = subprocess.run(  # noqa: S603 - our own interpreter and script
                [sys.executable, str(script)],
                env={**_without_settings(), **env},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            (received,) = server.messages  # one engine: the crash and the error together
        assert result.returncode == 1, result.stderr
        assert "AssertionError" not in result.stderr
        assert "SMTP_ALERTS_TO is required" not in result.stderr
        assert received.recipients == ("lead@example.com",)
        assert "KeyError" in received.subject
        body = received.message.get_body(preferencelist=("plain",))
        assert body is not None
        assert "an error through the handler" in body.get_content()


def _without_settings() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SMTP_ALERTS_")}
