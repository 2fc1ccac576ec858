"""Delivery at the edges, end to end in real processes: exit, fallbacks, busy servers."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smtp_alerts import AlertHandler, Engine
from smtp_alerts._delivery.spool import SPOOL_FILENAME, Spool
from smtp_alerts.testing import Faults, GmailServer, ManualClock, WebhookListener
from smtp_alerts.testing import _replies as replies
from smtp_alerts.transports.apprise import AppriseTransport
from tests.helpers import make_message, run_script

MESSAGE = make_message()

SCRIPT = """
import logging, smtp_alerts
logging.getLogger().addHandler(smtp_alerts.AlertHandler())
logging.error("nightly backup failed")
"""


def script_env(server: GmailServer, spool: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTP_ALERTS_")}
    variables = {"SHUTDOWN_TIMEOUT": "10s", "SPOOL_DIR": str(spool), **extra}
    return {**env, **server.environ(**variables)}


def log_and_exit(
    tmp_path: Path, server: GmailServer, spool: Path, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run SCRIPT (log one error, exit at once) configured for ``server``."""
    extra.setdefault("SHUTDOWN_TIMEOUT", "10s")
    return run_script(tmp_path, SCRIPT, server, timeout=60, SPOOL_DIR=str(spool), **extra)


class TestShortScriptWithFallbacks:
    def test_error_then_exit_is_emailed_while_apprise_loads(self, tmp_path: Path) -> None:
        """FALLBACK_URLS set, SMTP fine: apprise still loading at exit costs nothing."""
        with GmailServer() as server, WebhookListener() as hook:
            result = log_and_exit(tmp_path, server, tmp_path, FALLBACK_URLS=hook.apprise_url())
            assert result.returncode == 0, result.stderr
            assert "engine stopped" not in result.stderr
            assert result.stderr == ""
            (received,) = server.messages
            assert "nightly backup failed" in received.message.as_string()
            assert hook.requests == []  # SMTP took it: the fallback had no turn


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and CLI
        [sys.executable, "-m", "smtp_alerts.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestSecretsStayOutOfLogs:
    def test_apprise_and_urllib3_debug_logs_mask_url_tokens(self) -> None:
        """With the root logger at DEBUG, no record shows a token from a FALLBACK_URLS path."""
        records: list[str] = []

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(f"{record.name}: {self.format(record)}")

        root = logging.getLogger()
        root.addHandler(Keep())
        root.setLevel(logging.DEBUG)
        with WebhookListener() as hook:
            url = hook.apprise_url(path="/hooks/T0KEN-SeCrEt-123456/")
            transport = AppriseTransport([url], timeout=5)
            asyncio.run(transport.send(MESSAGE))
            assert len(hook.requests) == 1
        assert any(line.startswith("urllib3") for line in records)  # they did log
        assert any(line.startswith("apprise") for line in records)
        assert not [line for line in records if "T0KEN-SeCrEt-123456" in line]

    def test_tracebacks_logged_by_those_libraries_are_masked_too(self) -> None:
        """urllib3's exceptions quote the URL; a record with exc_info shows it masked."""
        secret = "T0KEN-SeCrEt-654321"
        AppriseTransport([f"json://127.0.0.1:9/hooks/{secret}/"], timeout=5)
        records: list[str] = []

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(self.format(record))

        logging.getLogger().addHandler(Keep())
        AppriseTransport(["json://127.0.0.1:9/x/"], timeout=5).load()  # installs the filter
        try:
            raise ConnectionError(f"Max retries exceeded with url: /hooks/{secret}/")
        except ConnectionError:
            logging.getLogger("urllib3.connectionpool").warning("failed", exc_info=True)
        (line,) = records
        assert "Max retries exceeded" in line
        assert secret not in line


ESCAPES = ("\x1b", "\x9b", "\x07")


def no_escapes(*texts: str) -> bool:
    return not any(escape in text for text in texts for escape in ESCAPES)


class TestServerTextIsSafeToPrint:
    def test_escape_sequences_in_replies_reach_no_terminal(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """ESC sequences in a reply: stderr, spool list/history, send-test, doctor show none."""
        monkeypatch.setitem(
            replies.AUTH_REPLIES,
            "535",
            "535-5.7.8 Username \x1b]0;owned\x07and \x1b[2J\x1b[31mPassword\x9b0m not accepted.\r\n"
            "535 5.7.8  https://support.google.com/mail/?p=BadCredentials {id} - gsmtp",
        )
        with GmailServer(faults=Faults(auth_reply="535")) as server:
            env = script_env(server, tmp_path, ALTERNATE_PORT="0")
            logged = log_and_exit(tmp_path, server, tmp_path, ALTERNATE_PORT="0")
            assert "not accepted" in logged.stderr
            shown = [logged.stderr]
            for args in (["spool", "list"], ["spool", "history"], ["send-test"], ["doctor"]):
                result = cli(*args, env=env)
                shown += [result.stdout, result.stderr]
            assert any("Password not accepted" in text for text in shown[1:])
            assert no_escapes(*shown), [t for t in shown if not no_escapes(t)]


class TestSlowDownReplies:
    @pytest.mark.parametrize(
        ("fault", "faults"),
        [
            ("greeting_reply", Faults(greeting_reply="421", fail_times=2)),
            ("auth_reply", Faults(auth_reply="454", fail_times=2)),
        ],
    )
    def test_421_twice_then_220_is_delivered_once_within_the_deadline(
        self, fault: str, faults: Faults, tmp_path: Path, log: logging.Logger
    ) -> None:
        """Gmail's "too many connections" is retried shortly, not rested on for 5 minutes."""
        with GmailServer(faults=faults) as server:
            settings = server.settings(group_wait="1h", timeout="10s", spool_dir=tmp_path)
            engine = Engine(settings)
            log.addHandler(AlertHandler(engine=engine))
            log.error("nightly backup failed")
            started = time.monotonic()
            assert engine.flush(timeout=10)
            assert time.monotonic() - started < 10
            assert server.fired[fault] == 2
            (received,) = server.messages
            assert "nightly backup failed" in received.message.as_string()
            (channel,) = engine.stats().channels.values()
            assert channel.breaker is not None
            assert channel.breaker.state == "closed"
            assert engine.close(timeout=5)


class TestEveryChannelGetsItsTurnAtExit:
    def test_blackholed_primary_leaves_time_for_the_backup(self, tmp_path: Path) -> None:
        """TIMEOUT 30 s > SHUTDOWN_TIMEOUT 10 s: the backup still delivers before exit."""
        with GmailServer(faults=Faults(greet=False)) as primary, GmailServer() as backup:
            bundle = tmp_path / "cas.pem"
            bundle.write_text(primary.ca_file.read_text() + backup.ca_file.read_text())
            started = time.monotonic()
            result = log_and_exit(
                tmp_path,
                primary,
                tmp_path / "spool",
                TIMEOUT="30s",
                SHUTDOWN_TIMEOUT="10s",
                CA_FILE=str(bundle),
                BACKUP_HOST=backup.host,
                BACKUP_PORT=str(backup.port),
                BACKUP_USERNAME=backup.username,
                BACKUP_PASSWORD=backup.password,
            )
            elapsed = time.monotonic() - started
            assert result.returncode == 0, result.stderr
            (received,) = backup.messages
            assert "nightly backup failed" in received.message.as_string()
            assert primary.messages == []
            assert elapsed < 10 + 2  # SHUTDOWN_TIMEOUT, plus the interpreter's start
            assert "not delivered" not in result.stderr

    def test_blackholed_primary_leaves_time_for_the_webhook(self, tmp_path: Path) -> None:
        """The same with an apprise URL as the only fallback."""
        with GmailServer(faults=Faults(greet=False)) as primary, WebhookListener() as hook:
            started = time.monotonic()
            result = log_and_exit(
                tmp_path,
                primary,
                tmp_path,
                TIMEOUT="30s",
                SHUTDOWN_TIMEOUT="6s",
                FALLBACK_URLS=hook.apprise_url(),
            )
            assert result.returncode == 0, result.stderr
            assert time.monotonic() - started < 6 + 2
            (request,) = hook.requests
            assert "nightly backup failed" in request.text


class TestLostOrCorruptStore:
    def test_directory_deleted_mid_run_is_recreated_and_delivered(
        self, tmp_path: Path, log: logging.Logger, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """rm -rf of SPOOL_DIR while running: what it held and what came after is kept and sent."""
        directory = tmp_path / "spool"
        clock = ManualClock()
        with GmailServer(faults=Faults(refuse_connections=True)) as server:
            settings = server.settings(group_wait="1h", spool_dir=directory, timeout="1s")
            engine = Engine(settings, clock=clock)
            log.addHandler(AlertHandler(engine=engine))
            log.error("first failure")
            assert not engine.flush(timeout=10)
            # The engine may still be writing (its attempt log): it may re-create
            # the directory under rmtree, which then cannot remove it.
            shutil.rmtree(directory, ignore_errors=True)
            log.error("second failure, after the spool was deleted")
            assert not engine.flush(timeout=10)
            with Spool(directory) as on_disk:  # really on disk, as stderr says
                assert len(on_disk) == 2
            assert "re-created" in capsys.readouterr().err

            server.faults.refuse_connections = False
            clock.advance(3600)  # past the rest the refusals put on the channel
            assert engine.flush(timeout=10)
            texts = [received.message.as_string() for received in server.messages]
            assert any("first failure" in text for text in texts)
            assert any("second failure" in text for text in texts)
            assert engine.close(timeout=5)

    def test_corrupt_file_is_set_aside_and_the_alert_still_sent(self, tmp_path: Path) -> None:
        """Garbage in spool.sqlite3: a script still delivers, and says what it did in one line."""
        tmp_path.joinpath(SPOOL_FILENAME).write_bytes(b"garbage, not SQLite\n" * 1000)
        with GmailServer() as server:
            result = log_and_exit(tmp_path, server, tmp_path)
            assert result.returncode == 0, result.stderr
            (received,) = server.messages
            assert "nightly backup failed" in received.message.as_string()
        (aside,) = tmp_path.glob(f"{SPOOL_FILENAME}.corrupt-*")
        assert aside.name in result.stderr
        assert len(result.stderr.splitlines()) == 1
        with Spool(tmp_path) as fresh:
            assert fresh.recovered is None

    @pytest.mark.parametrize("action", ["list", "history", "purge", "flush"])
    def test_cli_says_one_line_about_a_corrupt_store(self, action: str, tmp_path: Path) -> None:
        """No traceback, no false success: one line and a non-zero exit."""
        tmp_path.joinpath(SPOOL_FILENAME).write_bytes(b"garbage, not SQLite\n" * 1000)
        with GmailServer() as server:
            result = cli("spool", action, env=script_env(server, tmp_path))
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        (line,) = result.stderr.splitlines()
        assert "corrupt" in line
        assert "delivered" not in result.stdout
        assert list(tmp_path.glob(f"{SPOOL_FILENAME}.corrupt-*"))
