"""Nothing lost by construction: what a round formed is in the store before any attempt."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import pytest

from smtp_alerts.testing import Faults, GmailServer

from .test_process import run_script, server_env

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
    with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
        pending = conn.execute(
            "SELECT COUNT(DISTINCT grp) FROM store_problems WHERE pending > 0"
        ).fetchone()[0]
    return spooled(spool) + int(pending)


def wait_for(condition: object, seconds: float = 20.0) -> bool:
    """Poll ``condition`` (a callable) until it holds or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


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
        result = run_script(
            "import logging, smtp_alerts\n"
            "logging.getLogger().addHandler(smtp_alerts.AlertHandler())\n",
            env,
        )
        assert result.returncode == 0, result.stderr
        subjects = sorted(m.message["Subject"] for m in server.messages)
    assert len(subjects) == 5, subjects
    for n in range(5):
        assert sum(f"incident {n} is burning" in s for s in subjects) == 1, subjects
    assert spooled(spool) == 0
