"""Every fault of the Gmail-like server, end to end through the engine.

For each fault the digest is either delivered through the next channel, or
kept in the spool and delivered once the server heals; nothing is lost and
nothing is sent twice (counted by Message-ID).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from smtp_alerts import AlertHandler, ConfigurationError, Engine, Settings
from smtp_alerts._delivery.policy import QUOTA_PARK
from smtp_alerts.testing import Faults, GmailServer, ManualClock, WebhookListener

FAULTS: dict[str, Faults] = {
    "refused": Faults(refuse_connections=True),
    "never greets": Faults(greet=False),
    "greets slowly": Faults(greeting_delay=1.5),
    "slow every step": Faults(reply_delay=0.2),
    "421 on greeting": Faults(greeting_reply="421"),
    "454 on AUTH": Faults(auth_reply="454"),
    "534 5.7.9 on AUTH": Faults(auth_reply="534-5.7.9"),
    "534 5.7.14 on AUTH": Faults(auth_reply="534-5.7.14"),
    "535 on AUTH": Faults(auth_reply="535"),
    "no STARTTLS": Faults(offer_starttls=False),
    "550 5.4.5 on MAIL": Faults(mail_reply="550-5.4.5"),
    "552 on DATA": Faults(data_reply="552"),
    "disconnect in DATA": Faults(disconnect_in_data=True),
    "hang after DATA": Faults(hang_after_data=True),
}


# Retries within a delivery round pause milliseconds, not seconds.
pytestmark = pytest.mark.usefixtures("fast_retries")


def trust_both(tmp_path: Path, *servers: GmailServer) -> Path:
    bundle = tmp_path / "cas.pem"
    bundle.write_text("".join(s.ca_file.read_text() for s in servers))
    return bundle


def message_ids(*servers: GmailServer) -> Counter[str]:
    return Counter(str(m.message["Message-ID"]) for s in servers for m in s.messages)


def faulty_settings(server: GmailServer, **overrides: Any) -> dict[str, Any]:
    # Tight timeouts: each fault is recognised within about a second.
    return {"timeout": "1s", "group_wait": "1h", **overrides}


class TestNextChannel:
    @pytest.mark.parametrize("fault", list(FAULTS))
    def test_backup_server_takes_it(self, fault: str, tmp_path: Path, log: logging.Logger) -> None:
        """With the primary failing this way, the backup SMTP server delivers the digest once."""
        with GmailServer(faults=FAULTS[fault]) as primary, GmailServer() as backup:
            settings = primary.settings(
                **faulty_settings(primary),
                ca_file=trust_both(tmp_path, primary, backup),
                backup_host=backup.host,
                backup_port=backup.port,
                backup_username=backup.username,
                backup_password=backup.password,
            )
            engine = Engine(settings)
            log.addHandler(AlertHandler(engine=engine))
            log.error("payment failed for order %s", 1)
            assert engine.flush(timeout=20)
            assert primary.messages == []
            (received,) = backup.messages
            assert "payment failed for order 1" in received.message.as_string()
            assert engine.stats().undelivered == 0
            assert engine.close(timeout=5)


class TestSpoolUntilHealed:
    @pytest.mark.parametrize("fault", list(FAULTS))
    def test_kept_then_delivered_once(self, fault: str, log: logging.Logger) -> None:
        """With the only server failing, the digest waits in the spool until the server heals."""
        clock = ManualClock()
        with GmailServer(faults=FAULTS[fault]) as server:
            engine = Engine(server.settings(**faulty_settings(server)), clock=clock)
            log.addHandler(AlertHandler(engine=engine))
            log.error("disk full on %s", "/var")
            assert not engine.flush(timeout=20)
            assert engine.stats().undelivered == 1
            assert server.messages == []

            server.faults = Faults()  # healed
            clock.advance(QUOTA_PARK + 1)  # past any pause the failure put on the channel
            assert engine.flush(timeout=20)
            assert engine.stats().undelivered == 0
            assert list(message_ids(server).values()) == [1]
            assert engine.close(timeout=5)


class TestShrink:
    def test_too_big_is_rendered_smaller_once(self, log: logging.Logger) -> None:
        """After a 552 the digest is re-rendered smaller and the same server takes it."""
        with GmailServer(faults=Faults(max_message_size=100_000)) as server:
            engine = Engine(server.settings(group_wait="1h"))
            log.addHandler(AlertHandler(engine=engine))
            for n in range(60):
                try:
                    raise ValueError("x" * 6000)
                except ValueError:  # noqa: PERF203 - sixty distinct tracebacks are the point
                    logging.getLogger(f"{log.name}.big{n}").exception("big %d", n)
            # Each child logger propagates to the handler on the parent.
            assert engine.flush(timeout=20)
            (received,) = server.messages
            assert server.fired["max_message_size"] == 1  # the full rendering was refused once
            assert len(received.raw) <= 100_000
            body = received.message.get_body(preferencelist=("plain",))
            assert body is not None
            text = body.get_content()
            assert "Some details were left out" in text  # the smaller rendering says so
            assert text.count("Traceback (most recent call last)") == 0
            assert engine.stats().failures == {"MessageTooLargeError": 1}
            assert engine.close(timeout=5)


class TestBreaker:
    def test_refused_login_rests_after_the_threshold(
        self, tmp_path: Path, log: logging.Logger
    ) -> None:
        """A primary that refuses the login is tried at most AUTH_FAILURE_THRESHOLD times."""
        with GmailServer(faults=Faults(auth_reply="535")) as primary, GmailServer() as backup:
            settings = primary.settings(
                timeout="1s",
                group_wait="1h",
                ca_file=trust_both(tmp_path, primary, backup),
                backup_host=backup.host,
                backup_port=backup.port,
                backup_username=backup.username,
                backup_password=backup.password,
                auth_failure_threshold=2,
            )
            engine = Engine(settings)
            log.addHandler(AlertHandler(engine=engine))
            for n in range(4):
                log.error("failure %d", n)
                assert engine.flush(timeout=20)
            assert len(primary.auth_attempts) == 2  # no login storm
            subjects = [str(m.message["Subject"]) for m in backup.messages]
            assert len(subjects) == 5  # four digests and the meta-alert
            assert sum("cannot log in" in subject for subject in subjects) == 1
            assert engine.stats().resting_logins == (
                f"{primary.username}@{primary.host}:{primary.port}",
            )
            primary_stats = engine.stats().channels[f"{primary.host}:{primary.port}"]
            assert primary_stats.breaker is not None
            assert primary_stats.breaker.state == "closed"  # the login rests, not the server
            assert engine.close(timeout=5)


class TestAppriseFallback:
    def test_webhook_gets_the_digest_when_gmail_fails(self, log: logging.Logger) -> None:
        """With every SMTP channel failing, a real apprise json:// URL delivers the digest."""
        with GmailServer(faults=Faults(auth_reply="535")) as server, WebhookListener() as hook:
            settings = server.settings(
                timeout="2s", group_wait="1h", fallback_urls=[hook.apprise_url("json")]
            )
            engine = Engine(settings)
            log.addHandler(AlertHandler(engine=engine))
            for order in range(3):
                log.error("payment failed for order %s", order)
            assert engine.flush(timeout=20)
            (request,) = hook.requests
            assert request.json is not None
            assert "(3 events)" in request.json["title"]
            assert "payment failed for order \u2039\u2026\u203a" in request.json["message"]
            assert server.messages == []
            delivery = engine._runner._delivery if engine._runner else None
            history = delivery.spool.history() if delivery else []  # type: ignore[attr-defined]
            assert [(a.channel.split(":")[0], a.ok) for a in reversed(history)] == [
                ("127.0.0.1", False),
                ("apprise", True),
            ]
            assert engine.close(timeout=5)

    def test_bad_fallback_url_fails_at_start_naming_the_variable(self) -> None:
        """A fallback URL that is not scheme://... is refused by the settings, secret unshown."""
        with pytest.raises(ConfigurationError, match="SMTP_ALERTS_FALLBACK_URLS") as caught:
            Settings(
                to=["a@example.com"], from_="b@example.com", fallback_urls="hooks-SECRET-TOKEN"
            )
        assert "SECRET" not in str(caught.value)
