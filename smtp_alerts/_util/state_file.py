"""Atomic state files: small JSON tables that several processes share and rewrite.

Heartbeats and checks keep what must outlive a process (last beats, which
checks are down) in a JSON file in ``SPOOL_DIR``, shaped
``{"version": 1, "<table>": {"<name>": {...}, ...}}``. A :class:`StateFile`
gives each such file the same guarantees:

- **Atomic.** A write goes to a temporary file in the same directory, which then
  replaces the file (:func:`os.replace`): a reader sees the old table or the new
  one, never half of one, even across a crash.
- **Durable.** The temporary file is fsynced before the rename and the directory
  after it, so a write that returned survives a power loss.
- **Locked.** :meth:`StateFile.locked` holds an exclusive ``flock`` on
  ``<file>.lock`` across processes, so a read-merge-write keeps what another
  process wrote meanwhile. It waits at most a bounded time (:data:`LOCK_WAIT`):
  a process stopped while holding the lock must not hang ours, at exit least of
  all; past that the caller goes on without it. (Where ``fcntl`` is missing, on
  Windows, there is no lock: two writes within the same few milliseconds may
  lose one process's latest change.)
- **Never fatal to read.** A missing file is an empty table; one that cannot be
  read, or is not a table of this version, is reported and read as empty; a
  corrupt one is moved aside to ``<file>.corrupt`` for a human to look at, so
  the next write starts afresh without destroying the evidence.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

if sys.platform != "win32":
    import fcntl

__all__ = ["LOCK_WAIT", "FileId", "StateFile"]

LOCK_WAIT = 5.0
"""The longest :meth:`StateFile.locked` waits for another process's lock, in seconds."""

_LOCK_POLL = 0.005  # seconds between two tries for the lock

FileId = tuple[int, int, int]
"""A file's identity: (inode, mtime_ns, size); replacing the file always changes it."""

# The state files whose lock this thread holds, and whether it got the lock: a
# StateFile that must move a corrupt file aside while its caller holds the lock
# (a read inside a read-merge-write) must not wait for itself.
_held = threading.local()


def _held_locks() -> dict[str, bool]:
    held: dict[str, bool] | None = getattr(_held, "locks", None)
    if held is None:
        held = _held.locks = {}
    return held


class StateFile:
    """One JSON table in a file that several processes read and rewrite.

    Args:
        path: the file.
        table: the key under which the file keeps its entries.
        version: the file format's version; a file of another version is corrupt here.
        label: how warnings name the file, e.g. ``"the heartbeat state"``.
        warn: reports what cannot be read, in one line.
    """

    def __init__(
        self,
        path: Path,
        *,
        table: str,
        version: int = 1,
        label: str = "the state file",
        warn: Callable[[str], None],
    ) -> None:
        self.path = path
        self._table = table
        self._version = version
        self._label = label
        self._warn = warn

    def __repr__(self) -> str:
        return f"StateFile({str(self.path)!r}, table={self._table!r})"

    def identity(self) -> FileId | None:
        """The file's identity now, or None when it is missing or cannot be looked at."""
        try:
            return _identity(self.path.stat())
        except OSError:
            return None

    def read(self, *, warn: bool = True) -> dict[str, Any]:
        """The table's entries; empty when the file is missing, unreadable or corrupt.

        A corrupt file (not JSON, not a table, another version) is moved aside to
        ``<file>.corrupt`` and always reported: once moved, it is not seen again.

        Args:
            warn: report a file that exists but cannot be read (permissions, I/O).

        Returns:
            The entries, by name.
        """
        try:
            with self.path.open("rb") as file:
                seen = _identity(os.fstat(file.fileno()))
                data = file.read()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            if warn:
                self._warn(f"cannot read {self._label} {self.path} ({exc}); starting afresh")
            return {}
        try:
            return self._parse(data)
        except ValueError as exc:
            if not self._set_aside(seen, exc):
                return self.read(warn=warn)  # replaced meanwhile: read what is there now
            return {}

    def _parse(self, data: bytes) -> dict[str, Any]:
        """The entries of a file's bytes, or ValueError (UnicodeDecodeError and JSON's are ones)."""
        document = json.loads(data.decode("utf-8"))
        if not isinstance(document, dict) or document.get("version") != self._version:
            raise ValueError(f"not a {self._table} file of version {self._version}")
        entries = document.get(self._table)
        if not isinstance(entries, dict):
            raise ValueError(f"{self._table!r} is not a table")  # noqa: TRY004 - one error for every malformation
        return {str(name): entry for name, entry in entries.items()}

    def _set_aside(self, seen: FileId, problem: Exception) -> bool:
        """Move the corrupt file aside and say so; False when it was replaced since it was read."""
        aside = self.path.with_name(self.path.name + ".corrupt")
        try:
            with self.locked():
                if self.identity() != seen:
                    return False  # a writer replaced it: that file is another story
                self.path.replace(aside)
            where = f"moved to {aside.name}"
        except OSError as exc:
            where = f"could not move it aside ({exc})"
        self._warn(
            f"{self._label} {self.path} is unreadable: corrupt or from another version "
            f"({problem}); {where}, starting afresh"
        )
        return True

    def write(self, entries: Mapping[str, Any]) -> FileId:
        """Replace the file's table with ``entries``, atomically and durably.

        To keep what other processes wrote, read, merge and write inside
        :meth:`locked`.

        Args:
            entries: the whole table, JSON-able.

        Returns:
            The new file's identity, taken before the rename: a write by another
            process right after ours is then still seen as a change.

        Raises:
            OSError: the file or its directory cannot be written.
        """
        document = {"version": self._version, self._table: dict(entries)}
        text = json.dumps(document, indent=1, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
                written = _identity(os.fstat(file.fileno()))
            Path(temporary).replace(self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(temporary).unlink()
            raise
        _fsync_directory(self.path.parent)
        return written

    @contextlib.contextmanager
    def locked(self, *, wait: float = LOCK_WAIT) -> Iterator[bool]:
        """Hold the file's lock across processes, waiting at most ``wait`` seconds for it.

        Re-entrant within a thread. Past the wait the block runs without the lock.

        Args:
            wait: the longest wait for another process to let go, in seconds.

        Yields:
            Whether the lock is held (False past the wait, or without ``fcntl``).

        Raises:
            OSError: the lock file cannot be created.
        """
        held = _held_locks()
        key = str(self.path.absolute())
        if key in held:
            yield held[key]
            return
        if sys.platform == "win32":
            yield False  # no flock: see the module's docstring
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            held[key] = _flock(fd, wait)
            try:
                yield held[key]
            finally:
                del held[key]
        finally:
            os.close(fd)  # closing releases the lock


def _flock(fd: int, wait: float) -> bool:
    """Take an exclusive flock on ``fd``, trying for at most ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(_LOCK_POLL)
    return True


def _identity(stat: os.stat_result) -> FileId:
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable: on POSIX it lives in the directory's entry."""
    if os.name != "posix":
        return  # Windows cannot open a directory; NTFS journals the rename itself
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse to fsync a directory; the rename stands
    finally:
        os.close(fd)
