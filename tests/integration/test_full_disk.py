"""A full disk under the spool: the formed digests stay in memory, are sent, and nothing is lost.

The disk is a real one: a 1 MiB tmpfs mounted as ``SPOOL_DIR`` and filled by a
big file once the engine has opened its spool, so SQLite gets SQLITE_FULL on
its next write. Mounting needs root (CI runs as root); elsewhere these skip,
and the last test (a file size limit: EFBIG) runs anyway.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtp_alerts.testing import Faults, GmailServer
from tests.helpers import next_start, run_code, server_env, start_script, wait_for

KEPT_LINE = "kept in memory until the disk has room"


class Disk:
    """A tiny tmpfs: :meth:`fill` leaves no byte free, :meth:`free` gives the room back."""

    def __init__(self, mount: Path) -> None:
        self.mount = mount
        self.filler = mount / "filler"

    def fill(self) -> None:
        """Write until the disk refuses (ENOSPC)."""
        with open(self.filler, "wb", buffering=0) as out:  # noqa: PTH123 - raw, unbuffered
            try:
                while True:
                    out.write(b"x" * 4096)
            except OSError:
                pass

    def free(self) -> None:
        """Delete the filler: the disk has room again."""
        self.filler.unlink()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    """A 1 MiB tmpfs of its own, unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs (a disk that can be filled for real) needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(  # noqa: S603 - fixed arguments
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],  # noqa: S607
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield Disk(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)  # noqa: S603, S607


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    """The children a test starts: killed at the end if a failed assertion left one waiting."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
        child.communicate()


# Logged once the disk is full: three problems of one digest (an ordinary one
# among them) and two incidents of their own.
PROBLEMS = """
log = logging.getLogger("app")
log.error("an ordinary error beside the others")
log.error("disk of %s is full", "db-1")
log.error("replica lag is %d s", 42)
log.error("incident A is burning", extra={"alert_group": "a"})
log.error("incident B is burning", extra={"alert_group": "b"})
"""

# The child opens its spool (a first error, sent), says "ready", waits for the
# parent to fill the disk, logs three problems in one group and two other
# incidents, then does what STEPS says, each step after a control file appears.
CHILD = """
import logging, os, sys, time, smtp_alerts
from pathlib import Path
ctl = Path(os.environ["CTL"])
def wait(name):
    deadline = time.monotonic() + 30
    while not (ctl / name).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
logging.getLogger().addHandler(smtp_alerts.AlertHandler())
logging.error("warm-up: the spool is open", extra={"alert_group": "warm-up"})
smtp_alerts.get_engine().flush()
(ctl / "ready").touch()
wait("full")
{problems}for step in sys.argv[1:]:
    if step == "flush":
        smtp_alerts.get_engine().flush(timeout=20)
        (ctl / "flushed").touch()
    else:
        wait(step)
""".replace("{problems}", PROBLEMS)


def run_child(env: dict[str, str], ctl: Path, *steps: str) -> subprocess.Popen[str]:
    return start_script(CHILD, {**env, "CTL": str(ctl)}, *steps)


def bodies(server: GmailServer) -> dict[str, str]:
    """Subject -> plain text of every email the server took."""
    out = {}
    for received in server.messages:
        part = received.message.get_body(preferencelist=("plain",))
        assert part is not None
        out[str(received.message["Subject"])] = str(part.get_content())
    return out


def assert_all_delivered_once(server: GmailServer) -> None:
    subjects = [str(m.message["Subject"]) for m in server.messages]
    for marker in ("incident A is burning", "incident B is burning", "warm-up"):
        assert sum(marker in s for s in subjects) == 1, subjects
    default = [body for subject, body in bodies(server).items() if "3 problems" in subject]
    assert len(default) == 1, subjects
    for text in ("an ordinary error beside the others", "db-1", "replica lag is 42 s"):
        assert text in default[0], default[0]
    assert len(subjects) == 4, subjects


def start_full(
    disk: Disk,
    server: GmailServer,
    tmp_path: Path,
    children: list[subprocess.Popen[str]],
    *steps: str,
) -> tuple[subprocess.Popen[str], Path]:
    """The child with its spool open on ``disk``, then the disk filled."""
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    env = server_env(server, SPOOL_DIR=str(disk.mount / "spool"), GROUP_WAIT="100ms")
    child = run_child(env, ctl, *steps)
    children.append(child)
    assert wait_for((ctl / "ready").exists), "the child did not open its spool"
    disk.fill()
    return child, ctl


def test_disk_full_before_the_digests_form_smtp_working(
    disk: Disk, tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    """The disk fills before the digests form; they are sent at exit anyway, said once."""
    with GmailServer() as server:
        child, ctl = start_full(disk, server, tmp_path, children)
        (ctl / "full").touch()
        _, stderr = child.communicate(timeout=30)
        assert child.returncode == 0, stderr
        assert_all_delivered_once(server)
    assert stderr.count(KEPT_LINE) == 1, stderr
    assert str(disk.mount / "spool") in stderr
    assert "will be retried" not in stderr
    assert "not delivered" not in stderr


def test_disk_full_and_smtp_down_then_both_come_back(
    disk: Disk, tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    """Kept in memory while neither the disk nor the server takes them; then each sent once."""
    with GmailServer() as server:
        child, ctl = start_full(disk, server, tmp_path, children, "flush", "go")
        server.faults = Faults(refuse_connections=True)
        (ctl / "full").touch()
        assert wait_for((ctl / "flushed").exists, 30), "the flush did not return"
        assert len(server.messages) == 1  # the warm-up only
        disk.free()
        server.faults = Faults()
        (ctl / "go").touch()
        _, stderr = child.communicate(timeout=30)
        assert child.returncode == 0, stderr
        # The server's failures rested its channel: the digests went from memory
        # into the spool once the disk had room, and a later start sends them.
        assert "only in memory" not in stderr, stderr
        next_start(server_env(server, SPOOL_DIR=str(disk.mount / "spool")))
        assert_all_delivered_once(server)
    assert stderr.count(KEPT_LINE) == 1, stderr


def test_ordinary_problem_sent_while_the_disk_stays_full(
    disk: Disk, tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    """A round while the disk is full sends every problem of its digests, at once."""
    with GmailServer() as server:
        child, ctl = start_full(disk, server, tmp_path, children, "flush", "go")
        (ctl / "full").touch()
        assert wait_for((ctl / "flushed").exists, 30), "the flush did not return"
        # Sent from memory during the process's life, not kept for a later start.
        assert_all_delivered_once(server)
        (ctl / "go").touch()
        _, stderr = child.communicate(timeout=30)
        assert child.returncode == 0, stderr
        assert len(server.messages) == 4
    assert "will be retried" not in stderr


def test_exit_while_disk_full_and_smtp_down_says_what_is_lost(
    disk: Disk, tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    """What is only in memory at exit is named on stderr, honestly as lost."""
    with GmailServer() as server:
        child, ctl = start_full(disk, server, tmp_path, children)
        server.faults = Faults(refuse_connections=True)
        (ctl / "full").touch()
        _, stderr = child.communicate(timeout=40)
        assert len(server.messages) == 1  # the warm-up only
    assert stderr.count(KEPT_LINE) == 1, stderr
    assert "incident A is burning" in stderr
    assert "only in memory" in stderr
    assert "lost as this process ends" in stderr


# Without root: the child's own file size limit makes every write past 4 KiB
# fail with EFBIG once its spool is open (SIGXFSZ ignored, as a daemon would).
EFBIG_CHILD = """
import logging, resource, signal, smtp_alerts
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
logging.getLogger().addHandler(smtp_alerts.AlertHandler())
logging.error("warm-up: the spool is open", extra={"alert_group": "warm-up"})
smtp_alerts.get_engine().flush()
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
{problems}smtp_alerts.get_engine().flush(timeout=20)
print("flushed", flush=True)
""".replace("{problems}", PROBLEMS)


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE and SIGXFSZ")
def test_file_size_limit_efbig_sends_everything(tmp_path: Path) -> None:
    """EFBIG on every spool write (no root needed): a round still sends all its digests."""
    with GmailServer() as server:
        env = server_env(server, SPOOL_DIR=str(tmp_path / "spool"), GROUP_WAIT="100ms")
        result = run_code(EFBIG_CHILD, env, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "flushed"
        assert_all_delivered_once(server)
    assert result.stderr.count(KEPT_LINE) == 1, result.stderr
    assert "will be retried" not in result.stderr
