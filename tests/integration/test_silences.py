"""Silences: added from the command line or Python, kept in the store, honoured by every
engine on it (a host's SPOOL_DIR, or a fleet's Redis), counted, and said when they end."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from smtp_alerts import Engine, Settings
from smtp_alerts._engine import silencing
from smtp_alerts._store.silences import Silence
from smtp_alerts.cli import main
from smtp_alerts.models import Alert
from smtp_alerts.testing import GmailServer, ManualClock, WebhookListener
from smtp_alerts.transports import MemoryTransport
from tests.helpers import STEPS, server_env, start_script, wait_for


@pytest.fixture
def spool_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings for the command line in this process: a spool of the test's own."""
    monkeypatch.setenv("SMTP_ALERTS_TO", "oncall@example.com")
    monkeypatch.setenv("SMTP_ALERTS_FROM", "alerts@example.com")
    monkeypatch.setenv("SMTP_ALERTS_SPOOL_DIR", str(tmp_path))
    return tmp_path


class TestCommandLine:
    def test_add_list_remove(self, spool_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """add prints the id; list shows what and why; remove ends it."""
        argv = ["silence", "add", "--logger", "app.db", "--match", "timeout", "--for", "2h"]
        assert main([*argv, "--comment", "db maintenance"]) == 0
        silence_id = capsys.readouterr().out.strip()
        assert len(silence_id) == 8
        assert main(["silence", "list"]) == 0
        listed = capsys.readouterr().out
        assert silence_id in listed
        assert 'logger app.db, text "timeout"' in listed
        assert "db maintenance" in listed
        assert main(["silence", "remove", silence_id]) == 0
        assert "ended" in capsys.readouterr().out
        assert main(["silence", "list"]) == 0
        assert "ended (unreported)" in capsys.readouterr().out

    @pytest.mark.parametrize(
        ("argv", "status", "said"),
        [
            (["add", "--for", "1h"], 2, "needs --logger, --match or --check"),
            (["add", "--logger", "app", "--for", "soon"], 2, "soon"),
            (["add", "--logger", "app", "--for", "0"], 2, "positive duration"),
            (["add", "--logger", " ", "--for", "1h"], 2, "--logger cannot be empty"),
            (["remove", "nosuchid"], 1, "no silence 'nosuchid'"),
        ],
    )
    def test_errors_are_one_line_and_a_status(
        self,
        spool_env: Path,
        capsys: pytest.CaptureFixture[str],
        argv: list[str],
        status: int,
        said: str,
    ) -> None:
        assert main(["silence", *argv]) == status
        err = capsys.readouterr().err.strip()
        assert said in err
        assert len(err.splitlines()) == 1
        assert "Traceback" not in err

    def test_missing_for_is_wrong_usage(
        self, spool_env: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with pytest.raises(SystemExit) as exited:
            main(["silence", "add", "--logger", "app"])
        assert exited.value.code == 2
        assert "--for" in capsys.readouterr().err

    def test_bad_settings_exit_2(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A wrong setting is named, exit 2; a missing sender is no concern of a listing."""
        monkeypatch.setenv("SMTP_ALERTS_TO", "oncall@example.com")  # no sender
        assert main(["silence", "list"]) == 0
        monkeypatch.setenv("SMTP_ALERTS_PORT", "not-a-port")
        assert main(["silence", "list"]) == 2
        assert "SMTP_ALERTS_PORT" in capsys.readouterr().err


def test_a_silence_covers_logger_prefixes_texts_and_checks_but_never_meta() -> None:
    def alert(logger: str, message: str = "boom", source: str = "log") -> Alert:
        return Alert(("k",), logging.ERROR, logger, message, 0.0, source=source)

    by_logger = Silence("a", 0, 10, logger="app.db")
    assert by_logger.matches(alert("app.db"))
    assert by_logger.matches(alert("app.db.pool"))
    assert not by_logger.matches(alert("app.dbx"))
    both = Silence("b", 0, 10, logger="app", match="TimeOut")
    assert both.matches(alert("app.web", "read timeout after 3s"))
    assert not both.matches(alert("app.web", "refused"))
    check = Silence("c", 0, 10, check="db")
    assert check.matches(alert("db", source="check"))
    assert not check.matches(alert("db"))
    everything = Silence("d", 0, 10, match="log in")
    assert not everything.matches(alert("smtp_alerts", "cannot log in", source="meta"))


def test_a_silenced_problem_is_counted_not_emailed_and_said_when_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python API: the silenced problem is not emailed; after unsilence the next digest
    says how many occurrences the silence held."""
    monkeypatch.setattr(silencing, "REFRESH", 0.0)  # the engine reads the silences every time
    transport = MemoryTransport()
    settings = Settings(
        to=["b@example.com"], from_="a@example.com", spool_dir=tmp_path, group_wait=0
    )
    engine = Engine(settings, transport=transport)
    made = engine.silence(logger="app.db", duration="1h", comment="failover drill")
    assert [s.id for s in engine.silences()] == [made.id]
    for _ in range(5):
        engine.alert("connection refused", name="app.db.pool")
    engine.alert("payment failed", name="app.billing")
    assert engine.flush(timeout=10)
    assert [("payment failed" in m.title) for m in transport.sent] == [True]
    assert "connection refused" not in transport.sent[0].email.as_string()
    assert wait_for(lambda: engine.silences()[0].held == 5, 5)

    assert engine.unsilence(made.id)
    engine.alert("cart failed", name="app.cart", group="cart")
    assert engine.flush(timeout=10)
    assert len(transport.sent) == 2
    body = transport.sent[1].email.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert f"Silence {made.id} (logger app.db) ended at" in text
    assert "it held 5 occurrences, not emailed" in text
    assert engine.silences() == []  # said once, then forgotten
    engine.close()


def test_a_silence_never_hides_the_meta_alert(tmp_path: Path) -> None:
    """Silences matching the meta-alert's text and logger: it reaches the webhook anyway."""
    clock = ManualClock()
    with GmailServer(password="right") as server, WebhookListener() as hook:
        settings = server.settings(
            group_wait="1h",
            timeout="3s",
            password="wrong-pass",
            spool_dir=tmp_path,
            fallback_urls=[hook.apprise_url("json")],
        )
        engine = Engine(settings, clock=clock)
        engine.silence(match="log in", duration="1d")
        engine.silence(logger="smtp_alerts", duration="1d")
        for n in range(3):
            engine.alert(f"order {n} failed", name="shop", level=logging.CRITICAL)
            assert engine.flush(timeout=20)
            clock.advance(30)
        titles = [(r.json or {}).get("title", "") for r in hook.requests]
        assert any("cannot log in" in title for title in titles), titles
        engine.close(timeout=5)


HOST = (
    STEPS
    + """
import logging, smtp_alerts
logging.getLogger("app").addHandler(smtp_alerts.AlertHandler())
for _ in range(7):
    logging.getLogger("app.db.pool").error("connection refused")
logging.getLogger("app.billing").error("payment failed")
wait("silence-over")
logging.getLogger("app.cart").error("cart failed", extra={"alert_group": "cart"})
wait("done")
"""
)


def test_a_silence_from_the_cli_holds_on_another_host_and_its_end_is_said(
    tmp_path: Path, redis_url: str
) -> None:
    """With REDIS_URL: a silence added by the CLI on one host holds on another; when it
    expires (by Redis's clock) that host's next digest says how many it held."""
    steps = tmp_path / "steps"
    steps.mkdir()
    with GmailServer() as server:
        cli_env = server_env(server, SPOOL_DIR=str(tmp_path / "a"), REDIS_URL=redis_url)
        host_env = server_env(
            server,
            SPOOL_DIR=str(tmp_path / "b"),
            REDIS_URL=redis_url,
            SUBJECT_PREFIX="[b]",
            GROUP_WAIT="0s",
        )
        added = _cli(cli_env, "add", "--logger", "app.db", "--for", "3s", "--comment", "drill")
        assert added.returncode == 0, added.stderr
        silence_id = added.stdout.strip()
        host = start_script(HOST, host_env, str(steps))
        try:
            assert wait_for(lambda: len(server.messages) == 1, 30)
            listed = _cli(cli_env, "list").stdout
            assert wait_for(lambda: " 7  logger app.db" in _cli(cli_env, "list").stdout, 30), listed
            with redis.Redis.from_url(redis_url) as client:
                assert wait_for(lambda: "ended" in _cli(cli_env, "list").stdout, 30)
                assert client.ping()
            (steps / "silence-over").touch()
            assert wait_for(lambda: len(server.messages) == 2, 30)
        finally:
            (steps / "done").touch()
            _, said = host.communicate(timeout=60)
        first, second = (m.message for m in server.messages)
    assert host.returncode == 0, said
    assert "payment failed" in first["Subject"]
    assert "connection refused" not in first.as_string()
    text = second.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"Silence {silence_id} (logger app.db) ended at" in text
    assert "it held 7 occurrences" in text


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-m", "smtp_alerts.cli", "silence", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
