"""gunicorn: ``-c python:smtp_alerts.integrations.gunicorn`` reports timeouts and request errors."""

from __future__ import annotations

import http.client
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from smtp_alerts.testing import GmailServer
from tests.helpers import event_counts, process_alive, run_code, server_env, wait_for
from tests.integration.frameworks.inprocess import email_text, import_without, plain_text
from tests.integration.test_gunicorn import UnixConnection, answers

pytest.importorskip("gunicorn", reason="gunicorn is in the test extra")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="gunicorn needs a POSIX system"),
]

# The example is the app: /fail raises, /slow sleeps in slow_report far past --timeout 1.
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

FAILS = 3
SECRETS = ("COOKIE-SECRET", "AUTH-SECRET", "QUERY-SECRET")


def request(sock: Path, path: str) -> int:
    """One request with a planted cookie and Authorization header; its status, or 0 if cut."""
    connection = UnixConnection(sock)
    headers = {"Cookie": "sessionid=COOKIE-SECRET", "Authorization": "Bearer AUTH-SECRET"}
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
    except (OSError, http.client.HTTPException):
        return 0
    else:
        return response.status
    finally:
        connection.close()


def start(
    tmp_path: Path, env: dict[str, str], app: str = "gunicorn_app:app", folder: Path = EXAMPLES
) -> subprocess.Popen[str]:
    """The one line of the README: ``gunicorn -c python:smtp_alerts.integrations.gunicorn``."""
    command = [sys.executable, "-m", "gunicorn", "-c", "python:smtp_alerts.integrations.gunicorn"]
    command += ["-w", "2", "--timeout", "1", "-b", f"unix:{tmp_path / 'g.sock'}"]
    command += ["--chdir", str(folder), app]
    with (tmp_path / "gunicorn.log").open("w", encoding="utf-8") as log:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and gunicorn
            command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True
        )


def test_a_worker_timeout_and_request_errors_arrive_named_and_scrubbed(tmp_path: Path) -> None:
    """WORKER TIMEOUT (once, where it was stuck), 3 request errors and a worker killed by
    SIGKILL arrive; no secret; none lost."""
    sock = tmp_path / "g.sock"
    # HOME: recent gunicorn makes a control socket in ~/.gunicorn, shared by every run.
    with GmailServer() as server:
        env = server_env(server, SPOOL_DIR=str(tmp_path / "spool"), GROUP_WAIT="10m")
        gunicorn = start(tmp_path, {**env, "HOME": str(tmp_path)})
        log_file = tmp_path / "gunicorn.log"
        try:
            assert wait_for(lambda: answers(sock), 15), log_file.read_text(encoding="utf-8")
            slow = threading.Thread(target=request, args=(sock, "/slow"))
            slow.start()
            statuses = [request(sock, "/fail?token=QUERY-SECRET") for _ in range(FAILS)]
            slow.join(20)
            assert not slow.is_alive()
            assert wait_for(lambda: "Worker exiting" in log_file.read_text("utf-8"), 10)
            # What the out-of-memory killer does to a worker:
            text = log_file.read_text("utf-8")
            aborted = re.findall(r"WORKER TIMEOUT \(pid:(\d+)\)", text)
            booted = re.findall(r"Booting worker with pid: (\d+)", text)
            alive = [int(pid) for pid in booted if pid not in aborted and process_alive(int(pid))]
            os.kill(alive[0], signal.SIGKILL)
            assert wait_for(lambda: "out of memory" in log_file.read_text("utf-8"), 10)
        finally:
            gunicorn.send_signal(signal.SIGTERM)
            gunicorn.wait(60)  # workers flush, then the arbiter: each within SHUTDOWN_TIMEOUT
        assert wait_for(lambda: server.messages, 10)
        found = event_counts(server)
        emails = [received.message for received in server.messages]
    log = log_file.read_text(encoding="utf-8")
    assert gunicorn.returncode == 0, log
    assert statuses == [500] * FAILS
    assert "WORKER TIMEOUT" in log  # gunicorn's own line, which alone said it before
    # GROUP_WAIT is long: all is pending until gunicorn stops; the arbiter sends it.
    assert found == [2 + FAILS], (found, log)
    raw = "\n".join(email_text(email) for email in emails)
    plain = plain_text(emails)
    assert "gunicorn WORKER TIMEOUT" in plain
    assert "in slow_report" in plain  # where the worker was stuck
    assert "WORKER TIMEOUT (pid" not in plain  # the arbiter's line: not a second problem
    assert "exited with code" not in plain
    assert "SystemExit" not in plain  # the aborted request: said by the timeout already
    assert "Error handling request GET /fail" in plain  # no query string
    assert "ValueError" in plain
    assert "was sent SIGKILL! Perhaps out of memory?" in plain  # from the arbiter
    for secret in SECRETS:
        assert secret not in raw


# A handler that cannot take SIGABRT (as one stuck in C code cannot run its handler).
HUNG = """
import signal, time


def app(environ, start_response):
    if environ["PATH_INFO"] == "/hang":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGABRT})
        time.sleep(20)
    start_response("200 OK", [("Content-Length", "0")])
    return [b""]
"""


def test_a_worker_too_stuck_to_report_its_timeout_is_reported_by_the_arbiter(
    tmp_path: Path,
) -> None:
    """The worker never runs worker_abort; the arbiter kills it, and that is the alert."""
    (tmp_path / "hung.py").write_text(textwrap.dedent(HUNG), encoding="utf-8")
    sock = tmp_path / "g.sock"
    with GmailServer() as server:
        env = server_env(server, SPOOL_DIR=str(tmp_path / "spool"), GROUP_WAIT="10m")
        gunicorn = start(tmp_path, {**env, "HOME": str(tmp_path)}, "hung:app", tmp_path)
        log_file = tmp_path / "gunicorn.log"
        try:
            assert wait_for(lambda: answers(sock), 15), log_file.read_text(encoding="utf-8")
            assert request(sock, "/hang") == 0  # cut when the worker is killed
            assert wait_for(lambda: "SIGKILL" in log_file.read_text("utf-8"), 15)
        finally:
            gunicorn.send_signal(signal.SIGTERM)
            gunicorn.wait(60)  # workers flush, then the arbiter: each within SHUTDOWN_TIMEOUT
        assert wait_for(lambda: server.messages, 10), log_file.read_text(encoding="utf-8")
        found = event_counts(server)
        plain = plain_text(received.message for received in server.messages)
    assert found == [1], plain
    assert "WORKER TIMEOUT (pid:" in plain
    assert "hung past its abort, sent SIGKILL" in plain


def test_the_module_sets_only_gunicorn_hooks(tmp_path: Path) -> None:
    """Loaded as a config, the module's names that are gunicorn settings are its hooks."""
    code = """
        from gunicorn.config import Config
        import smtp_alerts.integrations.gunicorn as module

        settings = set(Config().settings)
        print(sorted(name for name in vars(module) if name in settings))
    """
    result = run_code(code, {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    hooks = ["child_exit", "on_exit", "on_starting", "post_fork", "worker_abort"]
    hooks += ["worker_exit", "worker_int"]
    assert result.stdout.strip() == repr(sorted(hooks))


def test_importing_without_gunicorn_names_the_package() -> None:
    result = import_without("gunicorn", "gunicorn")
    assert "pip install 'smtp-alerts[gunicorn]'" in result.stdout, result


def test_wrong_settings_are_said_and_do_not_stop_gunicorn() -> None:
    """No SMTP_ALERTS_TO (the tests' environment has none): one warning, no exception."""
    from smtp_alerts.integrations import gunicorn as hooks

    said: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())

    logger = logging.getLogger("smtp_alerts.integrations")
    logger.addHandler(keep := Keep())
    try:
        hooks.on_starting(None)
    finally:
        logger.removeHandler(keep)
    assert len(said) == 1
    assert said[0].startswith("smtp-alerts: gunicorn.error is not watched:")
