"""The cron wrapper's source: run a command as cron would, and alert when it fails.

:func:`run_command` runs the command with our stdin, passes its stdout and
stderr through live while keeping the tail of each, and reports how it
ended, as a shell would report it: its exit code, ``128 + N`` for signal N,
``124`` for a timeout (as ``timeout(1)``), ``127`` for a command not found
and ``126`` for one that cannot be run.

With a timeout the command runs in its own process group, as under
``timeout(1)``: when time is up the whole group gets SIGTERM, then SIGKILL
after :data:`KILL_GRACE`, so the children a script started stop too.

:func:`run_and_alert` then tells the engine: one alert (in the style of
cronic) when the command exits non-zero, times out, dies from a signal or
cannot be started, with the exit code or signal, the duration and the tails
of both streams; a heartbeat when a named command succeeds (see
:meth:`Engine.heartbeat <smtp_alerts.Engine.heartbeat>`). The command line,
``smtp-alerts run``, is :mod:`smtp_alerts.cli.run`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from .._util.humanize import format_duration, format_time
from .heartbeats import heartbeat_monitor

if TYPE_CHECKING:
    from .._engine.sink import AlertSink

__all__ = [
    "EXIT_CANNOT_RUN",
    "EXIT_NOT_FOUND",
    "EXIT_TIMEOUT",
    "KILL_GRACE",
    "TAIL_BYTES",
    "TAIL_LINES",
    "CommandResult",
    "default_name",
    "headline",
    "run_and_alert",
    "run_command",
]

EXIT_CANNOT_RUN = 126
EXIT_NOT_FOUND = 127
EXIT_TIMEOUT = 124
#: Seconds between SIGTERM and SIGKILL when the timeout passed.
KILL_GRACE = 5.0
#: Bytes of each stream kept for the alert (the start of a long output is dropped).
TAIL_BYTES = 64 * 1024
#: Lines of each stream shown in the alert.
TAIL_LINES = 40
#: Seconds to wait, after the command exited, for a child it left behind to
#: close our pipes (a daemon it started): after that, what arrived is enough.
PIPE_GRACE = 2.0
_NAME_LIMIT = 60


class _Tail:
    """What a stream wrote, passed through live, with the last bytes kept."""

    def __init__(self, source: IO[bytes], target: IO[str] | None) -> None:
        self._source = source
        self._target = target
        self._kept = bytearray()
        self.total_bytes = 0
        self.total_lines = 0
        self.thread = threading.Thread(target=self._pump, name="smtp-alerts-run-pipe", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        read = getattr(self._source, "read1", self._source.read)
        while chunk := read(65_536):
            self.total_bytes += len(chunk)
            self.total_lines += chunk.count(b"\n")
            self._kept += chunk
            if len(self._kept) > 2 * TAIL_BYTES:
                del self._kept[:-TAIL_BYTES]
            self._pass_through(chunk)
        with contextlib.suppress(OSError):
            self._source.close()

    def _pass_through(self, chunk: bytes) -> None:
        target = self._target
        if target is None:
            return
        try:
            buffer: IO[bytes] | None = getattr(target, "buffer", None)
            if buffer is not None:
                target.flush()  # what was printed through the text layer comes first
                buffer.write(chunk)
                buffer.flush()
            else:  # a text-only stream (an IDE's, a test's): decoded, bytes may split
                target.write(chunk.decode("utf-8", "replace"))
                target.flush()
        except (OSError, ValueError):
            # Our own output is gone (a closed pipe): keep reading, so the
            # command never blocks on a full pipe, and keep the tail.
            self._target = None

    def text(self) -> str:
        """The last :data:`TAIL_LINES` lines, decoded, with a note of what was cut."""
        kept = bytes(self._kept[-TAIL_BYTES:])
        lines = kept.decode("utf-8", "replace").splitlines()
        if len(kept) < self.total_bytes and lines:
            lines = lines[1:]  # the first line kept is probably cut in the middle
        shown = lines[-TAIL_LINES:]
        if not shown:
            return "(empty)"
        total = self.total_lines + (0 if kept.endswith(b"\n") else 1)
        head = f"[last {len(shown)} of {total:,} lines]\n" if total > len(shown) else ""
        return head + "\n".join(shown)


@dataclass
class CommandResult:
    """How the command ended."""

    status: int  # what we exit with, as a shell would report it
    started: float  # epoch seconds
    duration: float
    returncode: int | None = None  # None: it never started
    timed_out: bool = False
    killed: bool = False  # it needed SIGKILL after the timeout
    interrupted: bool = False  # we got SIGINT (Ctrl-C): the user stopped it
    error: str | None = None  # why it could not start
    stdout: _Tail | None = None
    stderr: _Tail | None = None

    @property
    def ok(self) -> bool:
        """Whether it ran, exited 0 and was not stopped by the timeout."""
        return self.status == 0 and not self.timed_out and self.error is None


def run_and_alert(
    command: list[str],
    *,
    engine: AlertSink | None,
    name: str | None = None,
    timeout: float | None = None,
) -> CommandResult:
    """Run ``command``, then alert when it failed, or beat when a named one succeeded.

    Args:
        command: the program and its arguments.
        engine: where the alert goes; None runs the command all the same (a
            wrapper must never be the reason a job did not run).
        name: the job's name in the alert, and the heartbeat a success beats;
            by default the command itself (and no heartbeat).
        timeout: seconds before the command is stopped; None for no limit.

    Returns:
        How the command ended; its ``status`` is the exit status to pass on.
    """
    result = run_command(command, timeout)
    if engine is None:
        return result
    if result.ok:
        if name:
            with contextlib.suppress(Exception):  # a heartbeat must never fail the run
                heartbeat_monitor(engine).beat(name)
        return result
    if result.interrupted:  # Ctrl-C: the user stopped it and knows
        return result
    label = name or default_name(command)
    engine.alert(
        headline(label, command, result, timeout),
        name=label,
        key=f"run:{label}:{_kind(result)}",
        details=_details(command, result, timeout),
        group="default",
        source="job",
    )
    return result


def default_name(command: list[str]) -> str:
    """The job's name when it has none: the command line, cut to a subject's length."""
    text = shlex.join(command)
    return text if len(text) <= _NAME_LIMIT else text[: _NAME_LIMIT - 1] + "\N{HORIZONTAL ELLIPSIS}"


# -- running ------------------------------------------------------------------------


def run_command(command: list[str], timeout: float | None) -> CommandResult:
    """Run ``command`` to its end, with our stdin, passing its output through.

    Args:
        command: the program and its arguments.
        timeout: seconds before it is stopped (SIGTERM to its process group,
            SIGKILL :data:`KILL_GRACE` later); None for no limit.

    Returns:
        How it ended, with the tail of each stream.
    """
    started = time.time()
    clock = time.monotonic()
    own_group = timeout is not None and os.name == "posix"
    try:
        process = subprocess.Popen(  # noqa: S603 - running the user's command is the point
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **_group_options(own_group=own_group),
        )
    except FileNotFoundError:
        return CommandResult(EXIT_NOT_FOUND, started, 0.0, error="command not found")
    except OSError as exc:
        return CommandResult(EXIT_CANNOT_RUN, started, 0.0, error=exc.strerror or str(exc))
    assert process.stdout is not None  # noqa: S101 - PIPE was asked for
    assert process.stderr is not None  # noqa: S101
    result = CommandResult(0, started, 0.0)
    result.stdout = _Tail(process.stdout, sys.stdout)
    result.stderr = _Tail(process.stderr, sys.stderr)
    with _forward_signals(process, own_group=own_group, result=result):
        _wait(process, timeout, own_group=own_group, result=result)
    result.duration = time.monotonic() - clock
    for tail in (result.stdout, result.stderr):
        tail.thread.join(PIPE_GRACE)
    returncode = result.returncode = process.returncode
    if result.timed_out:
        result.status = EXIT_TIMEOUT
    elif returncode < 0:
        result.status = 128 - returncode
    else:
        result.status = returncode
    return result


def _group_options(*, own_group: bool) -> dict[str, Any]:
    """The :class:`subprocess.Popen` options that start the command in its own process group."""
    if not own_group:
        return {}
    # Like timeout(1): the command and its children form one group we can
    # stop together. (process_group is 3.11+; a session also makes a group.)
    if sys.version_info >= (3, 11):
        return {"process_group": 0}
    return {"start_new_session": True}


def _wait(
    process: subprocess.Popen[bytes],
    timeout: float | None,
    *,
    own_group: bool,
    result: CommandResult,
) -> None:
    """Wait for the command; at the timeout SIGTERM it, and SIGKILL it after the grace."""
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        result.timed_out = True
        _signal(process, signal.SIGTERM, own_group=own_group)
        try:
            process.wait(KILL_GRACE)
        except subprocess.TimeoutExpired:
            result.killed = True
            _signal(process, getattr(signal, "SIGKILL", signal.SIGTERM), own_group=own_group)
            process.wait()


def _signal(process: subprocess.Popen[bytes], signum: int, *, own_group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        if own_group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)


@contextlib.contextmanager
def _forward_signals(
    process: subprocess.Popen[bytes], *, own_group: bool, result: CommandResult
) -> Iterator[None]:
    """While the command runs: pass SIGTERM on, and let Ctrl-C stop the command, not us."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_interrupt(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001 - signal API
        result.interrupted = True
        if own_group:
            # In its own group the terminal's Ctrl-C does not reach it: pass it on.
            _signal(process, signal.SIGINT, own_group=True)

    def on_terminate(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001 - signal API
        _signal(process, signal.SIGTERM, own_group=own_group)

    previous_int = signal.signal(signal.SIGINT, on_interrupt)
    previous_term = signal.signal(signal.SIGTERM, on_terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)


# -- the alert ------------------------------------------------------------------------


def _kind(result: CommandResult) -> str:
    if result.error is not None:
        return f"start-{result.status}"
    if result.timed_out:
        return "timeout"
    if result.returncode is not None and result.returncode < 0:
        return f"signal-{-result.returncode}"
    return f"exit-{result.status}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def headline(name: str, command: list[str], result: CommandResult, timeout: float | None) -> str:
    """The alert's title (and the line printed when it cannot be sent): what went wrong."""
    if result.error is not None:
        # Without --name the name is the command itself: say it once.
        who = "" if name == default_name(command) else f"{name}: "
        if result.error == "command not found":
            return f"{who}command not found: {command[0]}"
        return f"{who}cannot run {command[0]}: {result.error}"
    if result.timed_out:
        assert timeout is not None  # noqa: S101 - only a timeout times out
        how = "killed with SIGKILL" if result.killed else "stopped"
        return f"{name} timed out after {format_duration(timeout)} and was {how}"
    returncode = result.returncode
    took = format_duration(result.duration)
    if returncode is not None and returncode < 0:
        return f"{name} was killed by {_signal_name(-returncode)} after {took}"
    return f"{name} failed with exit code {result.status} after {took}"


def _details(command: list[str], result: CommandResult, timeout: float | None) -> str:
    if result.error is not None:
        status = f"{result.status} ({result.error})"
    elif result.timed_out:
        status = f"{result.status} (timed out after {format_duration(timeout or 0)})"
    elif result.returncode is not None and result.returncode < 0:
        status = f"{result.status} (killed by {_signal_name(-result.returncode)})"
    else:
        status = str(result.status)
    lines = [
        f"command    {shlex.join(command)}",
        f"exit code  {status}",
        f"duration   {format_duration(result.duration)}",
        f"started    {format_time(result.started)}",
        f"directory  {Path.cwd()}",
    ]
    for label, tail in (("stderr", result.stderr), ("stdout", result.stdout)):
        if tail is not None:
            lines += ["", f"--- {label} ---", tail.text()]
    return "\n".join(lines)
