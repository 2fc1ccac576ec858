"""Tests for smtp_alerts._util.state_file: atomic, durable, locked JSON state files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from smtp_alerts._util.state_file import StateFile

SRC = str(Path(__file__).resolve().parents[3])


@pytest.fixture
def warnings_said() -> list[str]:
    return []


@pytest.fixture
def state(tmp_path: Path, warnings_said: list[str]) -> StateFile:
    return StateFile(
        tmp_path / "state.json", table="things", label="the test state", warn=warnings_said.append
    )


@pytest.fixture
def fcntl() -> ModuleType:
    module: ModuleType = pytest.importorskip("fcntl")
    return module


@contextmanager
def hold_lock(fcntl: ModuleType, path: Path) -> Iterator[None]:
    """Hold the state file's lock from another open file, as another process would."""
    with path.with_name(path.name + ".lock").open("w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        yield


class TestReadWrite:
    def test_written_table_reads_back(self, state: StateFile) -> None:
        """What write() stored, read() returns, in the documented shape on disk."""
        state.write({"b": {"n": 2}, "a": {"n": 1}})
        assert state.read() == {"a": {"n": 1}, "b": {"n": 2}}
        assert json.loads(state.path.read_text(encoding="utf-8")) == {
            "version": 1,
            "things": {"a": {"n": 1}, "b": {"n": 2}},
        }

    def test_missing_file_is_an_empty_table(
        self, state: StateFile, warnings_said: list[str]
    ) -> None:
        """A file that does not exist yet reads as empty, without a warning."""
        assert state.read() == {}
        assert warnings_said == []

    def test_write_creates_the_directory_and_leaves_no_temporary_file(
        self, tmp_path: Path, warnings_said: list[str]
    ) -> None:
        """A write into a missing folder creates it and leaves only the file behind."""
        state = StateFile(tmp_path / "new" / "s.json", table="t", warn=warnings_said.append)
        state.write({"x": 1})
        assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["s.json"]

    def test_write_returns_the_identity_of_what_it_wrote(self, state: StateFile) -> None:
        """The identity write() returns is the file's; another write changes it."""
        first = state.write({"x": 1})
        assert state.identity() == first
        assert state.write({"x": 1}) != first

    @pytest.mark.skipif(os.name != "posix", reason="directories are fsynced on POSIX only")
    def test_write_fsyncs_the_file_and_then_its_directory(
        self, state: StateFile, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The data is flushed to disk before the rename, and the rename after it."""
        synced: list[bool] = []  # True for a directory
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        state.write({"x": 1})
        assert synced == [False, True]

    def test_failed_write_raises_and_keeps_the_old_file(
        self, state: StateFile, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A write that fails midway raises OSError; the old table and no temporary remain."""
        state.write({"x": 1})

        def fail(fd: int) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fsync", fail)
        with pytest.raises(OSError, match="No space"):
            state.write({"x": 2})
        assert state.read() == {"x": 1}
        assert [p.name for p in state.path.parent.iterdir() if p.suffix == ".tmp"] == []


class TestDamage:
    @pytest.mark.parametrize(
        "content",
        [
            b"{not json",
            b"\xff\xfe garbage",
            b"[1, 2]",
            b'{"version": 2, "things": {}}',
            b'{"version": 1, "things": [1]}',
            b'{"version": 1}',
        ],
        ids=["not-json", "not-utf8", "not-an-object", "other-version", "not-a-table", "no-table"],
    )
    def test_corrupt_file_reads_empty_is_moved_aside_and_warned_about(
        self, state: StateFile, warnings_said: list[str], content: bytes
    ) -> None:
        """A corrupt file reads as empty, with one warning naming it, kept as <file>.corrupt."""
        state.path.write_bytes(content)
        assert state.read(warn=False) == {}
        [warning] = warnings_said
        assert str(state.path) in warning
        assert "the test state" in warning
        assert "corrupt" in warning
        assert "state.json.corrupt" in warning
        assert (state.path.parent / "state.json.corrupt").read_bytes() == content
        assert not state.path.exists()
        assert state.read() == {}  # moved aside: not reported again
        assert len(warnings_said) == 1

    def test_next_write_after_corruption_starts_afresh(self, state: StateFile) -> None:
        """After a corrupt file was set aside, a write makes a good file again."""
        state.path.write_text("{not json", encoding="utf-8")
        state.write({**state.read(), "x": 1})
        assert state.read() == {"x": 1}

    def test_unreadable_file_reads_empty_and_stays(
        self, state: StateFile, warnings_said: list[str]
    ) -> None:
        """A path that cannot be read is reported when asked, read as empty, and left alone."""
        state.path.mkdir()  # reading a directory fails with an OSError
        assert state.read(warn=False) == {}
        assert warnings_said == []
        assert state.read() == {}
        [warning] = warnings_said
        assert warning.startswith(f"cannot read the test state {state.path}")
        assert state.path.is_dir()

    def test_corrupt_file_met_under_the_lock_does_not_wait_for_it(
        self, state: StateFile, fcntl: ModuleType
    ) -> None:
        """Setting a corrupt file aside inside locked() reuses the held lock at once."""
        state.path.write_text("{not json", encoding="utf-8")
        with state.locked(wait=5.0) as got:
            started = time.monotonic()
            assert state.read() == {}
            assert time.monotonic() - started < 1.0
        assert got

    def test_corrupt_file_replaced_meanwhile_is_not_moved_aside(
        self, state: StateFile, warnings_said: list[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A good file written between the read and the move is read, not set aside."""
        state.path.write_text("{not json", encoding="utf-8")
        real_parse = StateFile._parse

        def parse_then_replace(self: StateFile, data: bytes) -> dict[str, object]:
            monkeypatch.setattr(StateFile, "_parse", real_parse)
            StateFile(self.path, table="things", warn=warnings_said.append).write({"x": 1})
            return real_parse(self, data)

        monkeypatch.setattr(StateFile, "_parse", parse_then_replace)
        assert state.read() == {"x": 1}
        assert warnings_said == []
        assert not (state.path.parent / "state.json.corrupt").exists()


class TestLock:
    def test_held_lock_costs_at_most_the_bounded_wait(
        self, state: StateFile, fcntl: ModuleType
    ) -> None:
        """Another holder of the lock delays locked() by the wait, then it goes on without."""
        with hold_lock(fcntl, state.path):
            started = time.monotonic()
            with state.locked(wait=0.2) as got:
                state.write({"x": 1})
            waited = time.monotonic() - started
        assert not got
        assert 0.2 <= waited < 2.0
        assert state.read() == {"x": 1}

    def test_lock_is_taken_and_released(self, state: StateFile, fcntl: ModuleType) -> None:
        """locked() holds the lock inside the block and lets go of it after."""
        lock_path = state.path.with_name("state.json.lock")
        with state.locked() as got:
            assert got
            with lock_path.open("w") as other, pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with lock_path.open("w") as other:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def test_threads_take_turns(self, state: StateFile, fcntl: ModuleType) -> None:
        """Read-merge-writes from several threads under locked() lose no update."""

        def bump(name: str) -> None:
            for _ in range(20):
                with state.locked():
                    table = state.read()
                    table[name] = table.get(name, 0) + 1
                    table["total"] = table.get("total", 0) + 1
                    state.write(table)

        threads = [threading.Thread(target=bump, args=(f"t{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert state.read() == {"t0": 20, "t1": 20, "t2": 20, "t3": 20, "total": 80}


class TestProcesses:
    @pytest.mark.slow
    def test_two_processes_writing_never_tear_the_file_nor_lose_an_update(
        self, tmp_path: Path, fcntl: ModuleType
    ) -> None:
        """Two processes' read-merge-writes: every read sees a whole table, every update lands."""
        path = tmp_path / "state.json"
        go = tmp_path / "go"
        rounds = 100
        code = """
            import sys, time
            from pathlib import Path
            from smtp_alerts._util.state_file import StateFile
            state = StateFile(Path(sys.argv[1]), table="things", warn=print)
            go, name, rounds = Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
            print("ready", flush=True)
            while not go.exists():
                time.sleep(0.001)
            for _ in range(rounds):
                with state.locked(wait=30.0) as got:
                    assert got
                    table = state.read()
                    table[name] = table.get(name, 0) + 1
                    table["total"] = table.get("total", 0) + 1
                    state.write(table)
        """
        children = [
            subprocess.Popen(  # noqa: S603 - our own interpreter and script
                [
                    sys.executable,
                    "-c",
                    textwrap.dedent(code),
                    str(path),
                    str(go),
                    name,
                    str(rounds),
                ],
                stdout=subprocess.PIPE,
                text=True,
                cwd=SRC,
            )
            for name in ("a", "b")
        ]
        try:
            for child in children:
                assert child.stdout is not None
                assert child.stdout.readline() == "ready\n"
            go.touch()
            reads = 0
            while any(child.poll() is None for child in children):
                try:
                    text = path.read_text(encoding="utf-8")
                except FileNotFoundError:
                    continue
                json.loads(text)  # a torn file would fail here
                reads += 1
            outputs = [child.communicate(timeout=60)[0] for child in children]
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                child.wait(timeout=10)
        assert [child.returncode for child in children] == [0, 0], outputs
        assert outputs == ["", ""]  # no warning: never a corrupt file
        assert reads > 0
        table = json.loads(path.read_text(encoding="utf-8"))["things"]
        assert table == {"a": rounds, "b": rounds, "total": 2 * rounds}
