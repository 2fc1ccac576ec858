"""Nothing lost by construction: what a round formed is in the store before any attempt."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from email.message import EmailMessage
from pathlib import Path

import pytest

from smtp_alerts.testing import Faults, GmailServer
from tests.helpers import event_counts, next_start, server_env, wait_for
from tests.helpers import run_code as run_script

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def spooled(spool: Path) -> int:
    """How many messages wait in the outbox of ``spool`` (read-only)."""
    path = spool / "spool.sqlite3"
    if not path.exists():
        return 0
    with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])


def kept(spool: Path) -> int:
    """Incidents kept in ``spool``: digests in the outbox plus groups with counts pending."""
    path = spool / "spool.sqlite3"
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
            pending = conn.execute(
                "SELECT COUNT(DISTINCT grp) FROM store_problems WHERE pending > 0"
            ).fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0
    return spooled(spool) + int(pending)


FIVE_INCIDENTS = """
import logging, time, smtp_alerts
logging.getLogger().addHandler(smtp_alerts.AlertHandler())
logging.error("incident 0 is burning", extra={"alert_group": "g0"})
logging.error("incident 1 is burning", extra={"alert_group": "g1"})
logging.error("incident 2 is burning", extra={"alert_group": "g2"})
logging.error("incident 3 is burning", extra={"alert_group": "g3"})
logging.error("incident 4 is burning", extra={"alert_group": "g4"})
time.sleep(60)
"""


def test_five_incidents_all_spooled_before_a_hanging_send_is_killed(tmp_path: Path) -> None:
    """Five digests formed, the first send hangs, SIGKILL: all five are kept and sent once."""
    spool = tmp_path / "spool"
    with GmailServer(faults=Faults(hang_after_data=True)) as server:
        env = server_env(server, SPOOL_DIR=str(spool), GROUP_WAIT="500ms", TIMEOUT="60s")
        victim = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-c", textwrap.dedent(FIVE_INCIDENTS)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert wait_for(lambda: server.fired["hang_after_data"] >= 1)
            # Each of the five is formed into the outbox or pushed to the store within a tick.
            assert wait_for(lambda: kept(spool) == 5, 5.0), kept(spool)
        finally:
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
        assert server.messages == []
        assert kept(spool) == 5

        server.faults = Faults()
        next_start(env)
        subjects = sorted(m.message["Subject"] for m in server.messages)
    assert len(subjects) == 5, subjects
    for n in range(5):
        assert sum(f"incident {n} is burning" in s for s in subjects) == 1, subjects
    assert spooled(spool) == 0


WORKER = """
import logging, os, pathlib, time, smtp_alerts
log = logging.getLogger("worker")
log.addHandler(smtp_alerts.AlertHandler())
for _ in range({n}):
    log.error("the shared database refused a connection")
# Workers of one server live side by side: wait until every one has logged.
ready = pathlib.Path({ready!r})
(ready / str(os.getpid())).touch()
deadline = time.monotonic() + 30
while len(list(ready.iterdir())) < {processes} and time.monotonic() < deadline:
    time.sleep(0.01)
"""


def start(code: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(("processes", "errors"), [(4, 1000), (16, 250)])
def test_one_incident_on_many_processes_is_one_email_with_summed_counts(
    tmp_path: Path, processes: int, errors: int
) -> None:
    """N processes log one error many times on one SPOOL_DIR: <= 2 emails, counts summed."""
    with GmailServer() as server:
        env = server_env(server, SPOOL_DIR=str(tmp_path), GROUP_WAIT="1s")
        ready = tmp_path / "ready"
        ready.mkdir()
        code = WORKER.format(n=errors, ready=str(ready), processes=processes)
        workers = [start(code, env) for _ in range(processes)]
        for worker in workers:
            _, stderr = worker.communicate(timeout=60)
            assert worker.returncode == 0, stderr
        # Whatever a handed-over window left is sent by the next start.
        next_start(env)
        found = event_counts(server)
    assert 1 <= len(found) <= 2, found
    assert sum(found) == processes * errors, found


def test_quota_is_shared_by_the_store(tmp_path: Path) -> None:
    """6 processes with MAX_PER_HOUR=2, each with its own incident: at most 2 emails."""
    with GmailServer() as server:
        env = server_env(server, SPOOL_DIR=str(tmp_path), GROUP_WAIT="0s", MAX_PER_HOUR="2")
        code = (
            "import logging, os, smtp_alerts\n"
            "logging.getLogger().addHandler(smtp_alerts.AlertHandler())\n"
            "logging.error('worker failed', extra={'alert_group': str(os.getpid())})\n"
        )
        workers = [start(code, env) for _ in range(6)]
        said = "".join(worker.communicate(timeout=60)[1] for worker in workers)
        assert len(server.messages) <= 2
        assert "held back by the email quota: kept in the store" in said

        # Held back, not lost: a later start with a higher cap sends the rest.
        next_start({**env, "SMTP_ALERTS_MAX_PER_HOUR": "20"})
        assert len(server.messages) == 6


def test_sigterm_without_hooks_loses_nothing(tmp_path: Path) -> None:
    """SIGTERM with no crash hooks: the pending alert is in the store; the next start sends it."""
    with GmailServer() as server:
        env = server_env(server, SPOOL_DIR=str(tmp_path), GROUP_WAIT="1h")
        victim = start(
            "import logging, time, smtp_alerts\n"
            "logging.getLogger().addHandler(smtp_alerts.AlertHandler())\n"
            "logging.error('the nightly export failed')\n"
            "time.sleep(60)\n",
            env,
        )
        db = tmp_path / "spool.sqlite3"
        try:
            assert wait_for(lambda: db.exists() and kept(tmp_path) == 1)
        finally:
            victim.send_signal(signal.SIGTERM)
            victim.communicate(timeout=10)
        assert victim.returncode == -signal.SIGTERM
        assert server.messages == []
        next_start(env)
        (received,) = server.messages
    assert "the nightly export failed" in str(received.message["Subject"])


def test_flush_speaks_of_this_process_only(tmp_path: Path) -> None:
    """A digest a live sibling is sending does not make this process's flush fail."""
    from smtp_alerts import Engine, Settings
    from smtp_alerts._delivery.spool import Spool
    from smtp_alerts._delivery.spool.liveness import hold
    from smtp_alerts.models import OutgoingMessage
    from smtp_alerts.transports import MemoryTransport

    sibling = "elsewhere:1:1:cafe"
    hold(tmp_path, sibling)  # its lock is held: alive, from any pid namespace
    with Spool(tmp_path, owner=sibling) as spool:
        email = EmailMessage()
        email["Subject"] = "the sibling's digest"
        email.set_content("being sent")
        spool.add(
            OutgoingMessage(
                message_id="<sibling.1@example.com>",
                email=email,
                sender="a@example.com",
                recipients=("b@example.com",),
                title="the sibling's digest",
                summary="",
            )
        )
    transport = MemoryTransport()
    engine = Engine(
        Settings(to=["b@example.com"], from_="a@example.com", spool_dir=tmp_path),
        transport=transport,
    )
    engine.alert("our own problem")
    assert engine.flush(timeout=10)
    assert len(transport.sent) == 1
    assert "our own problem" in transport.sent[0].title
    engine.close()


@pytest.mark.parametrize("trial", range(4))
def test_kill_matrix_loses_nothing(tmp_path: Path, trial: int) -> None:
    """SIGKILL at a random moment of a scripted scenario: every kept alert arrives."""
    from .kill_scenario import INCIDENTS, STEP, run_trial

    # Spread over the scenario (a hanging first send, then a healthy server) plus jitter.
    kill_after = trial * (INCIDENTS * STEP + 1.0) / 4 + random.uniform(0, 0.2)  # noqa: S311
    found = run_trial(tmp_path, kill_after)
    assert found.accepted, found
    assert found.lost == [], found


PREFORK_CHILD = """
import logging, os, sqlite3, time, warnings, smtp_alerts
warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, on purpose
logging.getLogger().addHandler(smtp_alerts.AlertHandler())  # built before the fork
pid = os.fork()
if pid == 0:
    logging.error("a worker's request failed")
    # A worker serving on for a moment (a tick is enough), then ended the prefork way.
    db, deadline = {db!r}, time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(db) as conn:
                if conn.execute("SELECT SUM(pending) FROM store_problems").fetchone()[0]:
                    break
        except sqlite3.Error:
            pass
        time.sleep(0.01)
    os._exit(0)
os.waitpid(pid, 0)
os._exit(0)
"""


def test_prefork_child_ending_with_os_exit_loses_nothing(tmp_path: Path) -> None:
    """A forked worker ending with os._exit: its alert is in the store; the next start sends it."""
    with GmailServer() as server:
        env = server_env(server, SPOOL_DIR=str(tmp_path), GROUP_WAIT="1h")
        code = PREFORK_CHILD.format(db=str(tmp_path / "spool.sqlite3"))
        result = run_script(code, env)
        assert result.returncode == 0, result.stderr
        assert server.messages == []
        next_start(env)
        (received,) = server.messages
    assert "a worker's request failed" in str(received.message["Subject"])


def test_full_quota_waits_for_its_window_not_a_busy_loop(tmp_path: Path) -> None:
    """Held back by the store's quota, the engine sleeps until the hour reopens."""
    from smtp_alerts import Engine, Settings
    from smtp_alerts.testing import ManualClock
    from smtp_alerts.transports import MemoryTransport

    clock = ManualClock()
    transport = MemoryTransport()
    settings = Settings(
        to=["b@example.com"],
        from_="a@example.com",
        spool_dir=tmp_path,
        max_per_hour=1,
        group_wait=0,
    )
    engine = Engine(settings, transport=transport, clock=clock)
    engine.alert("first", group="one")
    engine.alert("second", group="two")
    assert not engine.flush(timeout=10)  # one sent, one held back
    assert len(transport.sent) == 1
    assert engine._runner is not None
    link = engine._runner._link
    assert link is not None
    due = link.next_due()
    assert due is not None
    assert due - clock() > 3000  # the hour reopens then; no claim before it
    clock.advance(3601)
    assert engine.flush(timeout=10)
    assert len(transport.sent) == 2
    engine.close()


def test_a_store_that_refuses_degrades_to_per_process_sending(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The store's tables vanish under a running engine: its alerts still go out, said once."""
    from smtp_alerts import Engine, Settings
    from smtp_alerts.transports import MemoryTransport

    transport = MemoryTransport()
    settings = Settings(to=["b@example.com"], from_="a@example.com", spool_dir=tmp_path)
    engine = Engine(settings, transport=transport)
    engine.alert("before", group="one")
    assert engine.flush(timeout=10)
    with closing(sqlite3.connect(tmp_path / "spool.sqlite3")) as conn:
        conn.execute("DROP TABLE store_problems")  # any refusal: busy, read-only, broken
        conn.commit()
    engine.alert("after", group="two")
    assert engine.flush(timeout=10)
    assert [("after" in m.title) for m in transport.sent] == [False, True]
    assert engine._runner is not None
    assert engine._runner._link is None  # sending on its own now
    engine.close()
    assert "sending per process" in capfd.readouterr().err


OPEN_TOGETHER = """
import os, sys
from pathlib import Path
from smtp_alerts._delivery.spool.database import Database

failed = 0
for trial in range({trials}):
    path = Path({root!r}) / str(trial) / "spool.sqlite3"
    path.parent.mkdir()
    go, release = os.pipe()
    children = []
    for _ in range(8):
        pid = os.fork()
        if pid == 0:
            os.close(release)
            os.read(go, 1)  # every child starts at once, when the pipe closes
            try:
                Database(path).close()
            except Exception as exc:
                print(repr(exc), file=sys.stderr)
                os._exit(1)
            os._exit(0)
        children.append(pid)
    os.close(go)
    os.close(release)
    failed += sum(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0 for pid in children)
print(failed)
"""


def test_workers_creating_the_spool_together_all_open_it(tmp_path: Path) -> None:
    """8 processes open a new spool at once (gunicorn workers' first alerts): none is refused.

    Each reads the new file, then needs it alone to turn WAL on: SQLite answered
    one of them "database is locked" at once, and that worker sent per process
    with its alerts in memory only (an extra email, and lost on a kill).
    """
    code = OPEN_TOGETHER.format(trials=40, root=str(tmp_path))
    result = run_script(code, {**os.environ})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0", result.stderr
