"""The installed ``smtp-alerts`` as a person on call meets it: no traceback, no false success.

Every test runs the console script in a subprocess, as a user types it, with
the Gmail-like server as the far end where one is needed.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import pytest

from smtp_alerts import AlertHandler
from smtp_alerts._delivery.spool import Spool
from smtp_alerts._engine.render import RenderContext, render
from smtp_alerts.cli.doctor import run_doctor
from smtp_alerts.models import Digest
from smtp_alerts.testing import Faults, GmailServer
from tests.helpers import wait_for

_SCRIPT = Path(sys.executable).with_name("smtp-alerts")
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "smtp_alerts.cli"]


def clean_env(**variables: str) -> dict[str, str]:
    """This environment without any SMTP_ALERTS_* of its own, plus ``variables`` (full names)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTP_ALERTS_")}
    return {**env, **variables}


def for_server(
    server: GmailServer, *, drop: tuple[str, ...] = (), **overrides: str
) -> dict[str, str]:
    """The environment of a user whose settings point at ``server``; ``drop`` unsets some."""
    variables = server.environ(ALTERNATE_PORT="0", **overrides)
    for name in drop:
        variables.pop(f"SMTP_ALERTS_{name}")
    return clean_env(**variables)


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``smtp-alerts ARGS``; its status and output."""
    return subprocess.run(  # noqa: S603 - our own script
        [*COMMAND, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def spool_with_digests(folder: Path, count: int) -> None:
    """``count`` undelivered digests in the spool at ``folder``, never tried."""
    context = RenderContext(sender="b@example.com", recipients=("a@example.com",), hostname="h")
    with Spool(folder) as spool:
        for number in range(count):
            digest = Digest("g", f"incident-{number}", 1, (), 1_700_000_000.0 + number)
            spool.add(render(digest, context), claimed=False)


class TestDurationFlags:
    """``--timeout`` reads durations as the settings do, on every command."""

    def test_timeouts_accept_every_duration_the_settings_accept(self, tmp_path: Path) -> None:
        """``doctor``, ``send-test`` and ``spool flush`` take ``5s`` (and ``500ms``, ``1m``)."""
        with GmailServer() as server:
            env = for_server(server, SPOOL_DIR=str(tmp_path))
            for args in (
                ("doctor", "--timeout", "5s"),
                ("send-test", "--timeout", "1m"),
                ("spool", "flush", "--timeout", "5s"),
                ("doctor", "--timeout", "4500ms"),
            ):
                result = cli(*args, env=env)
                assert result.returncode == 0, (args, result.stdout + result.stderr)
            assert len(server.messages) == 1  # send-test's

    def test_a_wrong_duration_is_a_usage_error_naming_the_flag(self) -> None:
        """``--timeout soon`` or ``0``: exit 2, the flag and the accepted forms named."""
        for value, said in (("soon", "is not a duration"), ("0", "must be more than 0")):
            result = cli("doctor", "--timeout", value, env=clean_env())
            assert result.returncode == 2
            assert "--timeout" in result.stderr
            assert said in result.stderr
            assert "Traceback" not in result.stderr


class TestRunNeverStopsTheJob:
    """A wrong ``run`` flag is reported, and the job runs all the same."""

    def test_a_wrong_timeout_still_runs_the_command_and_alerts(self) -> None:
        """``--timeout '2 hours'``: the command runs, its status is ours, one line, one alert."""
        with GmailServer() as server:
            result = cli(
                "run",
                "--name",
                "backup",
                "--timeout",
                "2 hours",
                "--",
                sys.executable,
                "-c",
                "print('backup ran')",
                env=for_server(server, SHUTDOWN_TIMEOUT="10s"),
            )
            assert result.returncode == 0
            assert result.stdout == "backup ran\n"
            (line,) = result.stderr.splitlines()
            assert "--timeout" in line
            assert "'2 hours' is not a duration" in line
            assert "without a time limit" in line
            (received,) = server.messages
        assert "--timeout" in received.subject or "--timeout" in str(received.message)

    def test_a_wrong_timeout_and_wrong_settings_still_run_the_command(self) -> None:
        """Both wrong: the job runs and keeps its exit status; stderr says both."""
        env = clean_env(SMTP_ALERTS_PORT="not-a-port")
        result = cli(
            "run",
            "--timeout",
            "2 hours",
            "--",
            sys.executable,
            "-c",
            "raise SystemExit(3)",
            env=env,
        )
        assert result.returncode == 3
        assert "--timeout" in result.stderr
        assert "SMTP_ALERTS_PORT" in result.stderr
        assert "Traceback" not in result.stderr


class TestNoTraceback:
    """Every error is one clear line and an exit status."""

    def test_a_closed_pipe_ends_quietly(self, tmp_path: Path) -> None:
        """``smtp-alerts spool list | head -2``: the reader went away; no BrokenPipeError."""
        spool_with_digests(tmp_path, 3)
        process = subprocess.Popen(  # noqa: S603 - our own script
            [*COMMAND, "spool", "list", "--all"],
            env=clean_env(SMTP_ALERTS_SPOOL_DIR=str(tmp_path)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdout.close()  # as `head` does once it has its lines
        error = process.stderr.read()
        status = process.wait(timeout=60)
        process.stderr.close()
        assert error == b""
        assert status == 128 + signal.SIGPIPE

    def test_ctrl_c_is_one_line(self) -> None:
        """Ctrl-C while doctor waits on a slow server: "interrupted", exit 130, no traceback."""
        with GmailServer(faults=Faults(greeting_delay=60)) as server:
            process = subprocess.Popen(  # noqa: S603 - our own script
                [*COMMAND, "doctor", "--timeout", "60s"],
                env=for_server(server),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert process.stdout is not None
            assert process.stderr is not None
            lines: list[str] = []
            reader = threading.Thread(target=_read_lines, args=(process.stdout, lines))
            reader.start()
            try:
                # The connect step has passed: doctor is waiting for the greeting.
                assert wait_for(lambda: any(" connect " in line for line in lines), 30)
                process.send_signal(signal.SIGINT)
                status = process.wait(timeout=30)
                error = process.stderr.read()
            finally:
                process.kill()
                process.wait()
                reader.join(timeout=10)
                process.stderr.close()
        assert status == 128 + signal.SIGINT
        assert "interrupted" in error
        assert "Traceback" not in error


def _read_lines(stream: IO[str], lines: list[str]) -> None:
    lines.extend(stream)  # line by line, as the process writes them
    stream.close()


class TestSpoolList:
    """``spool list`` summarises; ``--all`` lists; neither needs TO."""

    def test_lists_without_recipients_or_sender(self, tmp_path: Path) -> None:
        """Only SPOOL_DIR is set: list, history, purge and silence list work (exit 0)."""
        spool_with_digests(tmp_path, 1)
        env = clean_env(SMTP_ALERTS_SPOOL_DIR=str(tmp_path))
        listed = cli("spool", "list", env=env)
        assert listed.returncode == 0, listed.stderr
        assert "1 digest(s) waiting" in listed.stdout
        assert "not tried yet" in listed.stdout
        assert cli("spool", "history", env=env).returncode == 0
        assert cli("spool", "purge", env=env).returncode == 1  # says what it would delete
        silences = cli("silence", "list", env=env)
        assert silences.returncode == 0, silences.stderr
        assert "no silences" in silences.stdout

    def test_flush_still_needs_the_settings(self, tmp_path: Path) -> None:
        """``spool flush`` sends, so without TO it says what is missing and exits 2."""
        result = cli("spool", "flush", env=clean_env(SMTP_ALERTS_SPOOL_DIR=str(tmp_path)))
        assert result.returncode == 2
        assert "SMTP_ALERTS_TO is required" in result.stderr
        assert "Traceback" not in result.stderr

    def test_a_wrong_setting_is_still_refused(self, tmp_path: Path) -> None:
        """Store-only commands still check what they use, and unknown variables."""
        env = clean_env(SMTP_ALERTS_SPOOL_DIR=str(tmp_path), SMTP_ALERTS_SPOOLDIR="x")
        result = cli("spool", "list", env=env)
        assert result.returncode == 2
        assert "SMTP_ALERTS_SPOOLDIR" in result.stderr
        assert "Traceback" not in result.stderr

    def test_summary_counts_engines_and_shows_the_oldest_digests(self, tmp_path: Path) -> None:
        """Twelve digests and three engines: ten rows, "2 more", one added-up counters block."""
        spool_with_digests(tmp_path, 12)
        for owner in range(3):
            with Spool(tmp_path, owner=f"host:{owner}:1:n") as spool:
                spool.save_counters({"accepted": 10 + owner, "sent": 1})
        env = clean_env(SMTP_ALERTS_SPOOL_DIR=str(tmp_path))
        summary = cli("spool", "list", env=env).stdout
        assert "12 digest(s) waiting" in summary
        assert "and 2 more" in summary
        assert "counters of 3 engine(s)" in summary
        assert summary.count("accepted") == 1
        assert "33" in summary  # 10 + 11 + 12, added up
        everything = cli("spool", "list", "--all", env=env).stdout
        assert "more" not in everything
        assert everything.count("counters of the engine") == 3


class TestDoctorHalfLogin:
    """A login half configured is said, and never passes for a success."""

    def test_username_without_password_fails_the_login_step(self) -> None:
        """USERNAME and no PASSWORD: the login step says what is missing; exit 1, no AUTH."""
        with GmailServer() as server:
            result = cli("doctor", env=for_server(server, drop=("PASSWORD",)))
            assert server.auth_attempts == []
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert "none configured" not in output
        assert "alerts can be sent" not in output
        (login,) = (line for line in output.splitlines() if line.startswith("✘ login "))
        assert "SMTP_ALERTS_USERNAME is alerts@example.com but no password is set" in login
        assert "SMTP_ALERTS_PASSWORD_FILE" in login

    def test_password_without_username_is_unusable(self) -> None:
        """PASSWORD and no USERNAME: the settings step says so; exit 2."""
        with GmailServer() as server:
            env = for_server(server, drop=("USERNAME",), FROM="alerts@example.com")
            result = cli("doctor", env=env)
        assert result.returncode == 2
        assert "SMTP_ALERTS_USERNAME is required with a password" in result.stdout
        assert "alerts can be sent" not in result.stdout

    def test_no_login_at_a_server_that_offers_one_is_no_plain_success(self) -> None:
        """Neither: a warning that the server offers AUTH; the result does not claim success."""
        with GmailServer() as server:
            env = for_server(server, drop=("USERNAME", "PASSWORD"), FROM="alerts@example.com")
            result = cli("doctor", env=env)
        assert result.returncode == 0
        (login,) = (line for line in result.stdout.splitlines() if " login " in line)
        assert login.startswith("! login")
        assert "offers AUTH" in login
        assert "alerts can be sent" not in result.stdout
        assert "1 warning(s)" in result.stdout

    def test_oauth_token_without_username_is_unusable(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """XOAUTH2 (a token provider, given in code) without USERNAME: exit 2, said why."""
        with GmailServer() as server:
            env = for_server(server, drop=("USERNAME", "PASSWORD"), FROM="alerts@example.com")
            for name, value in env.items():
                if name.startswith("SMTP_ALERTS_"):
                    monkeypatch.setenv(name, value)
            output = io.StringIO()
            status = run_doctor(token_provider=lambda: "token", stream=output)
            assert server.auth_attempts == []
        assert status == 2
        assert "a username is required with a password or a token_provider" in output.getvalue()
        assert "alerts can be sent" not in output.getvalue()


class TestDemo:
    """The demo depends on nothing of the user's, and checks its output folder first."""

    def test_runs_whatever_the_users_settings_say(self, tmp_path: Path) -> None:
        """Wrong, unknown and real-looking SMTP_ALERTS_* change nothing: 3 emails, clean stderr."""
        env = clean_env(
            SMTP_ALERTS_MAX_PER_HOUR="abc",
            SMTP_ALERTS_GROUPWAIT="5s",
            SMTP_ALERTS_REDIS_URL="redis://127.0.0.1:1/0",
            SMTP_ALERTS_SPOOL_DIR=str(tmp_path / "users-spool"),
        )
        result = cli("demo", "--quick", "--output", str(tmp_path / "out"), env=env, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stderr == ""
        (folder,) = (tmp_path / "out").iterdir()
        assert len(list(folder.glob("*.eml"))) == 3
        assert not (tmp_path / "users-spool").exists()

    def test_an_unusable_output_folder_is_said_before_the_demo_runs(self) -> None:
        """``--output /proc/nope``: one line naming the folder, exit 2, the demo not run."""
        result = cli("demo", "--quick", "--output", "/proc/nope", env=clean_env())
        assert result.returncode == 2
        assert result.stdout == ""
        (line,) = result.stderr.splitlines()
        assert "--output /proc/nope" in line
        assert "cannot write there" in line


class _Keep(logging.Handler):
    """Keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_GARBAGE = """
import socket
from smtp_alerts.testing import GmailServer

with GmailServer() as server, socket.create_connection((server.host, server.port)) as sock:
    sock.recv(1000)
    sock.sendall(b"\\x00\\x16\\x03\\x01 not smtp\\r\\n")
    print(sock.recv(1000)[:3].decode())
    sock.sendall(b"QUIT\\r\\n")
    sock.recv(1000)
"""


class TestEmbeddedServerLog:
    """aiosmtpd's raw lines stay in the server's own log, off the host program's stderr."""

    def test_odd_bytes_print_nothing_on_the_hosts_stderr(self) -> None:
        """A program with no logging set up: the server answers 500; stderr stays empty."""
        result = subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", _GARBAGE],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == "500\n"
        assert result.stderr == ""

    def test_they_are_kept_at_debug_in_the_servers_logger(self) -> None:
        """The line is in ``smtp_alerts.testing.server`` at DEBUG, for a test to read."""
        logger = logging.getLogger("smtp_alerts.testing.server")
        handler = _Keep()
        kept = handler.records
        level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        try:
            exec(_GARBAGE, {})  # noqa: S102 - the same fixed program, in this process
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
        lines = [record for record in kept if "unrecognised" in record.getMessage()]
        assert lines
        assert all(record.levelno == logging.DEBUG for record in lines)


class TestFromKeyword:
    """SMTP_ALERTS_FROM in code: ``from_=``, or ``from`` through ``**``, as the README says."""

    @pytest.mark.parametrize("keyword", ["from_", "from"])
    def test_alert_handler_takes_the_sender(
        self, keyword: str, gmail_server: GmailServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Either spelling sets the sender of the digest that arrives."""
        for name, value in gmail_server.environ().items():
            monkeypatch.setenv(name, value)
        sender: dict[str, Any] = {keyword: "app-alerts@example.com"}
        handler = AlertHandler(**sender)
        log = logging.getLogger(f"tests.cli.from.{keyword}")
        log.propagate = False
        log.addHandler(handler)
        try:
            assert handler.engine.settings.sender == "app-alerts@example.com"
            log.error("disk full on %s", "db-1")
            assert handler.flush(timeout=20)
        finally:
            log.removeHandler(handler)
            handler.close()
        (received,) = gmail_server.messages
        assert "app-alerts@example.com" in str(received.message["From"])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class TestProgress:
    """Long waits say what is happening, a line per step."""

    def test_watch_says_when_results_and_the_first_email_come(self, tmp_path: Path) -> None:
        """The start line bounds the quiet; PENDING says when DOWN comes; DOWN when the email."""
        checks = tmp_path / "checks.toml"
        checks.write_text(
            f'[[checks]]\nname = "db"\ntype = "tcp"\nhost = "127.0.0.1"\nport = {_closed_port()}\n'
            'interval = "1s"\ntimeout = "1s"\nretries = 1\n',
            encoding="utf-8",
        )
        with GmailServer() as server:
            env = for_server(server, SPOOL_DIR=str(tmp_path / "spool"), GROUP_WAIT="1s")
            process = subprocess.Popen(  # noqa: S603 - our own script
                [*COMMAND, "watch", str(checks)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            assert process.stdout is not None
            lines: list[str] = []
            reader = threading.Thread(target=_read_lines, args=(process.stdout, lines))
            reader.start()
            try:
                assert wait_for(lambda: any("alert: db" in line for line in lines), 30), lines
                process.send_signal(signal.SIGINT)
                assert process.wait(timeout=30) == 0
            finally:
                process.kill()
                process.wait()
                reader.join(timeout=10)
        assert "the first results come within 1 s" in lines[0]
        (pending,) = (line for line in lines if "db: PENDING" in line)
        assert "DOWN, and an alert, after 1 more failure(s) in a row (one every 1 s)" in pending
        (down,) = (line for line in lines if "alert: db" in line)
        assert "the email goes out within GROUP_WAIT (1 s)" in down

    def test_doctor_send_says_what_it_waits_for(self) -> None:
        """On a server that takes half a second per reply, the slow steps say they wait."""
        with GmailServer(faults=Faults(reply_delay=0.5)) as server:
            result = cli("doctor", "--send", env=for_server(server), timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        waits = [line for line in result.stdout.splitlines() if line.startswith("… ")]
        assert any(
            line.startswith("… starttls") and "still waiting after 2 s" in line for line in waits
        ), result.stdout
        assert any(line.startswith("… send ") for line in waits), result.stdout
        assert result.stdout.splitlines()[-1].startswith("✔ result")

    def test_spool_flush_says_it_is_sending(self, tmp_path: Path) -> None:
        """``spool flush`` says what it sends and, on a slow server, that it still is."""
        spool_with_digests(tmp_path, 1)
        with GmailServer(faults=Faults(reply_delay=0.5)) as server:
            env = for_server(server, SPOOL_DIR=str(tmp_path))
            result = cli("spool", "flush", "--timeout", "1m", env=env, timeout=120)
            assert len(server.messages) == 1
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].startswith("sending 1 waiting digest(s) with the current settings")
        assert "for up to 60 s" in lines[0]
        assert any(line.startswith("  still sending after 2 s") for line in lines), lines
        assert lines[-1] == "every waiting digest was delivered"


class TestOddFlags:
    """Odd flags: one line and exit 2, except where the job must run all the same."""

    def test_run_with_a_misspelt_flag_still_runs_the_command(self) -> None:
        """``run --nmae x -- CMD``: CMD (not ``x``) runs; the ignored words are said."""
        result = cli(
            "run", "--nmae", "x", "--", sys.executable, "-c", "raise SystemExit(5)", env=clean_env()
        )
        assert result.returncode == 5
        assert "unknown flag(s), ignored: --nmae x" in result.stderr
        assert "Traceback" not in result.stderr

    def test_other_commands_refuse_unknown_flags(self) -> None:
        """``doctor --sned`` and ``spool history --limit 0``: usage errors, exit 2."""
        doctor = cli("doctor", "--sned", env=clean_env())
        assert doctor.returncode == 2
        assert "unrecognized arguments: --sned" in doctor.stderr
        history = cli("spool", "history", "--limit", "0", env=clean_env())
        assert history.returncode == 2
        assert "--limit" in history.stderr
        assert "more than 0" in history.stderr
