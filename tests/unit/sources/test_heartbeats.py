"""Heartbeats: a missed beat alerts once; beats are cheap, kept across restarts and processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from smtp_alerts._sources import heartbeat_state as _heartbeat_state
from smtp_alerts._sources import heartbeats as _heartbeats
from smtp_alerts._sources.heartbeats import STATE_FILENAME, heartbeat_monitor
from smtp_alerts.testing import ManualClock
from tests.jobs_support import Harness


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    made = Harness(tmp_path / "spool")
    yield made
    made.engine.close(timeout=5)


class TestHeartbeats:
    def test_missed_heartbeat_alerts_exactly_once(self, harness: Harness) -> None:
        """A name that never beats alerts once after period plus grace, then stays silent."""
        monitor = heartbeat_monitor(harness.engine)
        harness.engine.heartbeat("backup", period="1h", grace="5m")
        harness.clock.advance(3600 + 4 * 60)
        assert monitor.check_due() == []
        harness.clock.advance(2 * 60)
        assert monitor.check_due() == ["backup"]
        for _ in range(3):
            harness.clock.advance(86_400)
            assert monitor.check_due() == []
        (problem,) = harness.problems()
        assert problem.count == 1
        assert problem.alert.message.startswith("missed heartbeat: 'backup' never seen since")
        assert "expected every 1h (+5m grace)" in problem.alert.message
        assert monitor.is_missed("backup")

    def test_beat_then_silence_then_recovery(self, harness: Harness) -> None:
        """The alert says when it was last seen; the next beat sends a recovery note."""
        monitor = heartbeat_monitor(harness.engine)
        beat = harness.engine.heartbeat("export", period=600, grace=60)
        beat.beat()
        last = harness.clock.now
        harness.clock.advance(661)
        assert monitor.check_due() == ["export"]
        harness.clock.advance(300)
        harness.engine.beat("export")
        assert not beat.missed
        harness.clock.advance(661)
        assert monitor.check_due() == ["export"]  # a new episode alerts again
        missed_first, recovered, missed_again = harness.messages()
        assert missed_first.startswith("missed heartbeat: 'export' last seen ")
        assert "(11m 1s ago)" in missed_first
        assert f"{time.strftime('%Y-%m-%d', time.gmtime(last))}" in missed_first
        assert recovered.startswith("heartbeat 'export' is back")
        assert "after 16m 1s without one" in recovered
        assert missed_again.startswith("missed heartbeat: 'export' last seen ")

    def test_successful_job_is_a_beat(self, harness: Harness) -> None:
        """A successful job run keeps the heartbeat of the same name alive."""
        monitor = heartbeat_monitor(harness.engine)
        harness.engine.heartbeat("nightly", period=100, grace=0)
        for _ in range(5):
            harness.clock.advance(90)
            with harness.engine.job("nightly"):
                pass
            assert monitor.check_due() == []
        assert harness.problems() == []

    def test_default_grace_is_a_tenth_of_the_period(self, harness: Harness) -> None:
        """Without a grace, a beat may be up to a tenth of the period late."""
        registration = harness.engine.heartbeat("hourly", period="1h")
        assert registration.grace == 360.0

    def test_bad_period_names_the_field(self, harness: Harness) -> None:
        """A malformed or zero period is refused with the field's name."""
        with pytest.raises(ValueError, match="period"):
            harness.engine.heartbeat("x", period="daily")
        with pytest.raises(ValueError, match="period"):
            harness.engine.heartbeat("x", period=0)

    def test_watcher_on_the_engine_loop_alerts(self, tmp_path: Path) -> None:
        """In production a task on the engine's loop notices the missed beat by itself."""
        # The real clock: the watcher sleeps for real.
        harness = Harness(tmp_path / "spool", real_time=True)
        try:
            harness.engine.heartbeat("ticker", period=0.05, grace=0)
            harness.wait_for_sent()
            (message,) = harness.messages()
            assert message.startswith("missed heartbeat: 'ticker' never seen")
        finally:
            harness.engine.close(timeout=5)

    def test_watcher_heeds_a_shorter_heartbeat_registered_next(self, tmp_path: Path) -> None:
        """A short period registered right after a long one is checked on time, not 30 s later."""
        harness = Harness(tmp_path / "spool", real_time=True)
        try:
            harness.engine.heartbeat("daily", period="1d")
            harness.engine.heartbeat("ticker", period=0.05, grace=0)
            harness.wait_for_sent()  # within 10 s; the watcher's longest sleep is 30 s
            (message,) = harness.messages()
            assert message.startswith("missed heartbeat: 'ticker' never seen")
        finally:
            harness.engine.close(timeout=5)


class TestHeartbeatState:
    def test_last_beat_survives_a_restart(self, tmp_path: Path) -> None:
        """A new engine on the same spool knows the last beat, and judges lateness from it."""
        clock = ManualClock()
        first = Harness(tmp_path, clock=clock)
        first.engine.beat("backup")
        beat_at = clock.now
        first.engine.close(timeout=5)

        clock.advance(50)
        second = Harness(tmp_path, clock=clock)
        try:
            monitor = heartbeat_monitor(second.engine)
            registration = second.engine.heartbeat("backup", period=100, grace=0)
            assert registration.last_beat == beat_at
            clock.advance(49)
            assert monitor.check_due() == []
            clock.advance(2)
            assert monitor.check_due() == ["backup"]
            (message,) = second.messages()
            assert "last seen" in message
            assert "(1m 41s ago)" in message
        finally:
            second.engine.close(timeout=5)

    def test_missed_alert_not_repeated_after_a_restart(self, tmp_path: Path) -> None:
        """An episode alerted before a restart is not alerted again by the new process."""
        clock = ManualClock()
        first = Harness(tmp_path, clock=clock)
        first.engine.heartbeat("backup", period=10, grace=0)
        clock.advance(11)
        assert heartbeat_monitor(first.engine).check_due() == ["backup"]
        first.engine.close(timeout=5)

        second = Harness(tmp_path, clock=clock)
        try:
            second.engine.heartbeat("backup", period=10, grace=0)
            clock.advance(100)
            assert heartbeat_monitor(second.engine).check_due() == []
            assert second.problems() == []
        finally:
            second.engine.close(timeout=5)

    def test_beat_from_another_process_is_seen(self, tmp_path: Path) -> None:
        """A beat another engine wrote to the shared state file ends the missed state."""
        clock = ManualClock()
        watcher = Harness(tmp_path, clock=clock)
        other = Harness(tmp_path, clock=clock)
        try:
            monitor = heartbeat_monitor(watcher.engine)
            watcher.engine.heartbeat("cron-backup", period=60, grace=0)
            clock.advance(61)
            assert monitor.check_due() == ["cron-backup"]
            clock.advance(5)
            # As `smtp-alerts run --name cron-backup` does: beat, then close.
            other.engine.beat("cron-backup")
            other.engine.close(timeout=5)
            assert monitor.check_due() == []
            assert monitor.last_beat("cron-backup") == clock.now
            messages = watcher.messages()
            assert messages[-1].startswith("heartbeat 'cron-backup' is back")
            # The note is the watcher's, one recovery (one problem); the process
            # that beat sends none. Under a loaded full-suite run on 3.10 the
            # watcher's row was seen in two digests (a duplicate of the same
            # problem, which delivery allows: at least once); two recoveries
            # would be two problems.
            recoveries = {
                problem.alert.fingerprint
                for problem in watcher.problems()
                if "is back" in problem.alert.message
            }
            assert len(recoveries) == 1
            sent_by_other = [
                problem.alert.message
                for message in other.transport.sent
                if message.digest is not None
                for problem in message.digest.problems
            ]
            assert not any("is back" in message for message in sent_by_other)
        finally:
            watcher.engine.close(timeout=5)
            other.engine.close(timeout=5)

    def test_corrupt_state_file_starts_afresh(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An unreadable state file is reported on stderr and replaced; nothing raises."""
        (tmp_path / STATE_FILENAME).write_text("{not json", encoding="utf-8")
        harness = Harness(tmp_path)
        try:
            harness.engine.beat("backup")
        finally:
            harness.engine.close(timeout=5)
        assert "unreadable" in capsys.readouterr().err
        data = json.loads((tmp_path / STATE_FILENAME).read_text(encoding="utf-8"))
        assert data["heartbeats"]["backup"]["last_beat"] == harness.clock.now

    def test_beats_from_many_threads_are_all_kept(self, tmp_path: Path) -> None:
        """Concurrent beats of different names all land in the state file."""
        harness = Harness(tmp_path)
        try:
            threads = [
                threading.Thread(target=harness.engine.beat, args=(f"job-{i}",)) for i in range(8)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            harness.engine.close(timeout=5)
        data = json.loads((tmp_path / STATE_FILENAME).read_text(encoding="utf-8"))
        assert sorted(data["heartbeats"]) == [f"job-{i}" for i in range(8)]


# -- what a beat costs, and when it reaches the disk ----------------------------------


@dataclass(frozen=True)
class FileAccess:
    """One open, rename or removal of a file, and the thread that made it."""

    event: str
    path: str
    thread: int


_recording: list[tuple[str, list[FileAccess]]] = []
_hook_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _recording or event not in ("open", "os.rename", "os.remove"):
        return
    target = args[0]
    if not isinstance(target, (str, bytes, os.PathLike)):
        return  # an open of a file descriptor
    path = os.fsdecode(target)
    for folder, accesses in _recording:
        if path.startswith(folder):
            accesses.append(FileAccess(event, path, threading.get_ident()))


@contextmanager
def file_accesses(folder: Path) -> Iterator[list[FileAccess]]:
    """Record, from every thread, each open, rename and removal of a file in ``folder``."""
    global _hook_installed  # noqa: PLW0603 - an audit hook cannot be removed: install one, once
    if not _hook_installed:
        sys.addaudithook(_audit)  # idle (one list check) while nothing records
        _hook_installed = True
    entry: tuple[str, list[FileAccess]] = (str(folder), [])
    _recording.append(entry)
    try:
        yield entry[1]
    finally:
        _recording.remove(entry)


def written_beat(folder: Path, name: str) -> float | None:
    """The last beat of ``name`` in the state file, or None when the file or the name is missing."""
    try:
        data = json.loads((folder / STATE_FILENAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    entry = data["heartbeats"].get(name)
    return None if entry is None else float(entry["last_beat"])


def wait_until_written(folder: Path, name: str, when: float) -> None:
    """Block until the engine's loop wrote the beat of ``name`` at ``when``."""
    deadline = time.monotonic() + 10
    while written_beat(folder, name) != when:
        assert time.monotonic() < deadline, f"the beat of {name!r} was never written"
        time.sleep(0.01)


class TestBeatPersistence:
    def test_beat_does_no_file_io_in_the_callers_thread(self, tmp_path: Path) -> None:
        """Beats, the first of the process too, leave reading and writing the file to the engine."""
        harness = Harness(tmp_path)
        caller = threading.get_ident()
        with file_accesses(tmp_path) as accesses:
            try:
                for _ in range(3):
                    harness.engine.beat("backup")
                    harness.clock.advance(1)
            finally:
                harness.engine.close(timeout=5)
        state_file = [access for access in accesses if STATE_FILENAME in access.path]
        assert [access for access in state_file if access.thread == caller] == []
        assert any(access.event == "os.rename" for access in state_file)  # written elsewhere
        assert written_beat(tmp_path, "backup") == harness.clock.now - 1

    def test_beat_waiting_for_the_next_write_is_written_by_close(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A beat the loop has not written yet is on disk after close()."""
        monkeypatch.setattr(_heartbeats, "SAVE_INTERVAL", 3600.0)
        harness = Harness(tmp_path)
        try:
            harness.engine.beat("backup")
            first = harness.clock.now
            wait_until_written(tmp_path, "backup", first)
            harness.clock.advance(60)
            harness.engine.beat("backup")
            assert written_beat(tmp_path, "backup") == first  # the loop waits out the interval
        finally:
            harness.engine.close(timeout=5)
        assert written_beat(tmp_path, "backup") == first + 60

    def test_a_burst_of_beats_is_one_write(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A thousand beats cost the disk the first write and the one at close, no more."""
        monkeypatch.setattr(_heartbeats, "SAVE_INTERVAL", 3600.0)
        harness = Harness(tmp_path)
        with file_accesses(tmp_path) as accesses:
            try:
                for _ in range(1000):
                    harness.engine.beat("poll")
                    harness.clock.advance(0.5)
            finally:
                harness.engine.close(timeout=5)
        writes = [a for a in accesses if a.event == "os.rename" and STATE_FILENAME in a.path]
        assert 1 <= len(writes) <= 2
        assert written_beat(tmp_path, "poll") == harness.clock.now - 0.5

    def test_a_stuck_holder_of_the_file_lock_delays_a_save_without_stopping_it(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A process that holds the file's lock for ever costs a save LOCK_WAIT, no more."""
        fcntl = pytest.importorskip("fcntl")
        monkeypatch.setattr(_heartbeat_state, "LOCK_WAIT", 0.2)
        harness = Harness(tmp_path)
        with (tmp_path / f"{STATE_FILENAME}.lock").open("w") as holder:
            fcntl.flock(holder, fcntl.LOCK_EX)  # another open file: it excludes ours
            harness.engine.beat("backup")
            harness.engine.close(timeout=5)
            assert written_beat(tmp_path, "backup") == harness.clock.now  # the lock still held

    def test_beat_after_close_is_written_at_once(self, tmp_path: Path) -> None:
        """Once the engine is closed nothing would write later: beat() writes before it returns."""
        harness = Harness(tmp_path)
        harness.engine.close(timeout=5)
        harness.engine.beat("late")
        assert written_beat(tmp_path, "late") == harness.clock.now

    def test_unwritten_beat_is_written_at_interpreter_exit(self, tmp_path: Path) -> None:
        """A process that exits without closing its engine still leaves its last beat on disk."""
        script = f"""
import json, sys, time
from pathlib import Path
from smtp_alerts import Engine, Settings
from smtp_alerts._sources import heartbeats as _heartbeats
from smtp_alerts.testing import ManualClock
from smtp_alerts.transports import MemoryTransport

_heartbeats.SAVE_INTERVAL = 3600.0
clock = ManualClock(1000.0)
folder = Path(sys.argv[1])
settings = Settings(to=["oncall@example.com"], from_="alerts@example.com", spool_dir=folder)
engine = Engine(settings, transport=MemoryTransport(), clock=clock)
engine.beat("backup")
deadline = time.monotonic() + 10
while not (folder / {STATE_FILENAME!r}).exists() and time.monotonic() < deadline:
    time.sleep(0.01)
clock.advance(60)
engine.beat("backup")
"""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMTP_ALERTS_")}
        result = subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", script, str(tmp_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert written_beat(tmp_path, "backup") == 1060.0
