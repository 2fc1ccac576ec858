"""``smtp-alerts run [--name NAME] [--timeout T] -- CMD ...``: the cron wrapper's command line.

Runs CMD through :func:`smtp_alerts._sources.cron.run_and_alert`: silent on
success, one alert on failure, and we exit with the command's own status
(see that module for how a failure reads and what the status is). The
engine is flushed before we exit, bounded by ``SHUTDOWN_TIMEOUT``.

A wrapper must never be the reason a job did not run: with broken
``SMTP_ALERTS_*`` settings, or a ``--timeout`` we cannot read, the command
still runs and its status is still our exit status. The error goes to stderr
(which cron mails) in one line; a wrong flag is also sent as an alert when the
settings allow, and with wrong settings a failure says it could not be
alerted. Only a missing command is a usage error: one line, exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from .._sources.cron import default_name, headline, run_and_alert
from ..errors import ConfigurationError
from . import EXIT_USAGE, duration_flag

if TYPE_CHECKING:
    from .._facade import Engine

__all__ = ["EXIT_USAGE", "run_cron"]

_PREFIX = "smtp-alerts run"


class _UsageError(Exception):
    """The arguments cannot run anything; the message is the line to print."""


def run_cron(args: argparse.Namespace) -> int:
    """Run ``smtp-alerts run``; see the module docstring.

    Args:
        args: ``name`` (str or None), ``timeout`` (str or None), ``cmd``
            (the command, possibly starting with ``--``) and ``unknown``
            (the flags argparse did not know, if any).

    Returns:
        The exit status: the command's, or 2 for a usage error.
    """
    unknown: list[str] = getattr(args, "unknown", None) or []
    try:
        command = _command(args.cmd, after_dashes=bool(unknown))
    except _UsageError as exc:
        print(f"{_PREFIX}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    timeout, flag_problem = _timeout(args.timeout)
    if unknown:
        # What argparse took for the command's start before `--` was dropped too: say it.
        dropped = args.cmd[: args.cmd.index("--")] if "--" in args.cmd else []
        ignored = " ".join([*unknown, *dropped])
        flag_problem = "; ".join(
            filter(None, [f"unknown flag(s), ignored: {ignored}", flag_problem])
        )
    if flag_problem is not None:
        print(f"{_PREFIX}: {flag_problem}", file=sys.stderr, flush=True)
    engine = _engine_or_none()
    if engine is not None and flag_problem is not None:
        _alert_wrong_flag(engine, args.name or default_name(command), flag_problem)
    result = run_and_alert(command, engine=engine, name=args.name, timeout=timeout)
    if engine is not None:
        engine.close()  # delivers now, bounded by SHUTDOWN_TIMEOUT
    elif not result.ok and not result.interrupted:
        what = headline(args.name or default_name(command), command, result, timeout)
        print(
            f"{_PREFIX}: {what}; no alert was sent (see the configuration error above)",
            file=sys.stderr,
        )
    return result.status


def _command(words: list[str], *, after_dashes: bool = False) -> list[str]:
    """The command after ``--``.

    With ``after_dashes`` (there were unknown flags, whose values argparse
    took for the start of the command), strictly what follows the first ``--``.
    """
    command = list(words)
    if after_dashes and "--" in command:
        command = command[command.index("--") :]
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise _UsageError(f"no command given; usage: {_PREFIX} [--name NAME] -- CMD ...")
    return command


def _timeout(text: str | None) -> tuple[float | None, str | None]:
    """``--timeout`` in seconds (None: no limit), and what is wrong with it, if anything."""
    if text is None:
        return None, None
    try:
        return duration_flag(text), None
    except argparse.ArgumentTypeError as exc:
        # Read as every duration flag is, but not refused: the job runs all the same.
        return None, f"--timeout: {exc}; running the command without a time limit"


def _alert_wrong_flag(engine: Engine, name: str, problem: str) -> None:
    """Tell the people on call that a job's wrapper is misconfigured, though the job ran."""
    engine.alert(
        f"{_PREFIX} for {name}: {problem}",
        level=logging.WARNING,
        name=name,
        key=f"run:{name}:wrong-flag",
        group="default",
        source="job",
    )


def _engine_or_none() -> Engine | None:
    from .._facade import Engine  # noqa: PLC0415 - settings load only when the command runs

    try:
        return Engine()
    except ConfigurationError as exc:
        print(
            f"{_PREFIX}: configuration error: {exc}\n"
            f"{_PREFIX}: running the command anyway; a failure cannot be alerted",
            file=sys.stderr,
            flush=True,
        )
        return None
