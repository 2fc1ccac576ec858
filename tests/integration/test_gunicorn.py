"""One incident in a real ``gunicorn -w 4``: one email (two at most), its counts summed exactly."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
import textwrap
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from smtp_alerts.testing import GmailServer
from tests.helpers import event_counts, server_env, wait_for

pytest.importorskip("gunicorn", reason="gunicorn is in the test extra")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="gunicorn needs a POSIX system"),
]

WORKERS = 4
REQUESTS = 400

# A plain WSGI callable, as the smallest web app has it: the handler is attached
# at import (in the arbiter with --preload, in each worker without).
APP = """
import logging, os
from smtp_alerts import AlertHandler

log = logging.getLogger("shop")
log.addHandler(AlertHandler())


def app(environ, start_response):
    status = "200 OK"
    if environ["PATH_INFO"] == "/fail":
        try:
            raise ConnectionRefusedError("the payment gateway refused the connection")
        except ConnectionRefusedError:
            log.exception("checkout failed")
        status = "500 Internal Server Error"
    start_response(status, [("X-Worker", str(os.getpid())), ("Content-Length", "0")])
    return [b""]
"""


# gunicorn's hook after a worker loaded the app (imported it, or inherited it with
# --preload): the test starts the burst once every worker can take requests. No
# control socket (recent gunicorn makes one in ~/.gunicorn, shared by every run).
CONFIG = """
from pathlib import Path

control_socket_disable = True

def post_worker_init(worker):
    (Path({ready!r}) / str(worker.pid)).touch()
"""


class UnixConnection(http.client.HTTPConnection):
    """HTTP over gunicorn's unix socket: no TCP port to pick, so none to race for."""

    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=10)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def get(sock: Path, path: str) -> tuple[int, str]:
    """One request on a connection of its own (sync workers close each one): status, worker."""
    connection = UnixConnection(sock)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("X-Worker", "")
    finally:
        connection.close()


def answers(sock: Path) -> bool:
    try:
        return get(sock, "/")[0] == 200
    except OSError:
        return False


def start_gunicorn(tmp_path: Path, env: dict[str, str], *, preload: bool) -> subprocess.Popen[str]:
    """``gunicorn -w 4`` serving the app on ``tmp_path/g.sock``; its workers mark ``ready/``."""
    (tmp_path / "shop.py").write_text(textwrap.dedent(APP), encoding="utf-8")
    (tmp_path / "ready").mkdir()
    config = tmp_path / "conf.py"
    config.write_text(CONFIG.format(ready=str(tmp_path / "ready")), encoding="utf-8")
    command = [sys.executable, "-m", "gunicorn", "-c", str(config), "-w", str(WORKERS)]
    command += ["-b", f"unix:{tmp_path / 'g.sock'}", "--chdir", str(tmp_path)]
    command += ["--graceful-timeout", "15", *(["--preload"] if preload else []), "shop:app"]
    with (tmp_path / "gunicorn.log").open("w", encoding="utf-8") as log:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and gunicorn
            command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True
        )


@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
@pytest.mark.parametrize("stop", ["at-once", "after-first-email"])
def test_gunicorn_workers_send_one_email_per_incident(
    tmp_path: Path, preload: bool, stop: str
) -> None:
    """400 failing requests over 4 workers, then SIGTERM: <= 2 emails, 400 events in all.

    Stopped at once, the workers leave the store with the window still open
    and the last one to leave sends it; stopped after the first email, a live
    worker claimed the window when it came due and shutdown sends what remains.
    """
    sock = tmp_path / "g.sock"
    assert len(str(sock)) < 100, "an AF_UNIX path must be short"
    with GmailServer() as server:
        env = server_env(server, SPOOL_DIR=str(tmp_path / "spool"), GROUP_WAIT="1500ms")
        gunicorn = start_gunicorn(tmp_path, env, preload=preload)
        try:
            ready = tmp_path / "ready"
            booted = wait_for(lambda: len(list(ready.iterdir())) == WORKERS and answers(sock), 15)
            assert booted, (tmp_path / "gunicorn.log").read_text(encoding="utf-8")
            with ThreadPoolExecutor(8) as pool:
                served = list(pool.map(lambda _: get(sock, "/fail"), range(REQUESTS)))
            if stop == "after-first-email":
                assert wait_for(lambda: server.messages, 10)
        finally:
            gunicorn.send_signal(signal.SIGTERM)  # a graceful shutdown, as in production
            gunicorn.wait(60)  # workers flush, then the arbiter: each within SHUTDOWN_TIMEOUT
        log = (tmp_path / "gunicorn.log").read_text(encoding="utf-8")
        found = event_counts(server)
    workers = Counter(worker for _, worker in served)
    assert gunicorn.returncode == 0, log
    assert [status for status, _ in served] == [500] * REQUESTS
    assert len(workers) == WORKERS, workers  # each loaded before the burst: each takes some
    assert 1 <= len(found) <= 2, (found, workers, log)
    assert sum(found) == REQUESTS, (found, workers, log)
    assert "smtp-alerts:" not in log, log  # no per-process fallback, nothing left undelivered
