"""The spool's file lost or damaged under it: set aside, re-created, nothing it held lost."""

from __future__ import annotations

import shutil
from email.message import EmailMessage
from pathlib import Path

from smtp_alerts._delivery.spool import SPOOL_FILENAME, Spool
from smtp_alerts.models import OutgoingMessage


def message(number: int) -> OutgoingMessage:
    email = EmailMessage()
    email["Subject"] = f"digest {number}"
    email.set_content("body")
    return OutgoingMessage(f"<{number}@x>", email, "a@x.org", ("b@x.org",), f"t{number}", "s")


class TestCorruptFile:
    def test_garbage_file_is_moved_aside_and_a_new_one_works(self, tmp_path: Path) -> None:
        """A file that is no database: moved aside (kept for a person), one line said."""
        tmp_path.joinpath(SPOOL_FILENAME).write_bytes(b"this is not sqlite\0" * 500)
        told: list[str] = []
        with Spool(tmp_path, on_problem=told.append) as spool:
            spool.add(message(1))
            assert [entry.title for entry in spool.entries()] == ["t1"]
            assert spool.recovered is not None
        (aside,) = tmp_path.glob(f"{SPOOL_FILENAME}.corrupt-*")
        assert aside.read_bytes().startswith(b"this is not sqlite")
        (line,) = told
        assert "corrupt" in line
        assert aside.name in line
        assert "\n" not in line

    def test_a_sound_file_is_left_alone(self, tmp_path: Path) -> None:
        told: list[str] = []
        with Spool(tmp_path, on_problem=told.append) as spool:
            spool.add(message(1))
        with Spool(tmp_path, on_problem=told.append) as spool:
            assert len(spool) == 1
            assert spool.recovered is None
        assert told == []


class TestDeletedWhileOpen:
    def test_deleted_directory_is_recreated_with_what_it_held(self, tmp_path: Path) -> None:
        """The directory deleted under an open spool: the next write re-creates it, nothing lost."""
        directory = tmp_path / "spool"
        told: list[str] = []
        with Spool(directory, on_problem=told.append) as spool:
            spool.add(message(1))
            shutil.rmtree(directory)
            spool.add(message(2))
            assert directory.joinpath(SPOOL_FILENAME).is_file()
            assert [entry.title for entry in spool.entries()] == ["t1", "t2"]
        # A new process sees both: they are really on disk again.
        with Spool(directory) as again:
            assert len(again) == 2
        (line,) = told
        assert "deleted" in line
        assert "1 digest(s)" in line

    def test_file_replaced_by_another_process_is_followed(self, tmp_path: Path) -> None:
        """Another process set the file aside and made a new one: this one uses the new file."""
        with Spool(tmp_path, on_problem=lambda _line: None) as first:
            first.add(message(1))
            tmp_path.joinpath(SPOOL_FILENAME).rename(tmp_path / "elsewhere")
            with Spool(tmp_path) as second:
                second.add(message(2))
            assert [entry.title for entry in first.entries()] == ["t2"]

    def test_an_empty_deleted_spool_comes_back_only_with_a_digest(self, tmp_path: Path) -> None:
        """Nothing pending: no folder re-created as litter; the next digest brings it back."""
        directory = tmp_path / "spool"
        told: list[str] = []
        with Spool(directory, on_problem=told.append) as spool:
            shutil.rmtree(directory)
            spool.release()
            assert not directory.exists()
            spool.add(message(1))
            assert directory.joinpath(SPOOL_FILENAME).is_file()
        with Spool(directory) as again:
            assert [entry.title for entry in again.entries()] == ["t1"]
        assert len(told) == 1
