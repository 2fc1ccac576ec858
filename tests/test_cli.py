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
