"""Alerting about alerting: a refused login becomes a meta-alert, a rest, and a recovery.

Against the Gmail-like server (which answers a wrong password with Gmail's
``535-5.7.8``) and a real apprise ``json://`` URL to a local listener, with
an injected clock so the cool-downs pass without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from smtp_alerts import AlertHandler, Engine
from smtp_alerts._delivery.auth_watch import AUTH_COOL_DOWN
from smtp_alerts._delivery.meta_alert import MetaAlert
from smtp_alerts.testing import Faults, GmailServer, ManualClock, WebhookListener

if TYPE_CHECKING:
    from smtp_alerts.testing._replies import AuthReply

RIGHT = "good pass word"
WRONG = "stale-app-password-9f3k"  # made up, and must never be shown


# Retries within a delivery round pause milliseconds, not seconds.
pytestmark = pytest.mark.usefixtures("fast_retries")


def refusing_engine(server: GmailServer, clock: ManualClock, **overrides: Any) -> Engine:
    """An engine whose password the server does not accept."""
    settings = server.settings(group_wait="1h", timeout="3s", **{"password": WRONG, **overrides})
    return Engine(settings, clock=clock)


def failed_logins(server: GmailServer) -> int:
    return sum(not attempt.success for attempt in server.auth_attempts)


class TestMetaAlert:
    def test_meta_alert_reaches_the_webhook_with_the_fix(
        self, log: logging.Logger, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Three refusals: the webhook gets the 535 diagnosis, the login rests, then recovers."""
        clock = ManualClock()
        with GmailServer(password=RIGHT) as server, WebhookListener() as hook:
            engine = refusing_engine(server, clock, fallback_urls=[hook.apprise_url("json")])
            log.addHandler(AlertHandler(engine=engine))
            for n in range(3):
                log.error("order %d failed", n)
                assert engine.flush(timeout=20)  # the webhook took the digest
                clock.advance(30)
            # Exactly one AUTH per connection, one connection per round.
            assert [a.success for a in server.auth_attempts] == [False, False, False]

            meta = [r for r in hook.requests if "cannot log in" in (r.json or {}).get("title", "")]
            assert len(meta) == 1
            text = meta[0].text
            assert "535 5.7.8" in text
            assert "app password" in text
            assert server.username in text
            assert f"{server.host}:{server.port}" in text
            assert "3 authentication failures" in text
            for request in hook.requests:
                assert WRONG not in request.text
            assert WRONG not in capsys.readouterr().err
            assert engine.stats().meta_alerts == 1
            assert engine.stats().resting_logins == (
                f"{server.username}@{server.host}:{server.port}",
            )

            # Resting: new alerts go to the webhook without touching the login.
            log.error("while resting")
            assert engine.flush(timeout=20)
            clock.advance(AUTH_COOL_DOWN - 60)
            log.error("still resting")
            assert engine.flush(timeout=20)
            assert failed_logins(server) == 3

            # The account is given the password the program has; after the
            # cool-down one probe logs in, and the recovery notice goes everywhere.
            server.password = WRONG
            clock.advance(61)
            assert engine.flush(timeout=20)
            attempts = server.auth_attempts
            assert [a.success for a in attempts[:4]] == [False, False, False, True]
            (notice,) = server.messages
            assert "accepts the login" in notice.message.as_string()
            # It threads with the meta-alert (Gmail threads on the subject).
            assert str(notice.message["Subject"]).startswith("Re: [")
            assert "cannot log in" in str(notice.message["Subject"])
            assert any("accepts the login" in r.text for r in hook.requests)
            assert engine.stats().resting_logins == ()
            assert engine.close(timeout=5)

    def test_no_other_channel_spools_and_recovers_with_rotated_password_file(
        self, log: logging.Logger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Alone on Gmail: the meta-alert goes to stderr and the spool; a new password heals it."""
        clock = ManualClock()
        secret_file = tmp_path / "app-password"
        secret_file.write_text(WRONG + "\n")
        with GmailServer(password=RIGHT) as server:
            settings = server.settings(
                group_wait="1h", timeout="3s", password=None, password_file=secret_file
            )
            engine = Engine(settings, clock=clock)
            log.addHandler(AlertHandler(engine=engine))
            log.error("first")
            assert not engine.flush(timeout=20)
            log.error("second")
            assert not engine.flush(timeout=20)  # the spooled one and the new one: 3 refusals
            assert failed_logins(server) == 3
            err = capsys.readouterr().err
            assert "cannot log in" in err
            assert "535 5.7.8" in err
            assert "kept in the spool" in err
            assert WRONG not in err

            log.error("third")
            assert not engine.flush(timeout=20)
            clock.advance(AUTH_COOL_DOWN / 2)
            assert not engine.flush(timeout=20)
            assert failed_logins(server) == 3  # resting: not one more try
            assert server.messages == []

            secret_file.write_text(RIGHT + "\n")  # rotated, no restart
            clock.advance(AUTH_COOL_DOWN)
            assert engine.flush(timeout=20)
            assert failed_logins(server) == 3
            subjects = [str(m.message["Subject"]) for m in server.messages]
            bodies = "\n".join(m.message.as_string() for m in server.messages)
            for word in ("first", "second", "third"):
                assert word in bodies
            assert any("cannot log in" in s for s in subjects)  # the meta-alert, kept
            assert "accepts the login" in bodies
            assert WRONG not in bodies
            assert engine.stats().undelivered == 0
            assert engine.close(timeout=5)

    def test_failed_probe_rests_twice_as_long(self, log: logging.Logger) -> None:
        """A probe that is refused again is one AUTH, then the login rests a doubled cool-down."""
        clock = ManualClock()
        with GmailServer(password=RIGHT) as server:
            engine = refusing_engine(server, clock, auth_failure_threshold=1)
            log.addHandler(AlertHandler(engine=engine))
            log.error("boom")
            assert not engine.flush(timeout=20)
            assert failed_logins(server) == 1
            clock.advance(AUTH_COOL_DOWN)
            assert not engine.flush(timeout=20)
            assert failed_logins(server) == 2  # the probe
            clock.advance(AUTH_COOL_DOWN * 1.5)
            assert not engine.flush(timeout=20)
            assert failed_logins(server) == 2  # the doubled rest is not over
            clock.advance(AUTH_COOL_DOWN)
            assert not engine.flush(timeout=20)
            assert failed_logins(server) == 3
            assert engine.stats().meta_alerts == 1  # one meta-alert per outage
            engine.close(timeout=2)

    @pytest.mark.parametrize(
        ("reply", "expected"),
        [
            ("534-5.7.9", "2-Step Verification"),
            ("534-5.7.14", "browser"),
            ("454", "too many login attempts"),
            ("530", "STARTTLS"),
        ],
    )
    def test_meta_alert_explains_each_code(
        self, reply: AuthReply, expected: str, log: logging.Logger
    ) -> None:
        """Each Gmail refusal gets its own explanation in the meta-alert."""
        clock = ManualClock()
        with GmailServer(faults=Faults(auth_reply=reply)) as server, WebhookListener() as hook:
            settings = server.settings(
                group_wait="1h",
                timeout="3s",
                auth_failure_threshold=1,
                fallback_urls=[hook.apprise_url("json")],
            )
            engine = Engine(settings, clock=clock)
            log.addHandler(AlertHandler(engine=engine))
            log.error("boom")
            assert engine.flush(timeout=20)
            (meta,) = [r for r in hook.requests if "cannot log in" in r.text]
            assert expected in meta.text
            assert server.password not in meta.text
            engine.close(timeout=2)


class TestHooks:
    def test_sync_and_async_hooks_get_the_meta_alert(self, log: logging.Logger) -> None:
        """Both kinds of hook are called with the meta-alert; a failing hook harms no one."""
        clock = ManualClock()
        seen: list[MetaAlert] = []
        seen_async: list[MetaAlert] = []

        async def async_hook(meta: MetaAlert) -> None:
            await asyncio.sleep(0)
            seen_async.append(meta)

        def broken_hook(meta: MetaAlert) -> None:
            raise RuntimeError("the hook's own bug")

        with GmailServer(password=RIGHT) as server:
            engine = refusing_engine(server, clock, auth_failure_threshold=1)
            engine.on_meta_alert(broken_hook)
            engine.on_meta_alert(seen.append)
            engine.on_meta_alert(async_hook)
            log.addHandler(AlertHandler(engine=engine))
            log.error("boom")
            assert not engine.flush(timeout=20)
            (meta,) = seen
            assert seen_async == [meta]
            assert meta.kind == "auth-failure"
            assert meta.level == logging.CRITICAL
            assert meta.diagnosis is not None
            assert meta.diagnosis.code == "535 5.7.8"
            assert meta.account == server.username
            assert meta.paused_until == clock() + AUTH_COOL_DOWN
            assert WRONG not in repr(meta)

            server.password = WRONG
            clock.advance(AUTH_COOL_DOWN)
            assert engine.flush(timeout=20)
            assert [m.kind for m in seen] == ["auth-failure", "recovered"]
            assert engine.close(timeout=5)
