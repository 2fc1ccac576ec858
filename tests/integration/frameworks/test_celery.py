"""Celery: a real prefork worker (2 children) on a SQLite broker, stopped while alerts wait."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from smtp_alerts.testing import GmailServer
from tests.helpers import event_counts, run_code, server_env, wait_for
from tests.integration.frameworks.inprocess import email_text, import_without, plain_text
from tests.integration.test_examples import run_example

pytest.importorskip("celery", reason="celery is in the test extra")
pytestmark = pytest.mark.slow

TASKS = """
import logging

from celery import Celery

from smtp_alerts import AlertHandler
from smtp_alerts.integrations.celery import install

# Attached at import, before the worker sets up logging (and empties the root's handlers).
logging.getLogger().addHandler(AlertHandler())

app = Celery("tasks", broker="sqla+sqlite:///" + {broker!r})
app.conf.update(
    task_ignore_result=True,
    worker_max_tasks_per_child={per_child},
    secret_key="celery-conf-SECRET-do-not-show",
)
install(app, include_args=True)


@app.task(bind=True, autoretry_for=(ConnectionRefusedError,), max_retries=2, default_retry_delay=0)
def charge(self, order_id, card_token, password):
    raise ConnectionRefusedError(f"the payment gateway refused order {{order_id}}")


@app.task
def audit(order_id):
    logging.getLogger("shop.audit").error("audit mismatch for order %s", order_id)
"""

CHARGES = 3
AUDITS = 2


EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def start_worker(
    tmp_path: Path, env: dict[str, str], *, per_child: int | None
) -> subprocess.Popen[str]:
    """``celery worker --pool prefork -c 2`` on a broker in ``tmp_path/broker.sqlite``."""
    source = TASKS.format(broker=str(tmp_path / "broker.sqlite"), per_child=per_child)
    (tmp_path / "tasks.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return run_worker("tasks", tmp_path, env, tmp_path / "worker.log")


def run_worker(app: str, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    """``celery -A app worker --pool prefork -c 2`` in ``cwd``, its output to ``log``."""
    command = [sys.executable, "-m", "celery", "-A", app, "worker", "--pool", "prefork"]
    command += ["-c", "2", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
    command += ["--without-heartbeat", "-n", "w1@localhost"]
    with log.open("w", encoding="utf-8") as out:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and celery
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )


def stop(worker: subprocess.Popen[str]) -> None:
    """SIGTERM: a warm shutdown, as in production; SIGKILL if it hangs (the test fails then)."""
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(10)
        raise


def send_tasks(tmp_path: Path, env: dict[str, str]) -> None:
    """Queue the charges (each fails three times: two retries, then for good) and the audits."""
    code = f"""
        import tasks
        for order in range({CHARGES}):
            tasks.charge.delay(order, card_token="tok_live_SECRET", password="hunter2-SECRET")
        for order in range({AUDITS}):
            tasks.audit.delay(order)
    """
    result = run_code(code, {**env, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr


def test_final_failures_of_a_pool_arrive_in_one_email_after_sigterm(tmp_path: Path) -> None:
    """3 tasks failing after 2 retries each + 2 logged errors = 5 events, sent after SIGTERM.

    GROUP_WAIT is long, so everything is pending when the worker is stopped:
    the children hand their counts to the store at exit (os._exit runs no
    atexit hook), to the main process, which sends at its exit. Children are
    recycled every two tasks (max_tasks_per_child) and hand over each time:
    still one email, every event counted. (Children that live until the
    worker stops: test_the_example_app_sends_one_email_when_the_worker_stops.)
    """
    with GmailServer() as server:
        env = server_env(server, SPOOL_DIR=str(tmp_path / "spool"), GROUP_WAIT="10m")
        worker = start_worker(tmp_path, env, per_child=2)
        log_file = tmp_path / "worker.log"
        try:
            send_tasks(tmp_path, env)

            def done() -> bool:
                text = log_file.read_text(encoding="utf-8")
                return worker.poll() is not None or (
                    text.count("raised unexpected") == CHARGES
                    and text.count("audit mismatch") == AUDITS
                )

            assert wait_for(done, 60), log_file.read_text(encoding="utf-8")
            assert worker.poll() is None, log_file.read_text(encoding="utf-8")
            assert not server.messages  # pending: GROUP_WAIT has not passed
        finally:
            stop(worker)
        assert wait_for(lambda: server.messages, 15), log_file.read_text(encoding="utf-8")
        found = event_counts(server)
        emails = [received.message for received in server.messages]
    log = log_file.read_text(encoding="utf-8")
    assert worker.returncode == 0, log
    assert log.count("Retry in") == 2 * CHARGES, log  # each charge retried twice
    assert found == [CHARGES + AUDITS], log  # one email for the pool, every event counted
    text = "\n".join(email_text(email) for email in emails)
    plain = plain_text(emails)
    assert "tasks.charge" in plain
    assert "ConnectionRefusedError" in plain
    assert "audit mismatch for order" in plain  # the root handler attached at import works
    assert "retries" in plain
    assert "w1@localhost" in plain  # the hostname
    assert "kwargs.password: [masked]" in text  # include_args=True: shown, scrubbed
    for secret in ("tok_live_SECRET", "hunter2-SECRET", "celery-conf-SECRET"):
        assert secret not in text
    assert "smtp-alerts:" not in log, log  # nothing left undelivered, no fallback


def test_retries_and_expected_failures_are_not_alerts(tmp_path: Path) -> None:
    """In-process: Retry, Ignore, Reject and Task.throws raise nothing; a final failure one."""
    pytest.importorskip("celery")
    code = """
        from celery import Celery
        from celery.exceptions import Ignore, Reject
        from smtp_alerts import Engine, Settings
        from smtp_alerts.transports import MemoryTransport
        from smtp_alerts.integrations.celery import install

        app = Celery("t", broker="memory://")
        app.conf.task_always_eager = True
        transport = MemoryTransport()
        engine = Engine(Settings(to=["a@example.com"], from_="b@example.com"), transport=transport)
        install(app, engine=engine)

        @app.task(bind=True, max_retries=1, default_retry_delay=0)
        def flaky(self):
            raise self.retry(exc=TimeoutError("upstream slow"))

        @app.task
        def ignored():
            raise Ignore()

        @app.task
        def rejected():
            raise Reject("bad input", requeue=False)

        @app.task(throws=(KeyError,))
        def expected():
            raise KeyError("known")

        for task in (flaky, ignored, rejected, expected):
            task.apply()
        engine.flush(10)
        problems = [p for m in transport.sent for p in m.digest.problems]
        print([(p.alert.logger, p.alert.exc_type, p.count) for p in problems])
        print(sorted(key for key, _ in problems[0].alert.context))  # no arguments by default
    """
    result = run_code(code, {**os.environ, "SMTP_ALERTS_SPOOL_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "[('t.flaky', 'TimeoutError', 1)]",
        "['hostname', 'id', 'retries', 'task']",  # eager: no queue; no arguments
    ], result.stdout


def test_the_example_app_sends_one_email_when_the_worker_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """examples/celery_app.py as its docstring runs it: a worker, then the script queues."""
    with GmailServer() as server:
        env = server_env(server, SPOOL_DIR=str(tmp_path / "spool"), GROUP_WAIT="10m")
        monkeypatch.setenv("BROKER_DIR", str(tmp_path / "broker"))  # the queuing run's too
        env["BROKER_DIR"] = str(tmp_path / "broker")
        log = tmp_path / "worker.log"
        worker = run_worker("celery_app", EXAMPLES, env, log)
        try:
            queued = run_example("celery_app.py", server)  # queues 3 charges
            assert queued.returncode == 0, queued.stderr

            def failed() -> bool:
                return log.read_text(encoding="utf-8").count("raised unexpected") == 3

            assert wait_for(lambda: failed() or worker.poll() is not None, 60)
            assert worker.poll() is None, log.read_text(encoding="utf-8")
        finally:
            stop(worker)
        assert wait_for(lambda: server.messages, 15), log.read_text(encoding="utf-8")
        assert event_counts(server) == [3]
        (received,) = server.messages
    assert "celery_app.charge" in email_text(received.message)


def test_importing_without_celery_names_the_package() -> None:
    result = import_without("celery", "celery")
    assert "pip install 'smtp-alerts[celery]'" in result.stdout, result
