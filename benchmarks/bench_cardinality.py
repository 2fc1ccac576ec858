"""What AlertHandler costs as the number of distinct problems grows, beside NullHandler.

Each row is a workload of the cardinality table of issue 10, measured in
fresh processes (one per run; ``benchmarks/_workloads.py``), each timing
the workload with ``logging.NullHandler`` first and then with
``AlertHandler`` in the same process. Columns:

- ratio: AlertHandler's block time over NullHandler's for the same N calls,
  the clock stopped only once the engine has taken everything queued (the
  drain), so the engine thread's share of the GIL is in it; the headline;
- caller: the caller's loop alone over NullHandler's (what per-call
  timing sees; it leaves the engine's share out);
- RSS growth during the loop (peak, drain included) / including close, MiB;
- close: seconds of ``handler.close()`` and ``engine.close()``;
- emails the local server received, the largest one's size, and the spool
  left on disk after close;
- dropped: occurrences the intake dropped (``engine.stats().dropped``);
- engine CPU: the engine thread's own CPU per call (``/proc/self/task/<tid>/stat``,
  utime + stime, from the first call to the end of the drain).

Figures are medians of ``--runs`` runs (3); a row whose first run takes
longer than 30 s is measured once and says so. Ratios only: the
absolute times depend on the machine.

Run: ``.venv/bin/python benchmarks/bench_cardinality.py`` (``--quick`` for
N / 10, ``--plot out.png`` for the curve of cost and RSS against cardinality).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _harness import Measurement, MeasurementError, arguments, machine, median_of, run_child

from smtp_alerts.testing import GmailServer

MiB = 1024 * 1024
SLOW_RUN = 30.0
"""Seconds: a row whose first run takes longer is not run again, so the full run stays
within minutes; such a row's effect dwarfs the noise a median would remove."""


@dataclass(frozen=True)
class Row:
    """One workload of the table; ``series`` places it on the plot's curves."""

    label: str
    workload: str
    n: int
    k: int = 1
    target: str = ""
    series: str = ""


MESSAGES, EXCEPTIONS, SITES = "message templates", "exception types", "call sites"
TEXTS = "texts formatted before the call"
TABLE = (
    # label, workload, N calls, k distinct problems, the target, the plot's series
    (
        "same template, repeats",
        "repeats",
        1_000_000,
        1,
        "emit <= 1.15x per call: bench_handlers",
        "",
    ),
    ("f-string text, numbers masked (one problem)", "fstrings", 1_000_000, 1, "<= 1.3x", ""),
    ("new message problems (distinct templates)", "templates", 10_000, 10_000, "<= 3x", MESSAGES),
    ("distinct call sites", "call_sites", 10_000, 10_000, "", SITES),
    ("distinct call sites", "call_sites", 100_000, 100_000, "", SITES),
    ("new exception types", "exception_types", 10_000, 10_000, "<= 4x", EXCEPTIONS),
    ("distinct exception types", "exception_types", 100_000, 100_000, "", EXCEPTIONS),
    ("distinct texts (words)", "texts", 10_000, 10_000, "", TEXTS),
    ("distinct texts (words)", "texts", 100_000, 100_000, "", TEXTS),
    (
        "distinct texts (words)",
        "texts",
        1_000_000,
        1_000_000,
        "RSS <= 50 MiB, close <= SHUTDOWN_TIMEOUT, 0 dropped, <= 2 emails",
        TEXTS,
    ),
    ("calls cycling over distinct problems", "texts", 300_000, 100_000, "", ""),
)


def rows(scale: int) -> list[Row]:
    """The cardinality table of issue 10; every N and k divided by ``scale``."""
    return [
        Row(label, workload, max(1, n // scale), max(1, k // scale), target, series)
        for label, workload, n, k, target, series in TABLE
    ]


def measure_row(server: GmailServer, row: Row, runs: int, sites_dir: Path) -> list[Measurement]:
    """``runs`` measurements of ``row`` (one when the first is slow)."""
    spec = {"workload": row.workload, "n": row.n, "k": row.k, "kind": "alert"}
    done = []
    for number in range(runs):
        started = time.monotonic()
        done.append(run_child(server, spec, sites_dir=sites_dir))
        if number == 0 and time.monotonic() - started > SLOW_RUN:
            break
    return done


HEADER = (
    f"{'workload':<46}{'N':>10}{'distinct':>10}{'ratio':>8}{'caller':>8}"
    f"{'RSS loop/close MiB':>20}{'close s':>9}{'emails':>7}{'largest':>10}{'spool':>9}"
    f"{'dropped':>9}{'engine':>9}  target"
)
UNITS = f"{'':<46}{'':>10}{'':>10}{'x Null':>8}{'x Null':>8}{'':>20}{'':>9}{'':>7}{'KiB':>10}"
UNITS += f"{'MiB':>9}{'':>9}{'ns/call':>9}"


def format_row(row: Row, runs: list[Measurement]) -> str:
    """One line of the table: medians over ``runs``."""

    def med(value: str) -> float:
        return median_of(runs, value)

    measured = any(run.figures["engine_cpu_ns"] is not None for run in runs)
    engine = f"{med('engine_cpu_ns') / row.n:,.0f}" if measured else "-"
    note = "" if all(run.figures["drained"] for run in runs) else " (drain stalled)"
    note += "" if len(runs) > 1 else " [1 run]"
    return (
        f"{row.label:<46}{row.n:>10,}{row.k:>10,}{med('ratio'):>7.2f}x{med('loop_ratio'):>7.2f}x"
        f"{med('rss_loop_kib') / 1024:>11.1f} /{med('rss_close_kib') / 1024:>7.1f}"
        f"{med('close_s'):>9.2f}{med('emails'):>7.0f}"
        f"{max(run.largest_email for run in runs) / 1024:>10,.0f}"
        f"{med('spool_bytes') / MiB:>9.1f}{med('dropped'):>9,.0f}{engine:>9}"
        f"  {row.target}{note}"
    )


def engine_cpu_summary(table: list[tuple[Row, list[Measurement]]]) -> None:
    """The engine thread's own CPU per call in the floods of repeats and of f-strings."""
    print("\nEngine CPU per call, from the first call to the end of the drain (target <= 1 us):")
    for row, runs in table:
        if row.workload in ("repeats", "fstrings"):
            engine = median_of(runs, "engine_cpu_ns") / row.n
            background = median_of(runs, "background_cpu_ns") / row.n
            print(
                f"   {row.label:<46} engine thread {engine:>7,.0f} ns/call; "
                f"all threads but the caller's {background:>7,.0f} ns/call"
            )
    settling = [run.figures["settling_cpu_ns"] for _, runs in table for run in runs]
    if settling:
        print(
            "   Before each flood, after its first record, the engine finished starting in the "
            f"background: median {statistics.median(settling) / 1e6:,.0f} ms of CPU (a one-off "
            "cost, not in the ratios; bench_startup.py measures attaching the handler)"
        )


def main() -> None:
    """Measure every row, print the table, and plot it when asked."""
    parser = arguments(__doc__, quick="N and cardinality / 10", runs="runs per row")
    parser.add_argument("--plot", type=Path, help="write a PNG of cost and RSS against cardinality")
    parser.add_argument("--only", help="run only the rows whose workload has this name")
    args = parser.parse_args()
    print(
        f"{machine()}; medians of {args.runs} runs, each in a fresh process (NullHandler, "
        "then AlertHandler); GROUP_WAIT=10s, GROUP_INTERVAL=5m, SHUTDOWN_TIMEOUT=60s"
    )
    print(HEADER)
    print(UNITS)
    table = []
    started = time.monotonic()
    with GmailServer() as server, tempfile.TemporaryDirectory() as sites:
        for row in rows(10 if args.quick else 1):
            if args.only and row.workload != args.only:
                continue
            try:
                runs = measure_row(server, row, args.runs, Path(sites))
            except MeasurementError as exc:  # one failed row must not cost the others
                print(f"{row.label:<46}{row.n:>10,}{row.k:>10,}  failed: {exc}", flush=True)
                continue
            table.append((row, runs))
            print(format_row(row, runs), flush=True)
    engine_cpu_summary(table)
    print(
        f"\n(the whole run took {time.monotonic() - started:.0f} s; "
        f"load average now {os.getloadavg()[0]:.1f})"
    )
    if args.plot:
        from _plot import plot_cardinality  # noqa: PLC0415 - matplotlib is optional

        plot_cardinality(table, args.plot)
        print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
