"""Whole-process behaviour: delivery at exit, forked children, import weight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from smtp_alerts.testing import Faults, GmailServer
from tests.helpers import run_code as run_script
from tests.helpers import server_env


def _plain(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


class TestExit:
    def test_error_then_immediate_exit_is_delivered(self) -> None:
        """A script that logs one error and exits at once still delivers it, through a DNS name."""
        with GmailServer() as server:
            # "localhost" makes the engine resolve a name during interpreter shutdown,
            # when asyncio's default executor refuses work.
            env = server_env(server, HOST="localhost", GROUP_WAIT="1h")
            started = time.monotonic()
            result = run_script(
                """
                import logging, smtp_alerts
                logging.getLogger().addHandler(smtp_alerts.AlertHandler())
                logging.error("the last words of a short script")
                """,
                env,
            )
            elapsed = time.monotonic() - started
            assert result.returncode == 0, result.stderr
            assert result.stderr == ""
            (received,) = server.messages
            assert "the last words of a short script" in received.message.as_string()
            assert elapsed < 10  # bounded by SHUTDOWN_TIMEOUT, and far below it

    def test_exit_bounded_when_server_is_silent(self) -> None:
        """With a server that never answers, exit waits SHUTDOWN_TIMEOUT and says what was lost."""
        with GmailServer(greet=False) as server:
            env = server_env(server, SHUTDOWN_TIMEOUT="1s", TIMEOUT="30s")
            started = time.monotonic()
            result = run_script(
                """
                import logging, smtp_alerts
                logging.getLogger().addHandler(smtp_alerts.AlertHandler())
                logging.error("nobody is listening")
                """,
                env,
            )
            assert result.returncode == 0
            assert time.monotonic() - started < 6
            assert "smtp-alerts" in result.stderr
            assert "abcd" not in result.stderr  # no secret in the diagnostics


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
class TestFork:
    def test_forked_child_delivers_its_own_alert(self) -> None:
        """A child forked after the engine started gets its own engine and delivers."""
        with GmailServer() as server:
            result = run_script(
                """
                import logging, os, smtp_alerts, warnings
                warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, on purpose
                handler = smtp_alerts.AlertHandler()
                log = logging.getLogger("forked")
                log.addHandler(handler)
                log.error("from the parent")
                assert handler.flush(timeout=10)
                pid = os.fork()
                if pid == 0:
                    log.error("from the child %d", os.getpid())
                    ok = handler.flush(timeout=10)
                    os._exit(0 if ok else 3)
                _, status = os.waitpid(pid, 0)
                raise SystemExit(os.waitstatus_to_exitcode(status))
                """,
                server_env(server, GROUP_WAIT="1h"),
            )
            assert result.returncode == 0, result.stderr
            # One store: the child's alert is a follow-up in the parent's incident.
            bodies = [_plain(m.message) for m in server.messages]
            assert len(bodies) == 2
            assert "from the parent" in bodies[0]
            assert "from the child" in bodies[1]


class TestImport:
    def test_import_is_light(self) -> None:
        """import smtp_alerts loads neither apprise nor aiosmtplib nor pydantic."""
        result = run_script(
            """
            import sys, smtp_alerts
            heavy = ("apprise", "aiosmtplib", "pydantic", "aiosmtpd")
            print(",".join(m for m in heavy if m in sys.modules))
            """,
            dict(os.environ),
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == ""

    @pytest.mark.parametrize("module", ["apprise", "redis"])
    def test_handler_does_not_import_apprise_or_redis(self, module: str) -> None:
        """Without fallback URLs and REDIS_URL, a handler and an error import neither."""
        result = run_script(
            f"""
            import logging, sys, smtp_alerts
            handler = smtp_alerts.AlertHandler(to=["a@example.com"], from_="b@example.com",
                                               host="127.0.0.1", port=9, timeout="1s",
                                               shutdown_timeout="1s")
            logging.getLogger().addHandler(handler)
            logging.error("x")
            handler.flush(timeout=2)
            print({module!r} in sys.modules)
            """,
            dict(os.environ),
        )
        assert result.stdout.strip().splitlines()[0] == "False", result.stderr


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
class TestKilledMidSend:
    def test_next_process_delivers_what_a_killed_one_was_sending(self, tmp_path: Path) -> None:
        """A process SIGKILLed mid-DATA loses nothing: the next on its SPOOL_DIR sends it once."""
        spool = str(tmp_path / "spool")
        with GmailServer(faults=Faults(hang_after_data=True)) as server:
            env = server_env(server, SPOOL_DIR=spool, GROUP_WAIT="0s", TIMEOUT="60s")
            victim = subprocess.Popen(  # noqa: S603 - our own interpreter and script
                [
                    sys.executable,
                    "-c",
                    textwrap.dedent(
                        """
                    import logging, time, smtp_alerts
                    logging.getLogger().addHandler(smtp_alerts.AlertHandler())
                    logging.error("the database is on fire")
                    time.sleep(60)
                    """
                    ),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                # Waiting for an event (the whole message reached the server), not for time.
                deadline = time.monotonic() + 20
                while server.fired["hang_after_data"] == 0 and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert server.fired["hang_after_data"] == 1
            finally:
                victim.send_signal(signal.SIGKILL)
                victim.wait(10)
            assert server.messages == []  # never acknowledged

            server.faults = Faults()  # healed
            result = run_script(
                """
                import logging, smtp_alerts
                logging.getLogger().addHandler(smtp_alerts.AlertHandler())
                """,
                env,
            )
            assert result.returncode == 0, result.stderr
            (received,) = server.messages
        text = received.message.get_body(preferencelist=("plain",))
        assert text is not None
        content = text.get_content()
        assert "the database is on fire" in content
        assert "Delayed:" in content  # marked, with its original time
