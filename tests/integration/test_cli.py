"""The smtp-alerts command line."""

from __future__ import annotations

import email.policy
import subprocess
import sys
from email import message_from_bytes
from pathlib import Path

import pytest

from smtp_alerts.cli import main


class TestDemo:
    def test_demo_runs_the_scenario_and_saves_emails(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The demo delivers its three digests through the embedded server and saves them."""
        assert main(["demo", "--quick", "--output", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        (folder,) = tmp_path.iterdir()
        emails = sorted(folder.glob("*.eml"))
        assert len(emails) == 3
        assert (folder / "index.html").read_text(encoding="utf-8").count("<li>") == 3
        first = message_from_bytes(emails[0].read_bytes(), policy=email.policy.default)
        third = message_from_bytes(emails[2].read_bytes(), policy=email.policy.default)
        assert "5 problems, 2,005 events" in str(first["Subject"])
        assert third["In-Reply-To"] == first["Message-ID"]
        assert "CRITICAL" in out
        assert str(folder.resolve()) in out
        assert "2,500" in out  # the exit flush reports the running total

    def test_console_script_help(self) -> None:
        """The installed entry point answers --help with the commands."""
        result = subprocess.run(
            [sys.executable, "-m", "smtp_alerts.cli", "--help"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "demo" in result.stdout

    def test_no_command_prints_help(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Without a command the CLI shows its usage and exits 2."""
        assert main([]) == 2
        assert "usage" in capsys.readouterr().out


class TestSpoolCommands:
    def test_list_flush_history_purge(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """A failed digest is listed, flushed once the server heals, and shows in the log."""
        import logging

        from smtp_alerts import AlertHandler, Engine
        from smtp_alerts.testing import Faults, GmailServer

        with GmailServer(faults=Faults(refuse_connections=True)) as server:
            for name, value in server.environ(SPOOL_DIR=str(tmp_path), TIMEOUT="1s").items():
                monkeypatch.setenv(name, value)
            engine = Engine()
            log = logging.getLogger("tests.cli.spool")
            log.propagate = False
            handler = AlertHandler(engine=engine)
            log.addHandler(handler)
            log.error("backup failed on %s", "db-1")
            assert not engine.flush(timeout=20)
            engine.close(timeout=5)
            log.removeHandler(handler)

            assert main(["spool", "list"]) == 0
            out = capsys.readouterr().out
            assert "1 digest(s) waiting" in out
            assert "1  failed, waiting for the next try" in out
            assert "backup failed on db-1" in out
            assert "could not connect" in out
            assert "accepted" in out  # the engine's counters

            server.faults = Faults()  # healed
            assert main(["spool", "flush", "--timeout", "20"]) == 0
            assert "every waiting digest was delivered" in capsys.readouterr().out
            assert len(server.messages) == 1

            assert main(["spool", "history"]) == 0
            out = capsys.readouterr().out
            assert "FAIL" in out
            assert "ok  " in out

            assert main(["spool", "purge"]) == 0  # nothing to delete any more
            assert "0 digest(s) would be deleted" in capsys.readouterr().out

    def test_purge_needs_yes(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """purge says what it would delete, and deletes only with --yes."""
        from smtp_alerts._delivery.spool import Spool
        from smtp_alerts._engine.render import RenderContext, render
        from smtp_alerts.models import Digest

        monkeypatch.setenv("SMTP_ALERTS_SPOOL_DIR", str(tmp_path))
        monkeypatch.setenv("SMTP_ALERTS_TO", "a@example.com")
        monkeypatch.setenv("SMTP_ALERTS_FROM", "b@example.com")
        context = RenderContext(sender="b@example.com", recipients=("a@example.com",), hostname="h")
        with Spool(tmp_path) as spool:
            spool.add(render(Digest("g", "inc", 1, (), 1_700_000_000.0), context), claimed=False)
        assert main(["spool", "purge"]) == 1
        assert "1 digest(s) would be deleted" in capsys.readouterr().out
        assert main(["spool", "purge", "--yes"]) == 0
        with Spool(tmp_path) as spool:
            assert len(spool) == 0

    def test_bad_settings_exit_2(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Without settings ``spool flush``, which sends, says which variable is missing."""
        assert main(["spool", "flush"]) == 2
        assert "SMTP_ALERTS_TO" in capsys.readouterr().err
