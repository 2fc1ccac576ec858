"""``smtp-alerts watch``: the TOML file, its errors with line and field, and the command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtp_alerts.checks import CheckConfigError, CommandCheck, HttpCheck, TcpCheck, load_config
from smtp_alerts.cli import main
from smtp_alerts.testing import GmailServer
from tests.checks_support import FlipServer, closed_port

GOOD = """\
[defaults]
interval = "30s"
retries = 1

[[checks]]
name = "web"
type = "http"
url = "http://127.0.0.1:8000/health"
expect_status = [204, "3xx"]
headers = { Authorization = "Bearer t0ken" }

[[checks]]
name = "db"
type = "tcp"
host = "127.0.0.1"
port = 5432
retries = 0
timeout = "2s"

[[checks]]
name = "backup"
type = "command"
command = ["test", "-d", "/"]
cwd = "."
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "checks.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(CheckConfigError) as caught:
        load_config(path)
    return list(caught.value.problems)


class TestConfig:
    def test_builds_the_checks(self, tmp_path: Path) -> None:
        """Each table becomes its check; [defaults] fills what a check does not set."""
        config = load_config(write(tmp_path, GOOD))
        web, db, backup = config.checks
        assert isinstance(web, HttpCheck)
        assert isinstance(db, TcpCheck)
        assert isinstance(backup, CommandCheck)
        assert web.expect_status == (204, *range(300, 400))
        assert web.headers == (("Authorization", "Bearer t0ken"),)
        assert (web.interval, web.timeout) == (30.0, 10.0)
        assert web.policy is not None
        assert db.policy is not None
        assert (web.policy.retries, db.policy.retries) == (1, 0)
        assert db.timeout == 2.0
        assert backup.command == ("test", "-d", "/")
        assert backup.cwd == tmp_path / "."

    @pytest.mark.parametrize(
        ("old", "new", "expected"),
        [
            (
                'timeout = "2s"',
                "timeout = 0",
                "18: checks[1].timeout: Input should be greater than 0",
            ),
            (
                "port = 5432",
                "port = 99999",
                "16: checks[1].port: Input should be less than or equal",
            ),
            (
                "retries = 0",
                "retries = -1",
                "17: checks[1].retries: Input should be greater than or",
            ),
            ('type = "tcp"', 'type = "udp"', "14: checks[1].type: must be one of 'http', 'tcp'"),
            ('host = "127.0.0.1"', 'hots = "127.0.0.1"', "15: checks[1].hots: Extra inputs"),
            ('url = "http://127.0.0.1:8000/health"', "", "5: checks[0].url: Field required"),
            (
                'url = "http://127.0.0.1:8000/health"',
                'url = "ftp://x/"',
                "8: checks[0].url: not an",
            ),
            ("retries = 1", "retries = -1", "3: defaults.retries: Input should be greater"),
            (
                'interval = "30s"',
                'interval = "soon"',
                "2: defaults.interval: 'soon' is not a duration",
            ),
            (
                'expect_status = [204, "3xx"]',
                'expect_status = ["6xx"]',
                "9: checks[0].expect_status",
            ),
            ('cwd = "."', "ok_codes = []", "24: checks[2].ok_codes: List should have at least"),
            (
                'name = "db"',
                'name = "web"',
                "13: checks[1].name: 'web' is the name of another check",
            ),
            ("port = 5432", "port = ", "16: Invalid value"),
        ],
    )
    def test_errors_name_the_line_and_the_field(
        self, tmp_path: Path, old: str, new: str, expected: str
    ) -> None:
        """A mistake is reported as file:line: field: message, the line found in the text."""
        assert old in GOOD
        path = write(tmp_path, GOOD.replace(old, new))
        found = problems(path)
        assert any(problem.startswith(f"{path}:{expected}") for problem in found), found

    def test_missing_ca_file_and_empty_file(self, tmp_path: Path) -> None:
        """A missing CA file is named with its resolved path; a file without checks says so."""
        text = GOOD.replace("port = 5432", 'port = 443\nca_file = "no-such.pem"')
        path = write(tmp_path, text.replace('type = "tcp"', 'type = "tls"'))
        (problem,) = problems(path)
        assert problem.startswith(f"{path}:17: checks[1].ca_file: no such file")
        assert str(tmp_path / "no-such.pem") in problem
        empty = write(tmp_path, "# nothing yet\n")
        assert problems(empty) == [f"{empty}: checks: Field required"]

    def test_unreadable_file(self, tmp_path: Path) -> None:
        """A file that is not there is one clear problem, not a traceback."""
        assert problems(tmp_path / "absent.toml")[0].startswith(f"{tmp_path / 'absent.toml'}: ")


@pytest.fixture
def smtp_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[GmailServer]:
    """A Gmail-like server, and the SMTP_ALERTS_* variables that point at it."""
    with GmailServer() as server:
        env = server.environ(SPOOL_DIR=str(tmp_path / "spool"), GROUP_WAIT="0s")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield server


class TestWatchOnce:
    def test_failing_check_alerts_and_exits_1(
        self, smtp_env: GmailServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--once prints a line per check, sends the DOWN alert, and exits 1 if one failed."""
        port = closed_port()
        with FlipServer() as web:
            text = (
                f'[[checks]]\nname = "web"\ntype = "http"\nurl = "{web.url()}"\n\n'
                f'[[checks]]\nname = "db"\ntype = "tcp"\nhost = "127.0.0.1"\nport = {port}\n'
                "retries = 0\n"
            )
            assert main(["watch", str(write(tmp_path, text)), "--once"]) == 1
            out = capsys.readouterr().out.splitlines()
            assert out[0].startswith("ok   UP       web  HTTP 200 OK in ")
            assert out[1] == "FAIL DOWN     db   connection refused"
            assert out[2].endswith(" UTC  alert: db down")
            (message,) = smtp_env.messages
            assert "db is DOWN: connection refused" in message.subject

    def test_passing_checks_exit_0(
        self, smtp_env: GmailServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--once exits 0 and sends nothing when every check passes."""
        with FlipServer() as web:
            text = f'[[checks]]\nname = "web"\ntype = "http"\nurl = "{web.url()}"\n'
            assert main(["watch", str(write(tmp_path, text)), "--once"]) == 0
            assert smtp_env.messages == []

    def test_bad_file_exits_2_with_the_line(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A wrong checks file exits 2 and prints the problem with its line and field."""
        path = write(tmp_path, GOOD.replace("port = 5432", "port = 0"))
        assert main(["watch", str(path), "--once"]) == 2
        err = capsys.readouterr().err
        assert f"{path}:16: checks[1].port: Input should be greater than or equal to 1" in err

    def test_missing_settings_exit_2(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without SMTP settings the command exits 2 naming what is missing."""
        assert main(["watch", str(write(tmp_path, GOOD)), "--once"]) == 2
        assert "SMTP_ALERTS_" in capsys.readouterr().err


class TestWatchForever:
    @pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
    def test_alerts_until_sigterm_then_exits_0(self, tmp_path: Path) -> None:
        """Running, it alerts on a DOWN check; SIGTERM stops it cleanly with exit code 0."""
        text = (
            f'[[checks]]\nname = "db"\ntype = "tcp"\nhost = "127.0.0.1"\nport = {closed_port()}\n'
            'interval = "200ms"\nretries = 1\n'
        )
        path = write(tmp_path, text)
        with GmailServer() as server:
            env = {k: v for k, v in os.environ.items() if not k.startswith("SMTP_ALERTS_")}
            env.update(server.environ(SPOOL_DIR=str(tmp_path / "spool"), GROUP_WAIT="0s"))
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "smtp_alerts.cli", "watch", str(path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                (message,) = server.wait_for_messages(1, timeout=30)
                assert "db is DOWN: connection refused" in message.subject
                time.sleep(0.3)  # a few more failing runs: still one email
                process.send_signal(signal.SIGTERM)
                out, err = process.communicate(timeout=30)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.communicate()
            assert process.returncode == 0, err
            assert len(server.messages) == 1
        assert "watching 1 checks (db)" in out
        assert "db: PENDING (connection refused)" in out
        assert "db: DOWN (connection refused)" in out
        assert "alert: db down" in out
        assert "stopping: sending what is pending" in out
