"""The check examples, run as a user would, against the Gmail-like and a local HTTP server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from smtp_alerts.checks import load_config
from smtp_alerts.testing import GmailServer, ReceivedMessage
from tests.checks_support import FlipServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(server: GmailServer, spool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTP_ALERTS_")}
    env.update(server.environ(SPOOL_DIR=str(spool)))
    return subprocess.run(  # noqa: S603 - our own interpreter and example
        [sys.executable, str(EXAMPLES / "monitor_checks.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def text(message: ReceivedMessage) -> str:
    body = message.message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


class TestMonitorChecks:
    def test_down_then_recovered_across_runs(self, tmp_path: Path) -> None:
        """Three failing rounds send one DOWN email; a later run sends RECOVERED with downtime."""
        with GmailServer() as server, FlipServer() as web:
            web.down()
            result = run_example(server, tmp_path, web.url(), "--rounds", "3")
            assert result.returncode == 0, result.stderr
            assert result.stdout.count("PENDING  website: HTTP 503") == 2
            assert "DOWN     website: HTTP 503" in result.stdout
            (down,) = server.messages
            assert "website is DOWN: HTTP 503 Service Unavailable" in text(down)
            assert "disk space" not in text(down)  # the other checks passed

            web.up()
            result = run_example(server, tmp_path, web.url(), "--rounds", "1")
            assert result.returncode == 0, result.stderr
            assert "UP       website: HTTP 200 OK" in result.stdout
            _, recovered = server.messages
            assert "website RECOVERED after " in text(recovered)


class TestChecksToml:
    def test_example_file_is_valid(self) -> None:
        """examples/checks.toml validates, with one check of every kind the file format has."""
        config = load_config(EXAMPLES / "checks.toml")
        kinds = {check.name: check.kind for check in config.checks}
        assert kinds == {
            "website": "http",
            "api health": "http",
            "postgres": "tcp",
            "example.com certificate": "tls",
            "disk space": "command",
        }
        postgres = next(check for check in config.checks if check.name == "postgres")
        assert postgres.policy is not None
        assert postgres.policy.retries == 0
        assert postgres.interval == 60.0
