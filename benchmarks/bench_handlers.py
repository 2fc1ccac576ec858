"""AlertHandler against the stdlib handlers, side by side, in one run.

Measures:

1. per-call cost (median, p99) of ``logger.error("x %s", i)`` and of
   ``logger.exception(...)`` repeated from one place, with NullHandler,
   QueueHandler (drained by a QueueListener), AlertHandler, and the stdlib
   SMTPHandler against the local Gmail-like server (plain, and STARTTLS + AUTH);
2. a flood of 1,000,000 identical errors, each handler in a fresh process:
   wall time, peak RSS growth, emails sent;
3. latency from the first alert to its acceptance by the local server;
4. the import cost, and that apprise is not imported;
5. with the SMTP server blackholed: the caller's cost of ``logger.error``
   while a send hangs, and the exit time of a script (bounded by
   ``SHUTDOWN_TIMEOUT``).

Run: ``.venv/bin/python benchmarks/bench_handlers.py`` (``--quick`` for a
smaller run). Each figure is printed with its ratio to NullHandler.
"""

from __future__ import annotations

import argparse
import gc
import logging
import logging.handlers
import os
import queue
import ssl
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from smtp_alerts import AlertHandler, Engine
from smtp_alerts.testing import Faults, GmailServer

Timings = list[int]


def time_calls(call: Callable[[int], None], n: int) -> Timings:
    """Per-call wall time in ns of ``call(i)`` for ``i`` in ``range(n)``, gc off (as timeit)."""
    clock = time.perf_counter_ns
    out = [0] * n
    gc.collect()
    gc.disable()
    try:
        for i in range(n):
            start = clock()
            call(i)
            out[i] = clock() - start
    finally:
        gc.enable()
    return out


def summary(timings: Timings) -> tuple[float, float]:
    ordered = sorted(timings)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99)]


@contextmanager
def attached(handler: logging.Handler) -> Iterator[logging.Logger]:
    log = logging.getLogger("bench.app")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    try:
        yield log
    finally:
        log.handlers[:] = []


def error_call(log: logging.Logger) -> Callable[[int], None]:
    def call(i: int) -> None:
        log.error("x %s", i)

    return call


def exception_call(log: logging.Logger) -> Callable[[int], None]:
    prices: dict[int, int] = {}

    def call(i: int) -> None:
        try:
            prices[i]
        except KeyError:
            log.exception("lookup failed for %s", i)

    return call


@contextmanager
def handlers(
    server: GmailServer, tls_server: GmailServer
) -> Iterator[dict[str, tuple[logging.Handler, Callable[[], None]]]]:
    listener_queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(listener_queue, logging.NullHandler())
    listener.start()
    engine = Engine(server.settings(group_wait="1h", group_interval="1h"))
    alert = AlertHandler(engine=engine)
    plain = logging.handlers.SMTPHandler(
        (server.host, server.port), "alerts@example.com", ["oncall@example.com"], "alert"
    )
    settings = tls_server.settings()
    starttls = _TrustingSMTPHandler(
        (tls_server.host, tls_server.port),
        "alerts@example.com",
        ["oncall@example.com"],
        "alert",
        credentials=(str(settings.username), str(settings.read_password())),
        secure=(),
        cafile=str(settings.ca_file),
    )

    def nothing() -> None:
        pass

    def listener_drained() -> None:
        # The listener thread works through the backlog after the timed loop;
        # the next handler must not be measured while it still competes for the GIL.
        while not listener_queue.empty():
            time.sleep(0.01)

    def engine_flushed() -> None:
        engine.flush(timeout=30)

    try:
        yield {
            "NullHandler": (logging.NullHandler(), nothing),
            "QueueHandler": (logging.handlers.QueueHandler(listener_queue), listener_drained),
            "AlertHandler": (alert, engine_flushed),
            "SMTPHandler (plain)": (plain, nothing),
            "SMTPHandler (STARTTLS+AUTH)": (starttls, nothing),
        }
    finally:
        listener.stop()
        engine.close(timeout=5)


class _TrustingSMTPHandler(logging.handlers.SMTPHandler):
    """The stdlib handler, verifying the local server's test CA (it cannot by itself)."""

    def __init__(self, *args: Any, cafile: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._context = ssl.create_default_context(cafile=cafile)

    def emit(self, record: logging.LogRecord) -> None:
        import smtplib  # noqa: PLC0415
        from email.message import EmailMessage  # noqa: PLC0415

        try:
            smtp = smtplib.SMTP(self.mailhost, self.mailport or 25, timeout=self.timeout)
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = self.fromaddr, ",".join(self.toaddrs), "x"
            msg.set_content(self.format(record))
            smtp.starttls(context=self._context)
            smtp.login(str(self.username), str(self.password))
            smtp.send_message(msg)
            smtp.quit()
        except Exception:
            self.handleError(record)


def per_call(server: GmailServer, tls_server: GmailServer, n: int, n_smtp: int) -> None:
    print(f"\n1. Per-call cost, ns (n={n:,}; SMTPHandler n={n_smtp})")
    print(
        f"{'handler':<30}{'error med':>11}{'p99':>12}{'ratio':>8}"
        f"{'exception med':>15}{'p99':>12}{'ratio':>8}"
    )
    base: dict[str, float] = {}
    with handlers(server, tls_server) as all_handlers:
        for name, (handler, settle) in all_handlers.items():
            count = n_smtp if name.startswith("SMTPHandler") else n
            row = []
            for kind, make in (("error", error_call), ("exception", exception_call)):
                with attached(handler) as log:
                    call = make(log)
                    time_calls(call, min(count, 1000))  # warm-up; AlertHandler's first capture
                    settle()
                    median, p99 = summary(time_calls(call, count))
                    settle()
                if name == "NullHandler":
                    base[kind] = median
                row += [median, p99, median / base[kind]]
            print(
                f"{name:<30}{row[0]:>11,.0f}{row[1]:>12,.0f}{row[2]:>7.2f}x"
                f"{row[3]:>15,.0f}{row[4]:>12,.0f}{row[5]:>7.2f}x"
            )


FLOOD = """
import logging, logging.handlers, os, queue, sys, time
kind, n = sys.argv[1], int(sys.argv[2])
def status_kib(field):
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child started by a
    # large parent would report the parent's peak.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)
log = logging.getLogger("flood")
log.propagate = False
if kind == "AlertHandler":
    import smtp_alerts
    handler = smtp_alerts.AlertHandler()
elif kind == "QueueHandler":
    handler = logging.handlers.QueueHandler(queue.SimpleQueue())
else:
    handler = logging.NullHandler()
log.addHandler(handler)
log.error("warm-up %s", -1)  # the first capture and the engine's start are not the flood
base = status_kib("VmRSS")
start = time.perf_counter()
for i in range(n):
    log.error("x %s", i)
wall = time.perf_counter() - start
if kind == "AlertHandler":
    handler.close()
    stats = handler.engine.stats()
    print(wall, status_kib("VmHWM") - base, stats.accepted, stats.dropped)
else:
    print(wall, status_kib("VmHWM") - base, 0, 0)
"""


def flood(server: GmailServer, n: int) -> None:
    print(f"\n2. Flood of {n:,} identical errors (each handler in a fresh process)")
    print(
        f"{'handler':<16}{'wall s':>9}{'ratio':>8}{'peak RSS growth':>18}{'emails':>8}"
        f"{'counted':>12}{'dropped':>9}"
    )
    base_wall = 0.0
    for kind in ("NullHandler", "QueueHandler", "AlertHandler"):
        # A fresh spool each time: digests an earlier run left would be sent
        # during the flood and counted here.
        spool = tempfile.mkdtemp(prefix="bench-spool-")
        env = _server_env(server, GROUP_WAIT="10s", GROUP_INTERVAL="5m", SPOOL_DIR=spool)
        before = len(server.messages)
        out = subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", textwrap.dedent(FLOOD), kind, str(n)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        wall, growth_kib, accepted, dropped = float(out[0]), int(out[1]), int(out[2]), int(out[3])
        base_wall = base_wall or wall
        emails = len(server.messages) - before if kind == "AlertHandler" else 0
        counted = f"{accepted:,}" if kind == "AlertHandler" else "-"
        print(
            f"{kind:<16}{wall:>9.2f}{wall / base_wall:>7.2f}x{growth_kib / 1024:>14.1f} MiB"
            f"{emails if kind == 'AlertHandler' else '-':>8}{counted:>12}"
            f"{dropped if kind == 'AlertHandler' else '-':>9}"
        )


def latency(server: GmailServer, rounds: int) -> None:
    group_wait = 0.5
    print(
        f"\n3. First alert to accepted by the local server (GROUP_WAIT={group_wait:g} s, "
        f"STARTTLS + AUTH, {rounds} rounds)"
    )
    results = []
    for _ in range(rounds):
        # A fresh store each round: on one store the same error is one incident,
        # and a second round's alert would be a repeat, sent hours later.
        spool = tempfile.mkdtemp(prefix="bench-spool-")
        engine = Engine(server.settings(group_wait=f"{group_wait}s", spool_dir=spool))
        handler = AlertHandler(engine=engine)
        with attached(handler) as log:
            before = len(server.messages)
            start = time.perf_counter()
            log.error("first alert")
            server.wait_for_messages(before + 1, timeout=10)
            results.append(time.perf_counter() - start)
        engine.close(timeout=5)
    over = [(r - group_wait) * 1000 for r in results]
    print(
        f"   latency median {statistics.median(results) * 1000:.0f} ms, "
        f"max {max(results) * 1000:.0f} ms; over GROUP_WAIT: median "
        f"{statistics.median(over):.0f} ms, max {max(over):.0f} ms (target <= 200 ms)"
    )


def blackholed(n: int) -> None:
    print("\n5. SMTP server blackholed (accepts connections, never answers)")
    with GmailServer(faults=Faults(greet=False)) as silent:
        null = logging.NullHandler()
        with attached(null) as log:
            call = error_call(log)
            time_calls(call, 1000)
            base, _ = summary(time_calls(call, n))
        engine = Engine(silent.settings(group_wait="0s", timeout="60s", shutdown_timeout="2s"))
        alert = AlertHandler(engine=engine)
        with attached(alert) as log:
            log.critical("the first digest goes out at once and hangs on the silent server")
            call = error_call(log)
            time_calls(call, 1000)
            median, p99 = summary(time_calls(call, n))
        stuck = engine.stats().sent == 0
        engine.close(timeout=2)
        print(
            f"   logger.error median: NullHandler {base:,.0f} ns, AlertHandler {median:,.0f} ns "
            f"(p99 {p99:,.0f}) = {median / base:.2f}x (target <= 1.25x); a send in flight: {stuck}"
        )
        spool = tempfile.mkdtemp(prefix="bench-spool-")  # keep the user's own spool clean
        env = _server_env(silent, SHUTDOWN_TIMEOUT="2s", TIMEOUT="60s", SPOOL_DIR=spool)
        script = (
            "import logging, smtp_alerts; "
            "logging.getLogger().addHandler(smtp_alerts.AlertHandler()); "
            "logging.error('nobody answers')"
        )
        baseline = _wall([sys.executable, "-c", "import logging, smtp_alerts"], env)
        exiting = _wall([sys.executable, "-c", script], env)
        print(
            f"   a script that logs one error and exits: {exiting:.2f} s "
            f"(interpreter + import alone: {baseline:.2f} s; SHUTDOWN_TIMEOUT=2s)"
        )


def _wall(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, capture_output=True, check=True)  # noqa: S603 - ours
    return time.perf_counter() - start


def _server_env(server: GmailServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTP_ALERTS_")}
    return {**env, **server.environ(**{"SHUTDOWN_TIMEOUT": "30s", **extra})}


def import_cost() -> None:
    code = (
        "import sys, time; t=time.perf_counter(); import smtp_alerts; h=smtp_alerts.AlertHandler; "
        "print((time.perf_counter()-t)*1000, 'apprise' in sys.modules)"
    )
    out = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "SMTP_ALERTS_TO": "a@example.com"},
    ).stdout.split()
    print(
        f"\n4. import smtp_alerts + AlertHandler class: {float(out[0]):.0f} ms; "
        f"apprise imported: {out[1]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    args = parser.parse_args()
    n, n_smtp, n_flood, rounds = (
        (20_000, 30, 100_000, 3) if args.quick else (200_000, 200, 1_000_000, 5)
    )
    print(
        f"Python {sys.version.split()[0]} on {os.cpu_count()} cores; "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
    with (
        GmailServer(mode="plain", auth_required=False) as plain_server,
        GmailServer() as tls_server,
    ):
        per_call(plain_server, tls_server, n, n_smtp)
        flood(tls_server, n_flood)
        latency(tls_server, rounds)
    import_cost()
    blackholed(n)


if __name__ == "__main__":
    main()
