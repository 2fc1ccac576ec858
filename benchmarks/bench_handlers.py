"""AlertHandler against the stdlib handlers, side by side, in one run.

Measures:

1. the headline: block time including the drain (N calls / N, the clock
   stopped only once the handler's background thread has taken everything,
   so its share of the GIL is in the figure) of a flood of 1,000,000
   identical errors and of 100,000 exceptions, each handler in fresh
   processes beside NullHandler (``benchmarks/_workloads.py``): QueueHandler
   with a QueueListener, AlertHandler, and when installed (the ``bench``
   extra) loguru with ``enqueue=True`` and sentry-sdk's logging integration
   sending to a dummy endpoint on 127.0.0.1; also RSS growth, emails sent,
   occurrences counted and dropped;
2. per-call cost (median, p99) of ``logger.error("x %s", i)`` and of
   ``logger.exception(...)`` repeated from one place, with NullHandler,
   QueueHandler (drained by a QueueListener), AlertHandler, and the stdlib
   SMTPHandler against the local Gmail-like server (plain, and STARTTLS + AUTH);
   this leaves out the background thread's share, hence (1) is the headline;
3. latency from the first alert to its acceptance by the local server;
4. the import cost, and that apprise is not imported;
5. with the SMTP server blackholed: the caller's cost of ``logger.error``
   while a send hangs, and the exit time of a script (bounded by
   ``SHUTDOWN_TIMEOUT``);
6. with ``--callgrind`` (valgrind installed): instructions per call across
   all threads of a short flood of repeats, drain included, AlertHandler over
   NullHandler (about 40 s).

Run: ``.venv/bin/python benchmarks/bench_handlers.py`` (``--quick`` for a
smaller run, ``--callgrind`` to add 6). Each figure is printed with its ratio
to NullHandler.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import logging.handlers
import os
import queue
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _harness import (
    Measurement,
    MeasurementError,
    arguments,
    dummy_endpoint,
    endpoint_requests,
    machine,
    median_of,
    run_child,
    server_env,
)

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
    print(f"\n2. Per-call cost, ns (n={n:,}; SMTPHandler n={n_smtp})")
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


# The handlers of the headline, with the share of N each runs: the slow
# peers run fewer calls so the whole stays within minutes (ratios are per call).
PEERS = (
    ("QueueHandler + QueueListener", "queue", 1),
    ("AlertHandler", "alert", 1),
    ("loguru (enqueue=True)", "loguru", 10),
    ("sentry-sdk logging integration", "sentry", 500),
    ("sentry-sdk, no breadcrumbs", "sentry_lean", 500),
)
OPTIONAL = {"loguru": "loguru", "sentry": "sentry_sdk", "sentry_lean": "sentry_sdk"}


def block_times(
    server: GmailServer, dsn: str, workload: str, n: int, *, runs: int, sites: Path
) -> None:
    """One table of the headline: each handler's block time beside NullHandler's."""
    print(
        f"{'handler':<32}{'N':>10}{'ratio':>10}{'caller':>10}{'background':>12}"
        f"{'RSS loop/close MiB':>20}{'sent':>7}{'counted':>11}{'dropped':>9}"
    )
    print(f"{'':<32}{'':>10}{'x Null':>10}{'x Null':>10}{'ns/call':>12}")
    for label, kind, share in PEERS:
        module = OPTIONAL.get(kind)
        if module and importlib.util.find_spec(module) is None:
            print(f"{label:<32}   skipped: {module} is not installed (pip install -e '.[bench]')")
            continue
        count = max(1, n // share)
        spec = {"workload": workload, "n": count, "kind": kind, "dsn": dsn}
        requests = endpoint_requests()
        try:
            measured = [run_child(server, spec, sites_dir=sites) for _ in range(runs)]
        except MeasurementError as exc:  # a failing peer must not cost the other rows
            print(f"{label:<32}{count:>10,}   failed: {exc}")
            continue
        sent = (endpoint_requests() - requests) / runs if kind.startswith("sentry") else None
        print(_block_row(label, count, measured, sent))


def _block_row(label: str, n: int, runs: list[Measurement], sent: float | None) -> str:
    def med(value: str) -> float:
        return median_of(runs, value)

    alert = label == "AlertHandler"
    shown = f"{med('emails'):.0f}" if alert else "-" if sent is None else f"{sent:.0f}"
    counted = f"{med('accepted'):,.0f}" if alert else "-"
    dropped = f"{med('dropped'):,.0f}" if alert else "-"
    stalled = "" if all(run.figures["drained"] for run in runs) else "  (drain stalled)"
    return (
        f"{label:<32}{n:>10,}{med('ratio'):>9.2f}x{med('loop_ratio'):>9.2f}x"
        f"{med('background_cpu_ns') / n:>12,.0f}"
        f"{med('rss_loop_kib') / 1024:>11.1f} /{med('rss_close_kib') / 1024:>7.1f}"
        f"{shown:>7}{counted:>11}{dropped:>9}{stalled}"
    )


def headline(server: GmailServer, n: int, n_exceptions: int, runs: int) -> None:
    """Block time including the drain, beside NullHandler: the figure that cannot flatter."""
    print(
        "\n1. Block time including the drain (the headline): N calls / N, the clock stopped only "
        "once the handler's\n   background side has taken everything; each handler in fresh "
        f"processes beside NullHandler in the same process; medians of {runs} runs.\n"
        "   background: CPU of every thread but the caller's, per call. sent: emails (AlertHandler)"
        " or requests the local\n   endpoint took (sentry-sdk). Peers run N / their share."
    )
    with dummy_endpoint() as dsn, tempfile.TemporaryDirectory() as sites:
        for title, workload, count in (
            (f"{n:,} identical errors (logger.error('payment %s failed', i))", "repeats", n),
            (
                f"{n_exceptions:,} exceptions from one place (logger.exception)",
                "exceptions",
                n_exceptions,
            ),
        ):
            print(f"\n   {title}")
            block_times(server, dsn, workload, count, runs=runs, sites=Path(sites))


def callgrind(server: GmailServer, n: int) -> None:
    """Instructions per call across all threads under callgrind, AlertHandler over NullHandler.

    Deterministic where timing is not: a figure that does not move with the
    machine's load, for the repeats of a template and of an f-string.
    """
    print(f"\n6. Instructions per call under callgrind, all threads (floods of {n:,} calls)")
    if shutil.which("valgrind") is None:
        print("   skipped: valgrind is not installed")
        return
    for workload, title in (
        ("repeats", "one template repeated (logger.error('payment %s failed', i))"),
        ("fstrings", "one f-string problem (logger.error(f'payment {i} failed ...'))"),
    ):
        with tempfile.TemporaryDirectory() as out:
            command = (
                "valgrind",
                "--tool=callgrind",
                "--dump-before=getppid",  # _workloads.callgrind_marker: one dump per phase
                f"--callgrind-out-file={out}/cg.%p",
            )
            spec = {"workload": workload, "n": n, "callgrind": True}
            run_child(server, spec, sites_dir=Path(out), command=command)
            dumps = sorted(Path(out).glob("cg.*.*"), key=lambda p: int(p.suffix[1:]))
            counts = [_callgrind_total(dump) for dump in dumps]
        if len(counts) < 4:
            print(f"   {title}: callgrind wrote {len(counts)} dumps instead of 4, no figure")
            continue
        null, alert = counts[1] / n, counts[3] / n
        print(
            f"   {title}: NullHandler {null:,.0f} Ir/call, AlertHandler {alert:,.0f} Ir/call "
            f"(drain included) = {alert / null:.2f}x"
        )


def _callgrind_total(dump: Path) -> int:
    for line in dump.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    return 0


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
        env = server_env(silent, SHUTDOWN_TIMEOUT="2s", TIMEOUT="60s", SPOOL_DIR=spool)
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
    parser = arguments(__doc__, quick="smaller counts", runs="runs per handler of the headline")
    parser.add_argument(
        "--callgrind", action="store_true", help="add instruction counts per call (valgrind)"
    )
    parser.add_argument("--only-headline", action="store_true", help="run the headline only")
    args = parser.parse_args()
    n, n_smtp, n_flood, n_exceptions, rounds = (
        (20_000, 30, 100_000, 10_000, 3) if args.quick else (200_000, 200, 1_000_000, 100_000, 5)
    )
    print(machine())
    with (
        GmailServer(mode="plain", auth_required=False) as plain_server,
        GmailServer() as tls_server,
    ):
        headline(tls_server, n_flood, n_exceptions, args.runs)
        if args.only_headline:
            return
        per_call(plain_server, tls_server, n, n_smtp)
        latency(tls_server, rounds)
    import_cost()
    blackholed(n)
    if args.callgrind:
        with GmailServer() as server:
            callgrind(server, 2_000 if args.quick else 20_000)


if __name__ == "__main__":
    main()
