"""The parent's side of a benchmark: run one measurement in a fresh child, against local servers.

A measurement (``_workloads.py`` in a child process) logs into the process's
default engine, configured through ``SMTP_ALERTS_*`` to send to this
process's Gmail-like server, with a fresh temporary ``SPOOL_DIR`` each time
(digests an earlier run left must not be sent during the next). What the
server received during the child's life is the child's: emails and the size
of the largest one. Nothing leaves the host: the SMTP server and the dummy
HTTP endpoint that sentry-sdk sends to both listen on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smtp_alerts.testing import GmailServer

WORKLOADS = Path(__file__).resolve().parent / "_workloads.py"


class MeasurementError(Exception):
    """A measurement's process failed; the message is the last line of its stderr."""

    def __init__(self, stderr: str) -> None:
        lines = stderr.strip().splitlines()
        super().__init__(lines[-1] if lines else "no output")
        self.stderr = stderr


@dataclass(frozen=True)
class Measurement:
    """One child's figures (see ``_workloads.Result``) plus what the server received."""

    figures: dict[str, Any]
    emails: int
    largest_email: int
    spool_bytes: int

    def ratio(self) -> float:
        """Block time (including the drain) over NullHandler's time for the same calls."""
        return float(self.figures["block_s"]) / float(self.figures["null_s"])

    def loop_ratio(self) -> float:
        """The caller's loop alone (no drain) over NullHandler's: what per-call timing sees."""
        return float(self.figures["loop_s"]) / float(self.figures["null_s"])


def arguments(doc: str | None, *, quick: str, runs: str) -> argparse.ArgumentParser:
    """A benchmark's command line: its description, ``--quick`` and ``--runs``."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--runs", type=int, default=3, help=f"{runs}; the median is shown")
    return parser


def machine() -> str:
    """The first line of a benchmark's output: Python, cores, the load (others' work), when."""
    return (
        f"Python {sys.version.split()[0]} on {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d %H:%M:%S')}"
    )


def server_env(server: GmailServer, **extra: str) -> dict[str, str]:
    """This environment minus its own SMTP_ALERTS_*, pointed at ``server``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTP_ALERTS_")}
    return {**env, **server.environ(**extra)}


def run_child(
    server: GmailServer,
    spec: dict[str, Any],
    *,
    sites_dir: Path,
    command: tuple[str, ...] = (),
    **settings: str,
) -> Measurement:
    """Run ``_workloads.py`` with ``spec`` in a fresh process; its figures and emails.

    Raises:
        MeasurementError: the child failed (its stderr is kept on the error).

    Args:
        server: where the child's engine sends.
        spec: the measurement (workload, n, k, kind...).
        sites_dir: where generated call-site modules are cached between children.
        command: a prefix (valgrind) for the interpreter.
        **settings: ``SMTP_ALERTS_*`` overrides, named without the prefix.
    """
    spool = Path(tempfile.mkdtemp(prefix="bench-spool-"))
    env = server_env(
        server,
        GROUP_WAIT="10s",
        GROUP_INTERVAL="5m",
        SHUTDOWN_TIMEOUT="60s",
        SPOOL_DIR=str(spool),
        **settings,
    )
    env["BENCH_SITES_DIR"] = str(sites_dir)
    before = len(server.messages)
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and script
            [*command, sys.executable, str(WORKLOADS), json.dumps(spec)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise MeasurementError(done.stderr)
        spool_bytes = sum(f.stat().st_size for f in spool.rglob("*") if f.is_file())
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    received = server.messages[before:]
    figures = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    return Measurement(
        figures=figures,
        emails=len(received),
        largest_email=max((len(m.raw) for m in received), default=0),
        spool_bytes=spool_bytes,
    )


def median_of(runs: list[Measurement], value: str) -> float:
    """The median over ``runs`` of a :class:`Measurement` method's or figure's value."""
    values = []
    for run in runs:
        attribute = getattr(run, value, None)
        if callable(attribute):
            values.append(float(attribute()))
        elif attribute is not None:
            values.append(float(attribute))
        else:
            values.append(float(run.figures[value] or 0))
    return float(statistics.median(values))


class _Endpoint(http.server.BaseHTTPRequestHandler):
    """Accepts any POST (sentry's envelopes) with 200 and counts it."""

    protocol_version = "HTTP/1.1"  # keep-alive, as a real ingest endpoint
    received = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with _Endpoint.lock:
            _Endpoint.received += 1
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        """Quiet: the benchmark's output is its tables."""


@contextmanager
def dummy_endpoint() -> Iterator[str]:
    """A local HTTP endpoint on 127.0.0.1 (port 0) for sentry-sdk; yields its DSN."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="bench-endpoint", daemon=True)
    thread.start()
    try:
        yield f"http://public@127.0.0.1:{httpd.server_address[1]}/1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def endpoint_requests() -> int:
    """How many requests the dummy endpoint has received so far."""
    with _Endpoint.lock:
        return _Endpoint.received
