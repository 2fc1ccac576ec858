"""The suite's own redis-server: started on 127.0.0.1 and a free port, stopped at the end."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process without persistence, in a directory of its own.

    Args:
        executable: the path of ``redis-server``.
    """

    def __init__(self, executable: str) -> None:
        self._executable = executable
        self._process: subprocess.Popen[bytes] | None = None
        self._directory: Path | None = None
        self.port = 0

    @classmethod
    def find(cls) -> RedisServer | None:
        """The installed ``redis-server``, or None."""
        path = shutil.which("redis-server") or (
            "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
        )
        return None if path is None else cls(path)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A client with short timeouts."""
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2
        )

    def start(self, directory: Path) -> None:
        """Start it in ``directory`` on a free port (the same port again after a stop)."""
        self._directory = directory
        if not self.port:
            self.port = free_port()
        options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self._process = subprocess.Popen(  # noqa: S603 - the installed redis-server
            [self._executable, "--port", str(self.port), *options, "--dir", str(directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError), self.client() as client:
                if client.ping():
                    return
            if self._process.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING on port {self.port}")

    def stop(self) -> None:
        """Kill it and wait (SIGKILL: nothing of it is kept anyway)."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait(10)

    @property
    def running(self) -> bool:
        """Whether it runs."""
        return self._process is not None and self._process.poll() is None

    def pause(self) -> None:
        """Freeze it (SIGSTOP): it keeps its data and its port, and answers nothing."""
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a frozen server go on (SIGCONT)."""
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGCONT)

    def ensure_running(self) -> None:
        """Start it again when a test stopped it, thaw it when a test froze it."""
        self.resume()
        if not self.running:
            assert self._directory is not None  # started once by the fixture
            self.start(self._directory)

    def flush(self) -> None:
        """Empty every database."""
        with self.client() as client:
            client.flushall()
