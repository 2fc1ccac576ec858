"""One benchmark measurement in a fresh process: a workload under NullHandler, then under a handler.

The benchmark scripts (``bench_cardinality.py``, ``bench_handlers.py``) run
this file as a child process, one per measurement, so each handler starts
from a clean interpreter (RSS growth is its own; sentry-sdk's patch of
``logging`` and loguru's queue cannot leak into the next measurement)::

    python benchmarks/_workloads.py '{"workload": "texts", "n": 100000, "k": 100000,
                                      "kind": "alert"}'

The child times the workload with ``logging.NullHandler`` first, then with
the handler under test in the same process, and prints one JSON object
(:class:`Result`). The handler's block time runs from the first call until
the handler's background side has taken everything (the drain): N calls
divided by N, so the engine thread's share of the GIL is in the figure.

Settings come from the environment (``SMTP_ALERTS_*``, set by the parent to
point at its local Gmail-like server and a temporary ``SPOOL_DIR``).
"""

# The workloads are what users write, on purpose: f-strings in logging calls
# (G004), try/except in a loop (PERF203); each has
# the one signature run(log, n, k) and the handlers one spec, used or not (ARG).
# ruff: noqa: G004, PERF203, ARG001, ARG005

from __future__ import annotations

import functools
import gc
import importlib.util
import json
import logging
import logging.handlers
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

Run = Callable[[Any, int, int], None]
"""A workload: ``run(log, n, k)`` makes ``n`` logging calls over ``k`` distinct problems."""

# 100 words with no digits and no hex-looking run of 8+ letters: texts built
# from them have nothing a masking rule could take for a number or an id.
_WORDS = (
    "apple river stone cloud maple otter tiger lemon piano quilt "
    "robin sugar tulip umbra vivid wagon yacht zebra amber bison "
    "cobra dingo eagle flute grape hazel igloo jolly koala llama "
    "mango noble olive pearl quail raven salsa tango ultra viper "
    "walnut xenon yodel zesty acorn blaze crisp drift ember frost "
    "gloom honey ivory jumbo kiosk lunar mocha nylon oasis plume "
    "quirk rusty shine thorn unity valor whirl yearn zonal alloy "
    "brisk charm dwarf elbow fjord glyph husky inlet jewel knack "
    "lilac marsh nudge orbit prism quota ridge sloop trunk usher "
    "vault wheat youth zippy arrow bloom crane dune ferry gusty"
)
WORDS = tuple(_WORDS.split())
assert len(set(WORDS)) == 100  # texts rely on 100 distinct words


def text_of(j: int) -> str:
    """The ``j``-th distinct text (``j`` < 1,000,000): three words, nothing to mask."""
    return f"could not sync {WORDS[j % 100]} with {WORDS[j // 100 % 100]} {WORDS[j // 10000]}"


def repeats(log: Any, n: int, k: int, message: str = "payment %s failed") -> None:
    """One template repeated: the cheapest path, a known problem."""
    for i in range(n):
        log.error(message, i)


def fstrings(log: Any, n: int, k: int) -> None:
    """Pre-formatted text with numbers: one problem once the numbers are masked."""
    for i in range(n):
        log.error(f"payment {i} failed for user {i * 7}")


def exceptions(log: Any, n: int, k: int, message: str = "lookup failed for %s") -> None:
    """One exception type raised and logged from one place, repeated."""
    prices: dict[int, int] = {}
    for i in range(n):
        try:
            prices[i]
        except KeyError:
            log.exception(message, i)


def texts(log: Any, n: int, k: int) -> None:
    """``k`` distinct pre-formatted texts (words only), cycled ``n`` times."""
    w = WORDS
    for i in range(n):
        j = i % k
        log.error(f"could not sync {w[j % 100]} with {w[j // 100 % 100]} {w[j // 10000]}")


def templates(log: Any, n: int, k: int) -> None:
    """``k`` distinct message templates (new message problems), each with an argument."""
    known = [text_of(j) + ": %s" for j in range(k)]
    for i in range(n):
        log.error(known[i % k], i)


def call_sites(log: Any, n: int, k: int) -> None:
    """One template logged from ``k`` distinct call sites (distinct lines of a real file)."""
    sites = _sites_module(k).SITES
    for i in range(n):
        sites[i % k](log, i)


def exception_types(log: Any, n: int, k: int) -> None:
    """``k`` distinct exception types, raised in one place and logged with ``log.exception``."""
    classes = _exception_classes(k)
    for i in range(n):
        try:
            _raise(classes[i % k])
        except Exception:
            log.exception("sync failed")


def _raise(cls: type[Exception]) -> None:
    raise cls("sync failed")


_CLASSES: list[type[Exception]] = []


def _exception_classes(k: int) -> list[type[Exception]]:
    # Built once per process (before the first timed run), named from words,
    # so no rule that masks digits can merge them.
    while len(_CLASSES) < k:
        j = len(_CLASSES)
        name = "".join(w.title() for w in text_of(j).split()[-3:]) + "Error"
        _CLASSES.append(type(name, (Exception,), {"__module__": "bench_errors"}))
    return _CLASSES[:k]


def _sites_module(k: int) -> ModuleType:
    """A generated module of ``k`` functions, each logging from its own line.

    Written once to ``BENCH_SITES_DIR`` (the parent's temporary directory), so
    later processes load it from its cached bytecode instead of compiling it.
    """
    name = f"bench_sites_{k}"
    if name in sys.modules:
        return sys.modules[name]
    directory = Path(os.environ.get("BENCH_SITES_DIR") or Path.cwd())
    path = directory / f"{name}.py"
    if not path.exists():
        lines = [f'"""{k} distinct call sites, generated by benchmarks/_workloads.py."""']
        for j in range(k):
            lines += [f"def site_{j}(log, i):", '    log.error("call site failed for %s", i)']
        lines.append(f"SITES = [{', '.join(f'site_{j}' for j in range(k))}]")
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
        temporary.replace(path)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None  # a .py file we wrote
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _prepare(workload: str, k: int) -> None:
    """Build what a workload needs before anything is timed (classes, generated sites)."""
    if workload == "call_sites":
        _sites_module(k)
    elif workload == "exception_types":
        _exception_classes(k)


WORKLOADS: dict[str, Run] = {
    "repeats": repeats,
    "fstrings": fstrings,
    "exceptions": exceptions,
    "texts": texts,
    "templates": templates,
    "call_sites": call_sites,
    "exception_types": exception_types,
}


# loguru's own API: the same workloads with its "{}" formatting, as its users write them.
LOGURU_WORKLOADS: dict[str, Run] = {
    "repeats": functools.partial(repeats, message="payment {} failed"),
    "exceptions": functools.partial(exceptions, message="lookup failed for {}"),
}


# -- process measurements ----------------------------------------------------------------


def status_kib(field_name: str) -> int:
    """A ``/proc/self/status`` figure in KiB (VmRSS, VmHWM)."""
    with Path("/proc/self/status").open(encoding="ascii") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field_name} in /proc/self/status")


def reset_peak() -> None:
    """Start VmHWM again from the current RSS (Linux 4.0+), so a peak is this phase's own."""
    with suppress(OSError), Path("/proc/self/clear_refs").open("w", encoding="ascii") as refs:
        refs.write("5")


def thread_cpu_ns(thread: threading.Thread | None) -> float | None:
    """CPU time (user + system) of another thread so far, in ns; None if it is not running.

    ``pthread_getcpuclockid`` gives the thread's own CPU clock at nanosecond
    resolution; without it (not Linux), ``/proc/self/task/<tid>/stat``
    (utime + stime, in clock ticks of 10 ms).
    """
    if thread is None or thread.ident is None or not thread.is_alive():
        return None
    try:
        return float(time.clock_gettime_ns(time.pthread_getcpuclockid(thread.ident)))
    except (AttributeError, OSError):
        pass
    try:
        text = Path(f"/proc/self/task/{thread.native_id}/stat").read_text(encoding="ascii")
    except OSError:  # the thread has ended
        return None
    fields = text.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) * 1e9 / os.sysconf("SC_CLK_TCK")


def background_cpu_ns() -> float:
    """CPU of every thread but this (the main) one so far, ended threads included, in ns."""
    return float(time.process_time_ns() - time.thread_time_ns())


def settle_background(
    quiet_ns: float = 1e6, period_s: float = 0.05, limit_s: float = 10.0
) -> float:
    """Wait until the handler's background threads are idle; their CPU meanwhile, in ns.

    After its first record a handler may go on starting in the background
    (AlertHandler builds its settings model and loads its channels on its
    own threads): a one-off cost that :mod:`bench_startup` and the start-up
    line measure, not a cost per call. The timed flood starts once the
    background used less than ``quiet_ns`` of CPU in ``period_s``.
    """
    started = background_cpu_ns()
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = background_cpu_ns()
        time.sleep(period_s)
        if background_cpu_ns() - before < quiet_ns:
            break
    return background_cpu_ns() - started


def engine_thread(engine: Any) -> threading.Thread | None:
    """The engine's own thread, if it runs."""
    thread = getattr(engine, "_thread", None)
    if isinstance(thread, threading.Thread):
        return thread
    return next((t for t in threading.enumerate() if t.name == "smtp-alerts-engine"), None)


# -- the handlers under test -----------------------------------------------------------


Drained = tuple[float, bool]
"""When the drain ended (``time.perf_counter()``), and whether all was taken: a drain
that stalls short ends at its last progress, so the wait for a count that never
comes is not charged to the handler."""


def drained_now() -> Drained:
    """A drain that waited for its handler's own signal (a join, a flush): complete, now."""
    return time.perf_counter(), True


@dataclass
class Subject:
    """A handler under test: how to attach it, wait for its drain, and close it."""

    log: Any
    drain: Callable[[int], Drained]
    close: Callable[[], None]
    counters: Callable[[], tuple[int, int]] = lambda: (0, 0)
    engine: Any = None


def stdlib_logger(handler: logging.Handler) -> logging.Logger:
    """The benchmark's logger with ``handler`` as its only handler."""
    log = logging.getLogger("bench.app")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.ERROR)
    return log


def alert_subject(spec: dict[str, Any]) -> Subject:
    """AlertHandler with the process's default engine, from the environment."""
    import smtp_alerts  # noqa: PLC0415 - NullHandler's run must not pay for it

    handler = smtp_alerts.AlertHandler()
    engine = handler.engine

    def counters() -> tuple[int, int]:
        stats = engine.stats()
        return stats.accepted, stats.dropped

    def drain(target: int) -> Drained:
        return _wait_drained(counters, target)

    def close() -> None:
        # The engine first, as the exit hook does: bounded by SHUTDOWN_TIMEOUT once.
        # handler.close() first would flush (bounded by it) and then close (again).
        engine.close()
        handler.close()

    return Subject(stdlib_logger(handler), drain, close, counters, engine)


def _wait_drained(counters: Callable[[], tuple[int, int]], target: int) -> Drained:
    """Poll until the engine has counted ``target`` occurrences (taken in or dropped).

    An engine that counts some occurrences elsewhere (a future counter) would
    stall short of ``target``: after 2 s without progress the drain ends at
    the last progress, and says it stalled.
    """
    last, last_change = -1, time.perf_counter()
    while True:
        taken = sum(counters())
        now = time.perf_counter()
        if taken >= target:
            return now, True
        if taken != last:
            last, last_change = taken, now
        elif now - last_change > 2.0:  # no progress for 2 s: the rest will not come
            return last_change, False
        time.sleep(0.001)


def queue_subject(spec: dict[str, Any]) -> Subject:
    """QueueHandler into a QueueListener that hands each record to a NullHandler."""
    records: queue.Queue[logging.LogRecord] = queue.Queue()
    listener = logging.handlers.QueueListener(records, logging.NullHandler())
    listener.start()

    def drain(target: int) -> Drained:
        records.join()  # the listener calls task_done() for each record
        return drained_now()

    return Subject(stdlib_logger(logging.handlers.QueueHandler(records)), drain, listener.stop)


def loguru_subject(spec: dict[str, Any]) -> Subject:
    """loguru with ``enqueue=True`` into a sink that does nothing."""
    from loguru import logger  # noqa: PLC0415 - optional: the bench extra

    logger.remove()
    logger.add(lambda message: None, level="ERROR", enqueue=True)

    def drain(target: int) -> Drained:
        logger.complete()  # waits until the enqueued messages were handled
        return drained_now()

    return Subject(logger, drain, logger.remove)


def sentry_subject(spec: dict[str, Any], *, breadcrumbs: bool = True) -> Subject:
    """sentry-sdk's logging integration (ERROR records become events) to a local endpoint.

    By default every record of INFO and up is also a breadcrumb, and each
    event carries (and serializes) the last 100: that is most of its cost.
    ``breadcrumbs=False`` is the leaner configuration (events only).
    """
    import sentry_sdk  # noqa: PLC0415 - optional: the bench extra
    from sentry_sdk.integrations.logging import LoggingIntegration  # noqa: PLC0415

    integration = LoggingIntegration(level=logging.INFO if breadcrumbs else None)
    sentry_sdk.init(
        dsn=spec["dsn"],
        integrations=[integration],
        auto_enabling_integrations=False,
        traces_sample_rate=None,
    )

    def drain(target: int) -> Drained:
        sentry_sdk.flush(timeout=120)
        return drained_now()

    def close() -> None:
        sentry_sdk.get_client().close(timeout=10)

    # Sentry hooks Logger.callHandlers: it sees records whatever the handlers.
    return Subject(stdlib_logger(logging.NullHandler()), drain, close)


SUBJECTS: dict[str, Callable[[dict[str, Any]], Subject]] = {
    "alert": alert_subject,
    "queue": queue_subject,
    "loguru": loguru_subject,
    "sentry": sentry_subject,
    "sentry_lean": lambda spec: sentry_subject(spec, breadcrumbs=False),
}


@dataclass
class Result:
    """What one child measured (printed as JSON); times in seconds, sizes in KiB."""

    null_s: float
    loop_s: float
    block_s: float
    drained: bool
    rss_loop_kib: int
    rss_close_kib: int
    close_s: float
    accepted: int
    dropped: int
    engine_cpu_ns: float | None
    background_cpu_ns: float
    settling_cpu_ns: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@contextmanager
def gc_settled() -> Iterator[None]:
    """Collect before a timed phase: one phase's garbage must not be the next one's cost."""
    gc.collect()
    yield


def time_null(run: Run, n: int, k: int) -> float:
    """Seconds for the workload with a NullHandler (the floor), after a warm-up call."""
    log = stdlib_logger(logging.NullHandler())
    log.error("warm-up %s", -1)
    with gc_settled():
        started = time.perf_counter()
        run(log, n, k)
        return time.perf_counter() - started


def measure(spec: dict[str, Any]) -> Result:
    """Time the workload with NullHandler, then with the handler under test."""
    kind, n, k = spec["kind"], spec["n"], spec.get("k", 1)
    _prepare(spec["workload"], k)
    null_s = time_null(WORKLOADS[spec["workload"]], n, k)
    subject = SUBJECTS[kind](spec)
    run = (LOGURU_WORKLOADS if kind == "loguru" else WORKLOADS)[spec["workload"]]
    subject.log.error("warm-up %s", -1)  # the engine's start is not the workload's cost
    subject.drain(1)
    settling_ns = settle_background()
    thread = engine_thread(subject.engine) if subject.engine is not None else None
    before = sum(subject.counters())
    with gc_settled():
        reset_peak()
        base_kib = status_kib("VmRSS")
        engine_before = thread_cpu_ns(thread)
        background_before = background_cpu_ns()
        started = time.perf_counter()
        run(subject.log, n, k)
        loop_s = time.perf_counter() - started
        ended, drained = subject.drain(before + n)
        block_s = ended - started
    engine_after = thread_cpu_ns(thread)
    engine_ns = (
        None if engine_before is None or engine_after is None else engine_after - engine_before
    )
    background_ns = background_cpu_ns() - background_before
    rss_loop = status_kib("VmHWM") - base_kib
    counted = subject.counters()  # all drained: what close adds is not the workload's
    started = time.perf_counter()
    subject.close()
    close_s = time.perf_counter() - started
    with suppress(RuntimeError):  # stats() after a close that ran out of time can fail
        counted = subject.counters()
    accepted, dropped = counted
    return Result(
        null_s=null_s,
        loop_s=loop_s,
        block_s=block_s,
        drained=drained,
        rss_loop_kib=rss_loop,
        rss_close_kib=status_kib("VmHWM") - base_kib,
        close_s=close_s,
        accepted=accepted,
        dropped=dropped,
        engine_cpu_ns=engine_ns,
        background_cpu_ns=background_ns,
        settling_cpu_ns=settling_ns,
    )


def callgrind_marker() -> None:
    """A call of libc's ``getppid``: callgrind (``--dump-before=getppid``) dumps its counts here."""
    os.getppid()


def callgrind_flood(spec: dict[str, Any]) -> None:
    """Under callgrind: NullHandler's flood, then AlertHandler's with its drain, between markers.

    The dumps between the markers hold each flood's instruction counts
    across all threads (the engine thread's drain included).
    """
    run, n = WORKLOADS[spec["workload"]], spec["n"]
    null = stdlib_logger(logging.NullHandler())
    null.error("warm-up %s", -1)
    callgrind_marker()  # dump 1: start-up
    run(null, n, 1)
    callgrind_marker()  # dump 2: NullHandler's flood
    subject = alert_subject(spec)
    subject.log.error("warm-up %s", -1)
    subject.drain(1)
    settle_background()
    before = sum(subject.counters())
    callgrind_marker()  # dump 3: the engine's start
    run(subject.log, n, 1)
    subject.drain(before + n)
    callgrind_marker()  # dump 4: AlertHandler's flood, drain included
    subject.close()


def main() -> None:
    """Measure what ``sys.argv[1]`` (JSON) asks and print the result as JSON."""
    spec = json.loads(sys.argv[1])
    if spec.get("callgrind"):
        callgrind_flood(spec)
        return
    print(json.dumps(asdict(measure(spec))), flush=True)


if __name__ == "__main__":
    main()
