"""One trial of the kill matrix: a scripted scenario, a SIGKILL at a random moment, a restart.

Shared by the suite (a few trials) and ``benchmarks/kill_matrix.py`` (many).
The victim raises several incidents, one every ``STEP`` seconds, against a
server whose first message hangs (then it heals), and says when each alert was
accepted. It is killed at a random moment; a later start on the same
``SPOOL_DIR`` sends what was kept. Every alert accepted more than one tick
before the kill must arrive at least once (DESIGN: an abrupt kill may lose the
last tick only); more than once is a duplicate, counted.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from smtp_alerts._delivery.spool.probe import spool_has_entries
from smtp_alerts.testing import Faults, GmailServer
from tests.helpers import next_start

__all__ = ["INCIDENTS", "Trial", "run_trial"]

INCIDENTS = 6
STEP = 0.15
#: An alert accepted this long before the kill must have reached the store.
SAFE_AGE = 0.5

VICTIM = f"""
import sys, time, smtp_alerts
engine = smtp_alerts.get_engine()
for n in range({INCIDENTS}):
    engine.alert(f"kill-matrix incident {{n}}", key=f"k{{n}}", group=f"g{{n}}")
    print(n, time.time(), flush=True)
    time.sleep({STEP})
time.sleep(30)
"""


@dataclass
class Trial:
    """What one trial found.

    Attributes:
        kill_after: seconds from the first acceptance to the SIGKILL.
        accepted: incidents the victim accepted before the kill.
        must: of those, the ones accepted at least ``SAFE_AGE`` before it.
        lost: incidents in ``must`` that never arrived.
        duplicates: extra copies that arrived, over all incidents.
    """

    kill_after: float
    accepted: list[int] = field(default_factory=list)
    must: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    duplicates: int = 0


def _environ(server: GmailServer, spool: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTP_ALERTS_")}
    return {
        **env,
        **server.environ(
            SPOOL_DIR=str(spool), GROUP_WAIT="200ms", TIMEOUT="1s", SHUTDOWN_TIMEOUT="10s"
        ),
    }


def _kill_at(victim: subprocess.Popen[str], kill_after: float) -> list[tuple[int, float]]:
    """Read the victim's acceptances, SIGKILL it ``kill_after`` s after the first one."""
    assert victim.stdout is not None
    first = victim.stdout.readline().split()
    accepted = [(int(first[0]), float(first[1]))]
    deadline = accepted[0][1] + kill_after
    os.set_blocking(victim.stdout.fileno(), False)
    while time.time() < deadline:
        time.sleep(0.005)  # a poll for the moment, not a wait for something to happen
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    killed_at = time.time()
    with victim.stdout:
        rest = victim.stdout.read() or ""
    for line in rest.splitlines():
        n, at = line.split()
        accepted.append((int(n), float(at)))
    return [(n, killed_at - at) for n, at in accepted]


def run_trial(spool: Path, kill_after: float | None = None) -> Trial:
    """Run the scenario once in ``spool`` (a fresh directory) and report.

    Args:
        spool: the SPOOL_DIR of this trial; must be empty.
        kill_after: when to kill, seconds after the first acceptance; random
            within the scenario when None.
    """
    if kill_after is None:
        kill_after = random.uniform(0.0, INCIDENTS * STEP + 1.5)  # noqa: S311 - a test's dice
    trial = Trial(kill_after=kill_after)
    with GmailServer(faults=Faults(hang_after_data=True, fail_times=1)) as server:
        env = _environ(server, spool)
        victim = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-c", textwrap.dedent(VICTIM)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        ages = _kill_at(victim, kill_after)
        next_start(env)
        if spool_has_entries(spool):
            # The restart's own first send met the hang (the victim was killed
            # before its first send): it kept the digest, and the next start
            # sends it. Kept is not lost.
            next_start(env)
        bodies = [_plain(m.message) for m in server.messages]
    trial.accepted = sorted(n for n, _ in ages)
    trial.must = sorted(n for n, age in ages if age >= SAFE_AGE)
    for n in trial.accepted:
        copies = sum(len(re.findall(rf"kill-matrix incident {n}\b", body)) > 0 for body in bodies)
        trial.duplicates += max(0, copies - 1)
        if n in trial.must and copies == 0:
            trial.lost.append(n)
    return trial


def _plain(message: object) -> str:
    part = message.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
    return str(part.get_content()) if part is not None else ""
