"""``smtp-alerts run``: silent on success, one email on failure, the command's own exit status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smtp_alerts._sources.heartbeats import STATE_FILENAME
from smtp_alerts.cli import main
from smtp_alerts.testing import GmailServer, ReceivedMessage
from tests.helpers import process_alive

PYTHON = sys.executable


def run_cli(
    *args: str, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m smtp_alerts.cli ARGS`` as cron would run it, output captured."""
    return subprocess.run(  # noqa: S603 - our own interpreter and CLI
        [PYTHON, "-m", "smtp_alerts.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def server_env(server: GmailServer, **overrides: str) -> dict[str, str]:
    return {**os.environ, **server.environ(**overrides)}


def body(message: ReceivedMessage) -> str:
    part = message.message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


class TestFailures:
    def test_false_alerts_and_exits_1(self) -> None:
        """``run -- false`` emails the exit code and exits 1."""
        with GmailServer() as server:
            result = run_cli("run", "--", "false", env=server_env(server))
            assert result.returncode == 1, result.stderr
            (received,) = server.messages
        assert "false failed with exit code 1" in received.subject
        text = body(received)
        assert "command    false" in text
        assert "exit code  1" in text
        assert "duration " in text

    def test_output_passes_through_and_its_tail_is_emailed(self) -> None:
        """Both streams reach our stdout/stderr live, and the alert holds the tail of each."""
        script = (
            "import sys\n"
            "for i in range(100): print(f'line {i}')\n"
            "print('could not open /var/backup: permission denied', file=sys.stderr)\n"
            "sys.exit(3)\n"
        )
        with GmailServer() as server:
            result = run_cli(
                "run", "--name", "backup", "--", PYTHON, "-c", script, env=server_env(server)
            )
            assert result.returncode == 3
            (received,) = server.messages
        assert result.stdout.splitlines()[0] == "line 0"
        assert result.stdout.splitlines()[-1] == "line 99"
        assert "permission denied" in result.stderr
        assert "backup failed with exit code 3" in received.subject
        text = body(received)
        assert "could not open /var/backup: permission denied" in text
        assert "[last 40 of 100 lines]" in text
        assert "line 99" in text
        assert "line 59" not in text  # only the tail
        assert text.index("--- stderr ---") < text.index("--- stdout ---")

    def test_timeout_exits_124_and_alerts(self) -> None:
        """A command still running at --timeout is stopped; exit 124, as timeout(1) does."""
        with GmailServer() as server:
            result = run_cli(
                "run",
                "--timeout",
                "300ms",
                "--",
                PYTHON,
                "-c",
                "import time; print('started', flush=True); time.sleep(60)",
                env=server_env(server),
            )
            assert result.returncode == 124
            (received,) = server.messages
        assert "timed out after 300 ms" in received.subject
        text = body(received)
        assert "exit code  124 (timed out after 300 ms)" in text
        assert "started" in text

    def test_timeout_stops_the_commands_children(self, tmp_path: Path) -> None:
        """The whole process group is stopped at the timeout, like timeout(1) does."""
        script = (
            "import subprocess, sys, time\n"
            f"child = subprocess.Popen([{PYTHON!r}, '-c', 'import time; time.sleep(60)'])\n"
            "print(child.pid, flush=True)\n"
            "child.wait()\n"
        )
        with GmailServer() as server:
            result = run_cli(
                "run", "--timeout", "1s", "--", PYTHON, "-c", script, env=server_env(server)
            )
        assert result.returncode == 124
        child = int(result.stdout.split()[0])
        deadline = time.monotonic() + 10
        while process_alive(child):
            assert time.monotonic() < deadline, "the command's child outlived the timeout"
            time.sleep(0.05)

    def test_killed_by_signal_exits_128_plus_n(self) -> None:
        """A command killed by a signal exits 128 + N, as a shell reports it, and alerts."""
        with GmailServer() as server:
            result = run_cli(
                "run",
                "--",
                PYTHON,
                "-c",
                "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
                env=server_env(server),
            )
            assert result.returncode == 128 + signal.SIGKILL
            (received,) = server.messages
        assert "killed by SIGKILL" in received.subject

    def test_command_not_found_exits_127(self) -> None:
        """A command that does not exist exits 127 and alerts."""
        with GmailServer() as server:
            result = run_cli("run", "--", "no-such-command-xyz", env=server_env(server))
            assert result.returncode == 127
            (received,) = server.messages
        assert "command not found: no-such-command-xyz" in received.subject


class TestSuccess:
    def test_true_sends_nothing(self) -> None:
        """``run -- true`` exits 0 and never even connects."""
        with GmailServer() as server:
            result = run_cli("run", "--", "true", env=server_env(server))
            assert result.returncode == 0
            assert result.stdout == result.stderr == ""
            assert server.connections == 0
            assert server.messages == []

    def test_stdin_is_the_commands(self) -> None:
        """The command reads the wrapper's stdin."""
        with GmailServer() as server:
            result = run_cli(
                "run",
                "--",
                PYTHON,
                "-c",
                "import sys; print(sys.stdin.read().upper())",
                env=server_env(server),
                stdin="rows to import",
            )
        assert result.returncode == 0
        assert result.stdout == "ROWS TO IMPORT\n"

    def test_named_success_is_a_heartbeat(self, tmp_path: Path) -> None:
        """A successful run with --name records a heartbeat of that name in SPOOL_DIR."""
        with GmailServer() as server:
            env = server_env(server, SPOOL_DIR=str(tmp_path))
            result = run_cli("run", "--name", "nightly-backup", "--", "true", env=env)
        assert result.returncode == 0
        state = json.loads((tmp_path / STATE_FILENAME).read_text(encoding="utf-8"))
        assert state["heartbeats"]["nightly-backup"]["last_beat"] > 0


class TestBadInput:
    def test_configuration_error_still_runs_the_command(self) -> None:
        """Broken settings never stop the job: it runs, its status is ours, stderr says why."""
        env = {**os.environ, "SMTP_ALERTS_PORT": "not-a-port"}
        result = run_cli(
            "run", "--", PYTHON, "-c", "print('backup ran'); raise SystemExit(4)", env=env
        )
        assert result.returncode == 4
        assert result.stdout == "backup ran\n"
        assert "SMTP_ALERTS_PORT" in result.stderr
        assert "running the command anyway" in result.stderr
        assert "no alert was sent" in result.stderr
        assert "Traceback" not in result.stderr

    def test_no_command_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        """``run`` or ``run --`` without a command exits 2 with a usage line."""
        assert main(["run"]) == 2
        assert main(["run", "--"]) == 2
        assert "no command given" in capsys.readouterr().err

    def test_bad_timeout_still_runs_the_command(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A malformed --timeout is said in one line naming the option; the command runs."""
        assert main(["run", "--timeout", "soon", "--", "false"]) == 1
        assert "--timeout" in capsys.readouterr().err
