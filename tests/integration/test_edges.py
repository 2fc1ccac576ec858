"""Delivery at the edges, end to end in real processes: exit, fallbacks, busy servers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from smtp_alerts.testing import GmailServer, WebhookListener

SCRIPT = """
import logging, smtp_alerts
logging.getLogger().addHandler(smtp_alerts.AlertHandler())
logging.error("nightly backup failed")
"""


def script_env(server: GmailServer, spool: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTP_ALERTS_")}
    variables = {"SHUTDOWN_TIMEOUT": "10s", "SPOOL_DIR": str(spool), **extra}
    return {**env, **server.environ(**variables)}


def run_script(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestShortScriptWithFallbacks:
    def test_error_then_exit_is_emailed_while_apprise_loads(self, tmp_path: Path) -> None:
        """FALLBACK_URLS set, SMTP fine: apprise still loading at exit costs nothing."""
        with GmailServer() as server, WebhookListener() as hook:
            env = script_env(server, tmp_path, FALLBACK_URLS=hook.apprise_url())
            result = run_script(SCRIPT, env)
            assert result.returncode == 0, result.stderr
            assert "engine stopped" not in result.stderr
            assert result.stderr == ""
            (received,) = server.messages
            assert "nightly backup failed" in received.message.as_string()
            assert hook.requests == []  # SMTP took it: the fallback had no turn
