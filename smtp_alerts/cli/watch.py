"""``smtp-alerts watch CHECKS.toml [--once]``: run the checks a TOML file describes.

Without ``--once`` it runs every check at its interval until SIGINT or
SIGTERM, prints each check's state changes and the alerts they raise, then
sends what is pending (bounded by ``SHUTDOWN_TIMEOUT``) and exits 0.

With ``--once`` it runs every check once, prints one line per check, sends
what the results raised, and exits 0 when every check passed, 1 otherwise.
Run from cron, the state kept in ``SPOOL_DIR`` carries the retries and
reminders from one run to the next.

Exit code 2: the checks file or the ``SMTP_ALERTS_*`` settings are wrong (the
problems are printed, each with its line and field).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from .._facade import get_engine
from .._util.humanize import format_time
from ..checks._config import CheckConfigError, load_config
from ..checks._monitor import monitor_for
from ..checks._runner import DEFAULT_JITTER, CheckOutcome, CheckRunner
from ..checks._state import CheckPolicy, CheckState
from ..errors import ConfigurationError

if TYPE_CHECKING:
    from .._engine.sink import AlertSink
    from ..checks._state import CheckEvent

__all__ = ["run_watch"]

_RUN_ONCE_SLACK = 30.0  # seconds beyond the slowest check's timeout that --once waits


def run_watch(args: argparse.Namespace) -> int:
    """Run the ``watch`` command.

    Args:
        args: ``file`` (the checks file, a :class:`~pathlib.Path`) and ``once``.

    Returns:
        The exit code.
    """
    path = Path(args.file)
    try:
        config = load_config(path)
    except CheckConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    try:
        engine = get_engine()  # reads the settings: only once the checks file is good
    except ConfigurationError as exc:
        print(f"smtp-alerts watch: {exc}", file=sys.stderr)
        return 2
    monitor = monitor_for(engine)
    if args.once:
        raised: list[CheckEvent] = []  # shown after the results, not among them
        monitor.on_event = raised.append
        runner = CheckRunner(engine, config.checks, monitor=monitor)
        return _once(runner, engine, raised)
    group_wait = engine.settings.group_wait
    monitor.on_event = lambda event: _print_event(event, group_wait=group_wait)
    return _forever(CheckRunner(engine, config.checks, monitor=monitor, on_result=_Changes()))


def _once(runner: CheckRunner, engine: AlertSink, raised: list[CheckEvent]) -> int:
    slowest = max(check.timeout for check in runner.checks)
    try:
        outcomes = runner.run_once(timeout=slowest + _RUN_ONCE_SLACK)
    except TimeoutError as exc:
        print(f"smtp-alerts watch: {exc}", file=sys.stderr)
        outcomes = []
    width = max(len(outcome.check.name) for outcome in outcomes) if outcomes else 0
    for outcome in outcomes:
        mark = "ok  " if outcome.result.ok else "FAIL"
        print(
            f"{mark} {outcome.status.state!s:<8} {outcome.check.name:<{width}}  "
            f"{outcome.result.detail}",
            flush=True,
        )
    for event in raised:
        _print_event(event)
    engine.close()
    return 0 if outcomes and all(outcome.result.ok for outcome in outcomes) else 1


def _forever(runner: CheckRunner) -> int:
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGINT, signal.SIGTERM):
            previous[number] = signal.signal(number, on_signal)
    engine = runner.engine
    try:
        runner.start()
        names = ", ".join(check.name for check in runner.checks)
        # The first runs are spread over a part of each interval: say how long
        # the terminal may stay quiet.
        first = max(check.interval * DEFAULT_JITTER + check.timeout for check in runner.checks)
        print(
            f"watching {len(runner.checks)} checks ({names}); the first results come within "
            f"{first:.0f} s, then a line for each change; Ctrl-C stops",
            flush=True,
        )
        while not stop.wait(1.0):
            pass
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        runner.stop()
        print("stopping: sending what is pending", flush=True)
        engine.close()
    return 0


class _Changes:
    """Prints a check's result when its state changes (and its first result)."""

    def __init__(self) -> None:
        self._states: dict[str, CheckState] = {}

    def __call__(self, outcome: CheckOutcome) -> None:
        name, state = outcome.check.name, outcome.status.state
        if self._states.get(name) is state:
            return
        self._states[name] = state
        line = f"{format_time(time.time())}  {name}: {state} ({outcome.result.detail})"
        if state is CheckState.PENDING:
            retries = (outcome.check.policy or CheckPolicy()).retries
            left = retries + 1 - outcome.status.failures
            line += (
                f"; DOWN, and an alert, after {left} more failure(s) in a row "
                f"(one every {outcome.check.interval:g} s)"
            )
        print(line, flush=True)


def _print_event(event: CheckEvent, *, group_wait: float | None = None) -> None:
    line = f"{format_time(event.at)}  alert: {event.name} {event.kind}"
    if group_wait:
        line += f"; the email goes out within GROUP_WAIT ({group_wait:g} s)"
    print(line, flush=True)
