"""The runnable examples, run as a user would, against the Gmail-like server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from smtp_alerts.testing import GmailServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, server: GmailServer) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTP_ALERTS_")}
    env.update(server.environ())
    return subprocess.run(  # noqa: S603 - our own interpreter and example
        [sys.executable, str(EXAMPLES / name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestLoggingApp:
    def test_one_digest_with_counts_and_traceback(self) -> None:
        """The dictConfig example sends one digest: 1,000 timeouts in one row, one traceback."""
        with GmailServer() as server:
            result = run_example("logging_app.py", server)
            assert result.returncode == 0, result.stderr
            (received,) = server.messages
        subject = str(received.message["Subject"])
        assert "2 problems, 1,001 events" in subject
        body = received.message.get_body(preferencelist=("plain",))
        assert body is not None
        text = body.get_content()
        assert "1,000" in text
        assert text.count("Traceback (most recent call last)") == 1
        assert "KeyError: 'B-2'" in text
