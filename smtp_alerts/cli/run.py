"""``smtp-alerts run [--name NAME] [--timeout T] -- CMD ...``: the cron wrapper's command line.

Runs CMD through :func:`smtp_alerts._sources.cron.run_and_alert`: silent on
success, one alert on failure, and we exit with the command's own status
(see that module for how a failure reads and what the status is). The
engine is flushed before we exit, bounded by ``SHUTDOWN_TIMEOUT``.

A wrapper must never be the reason a job did not run: with broken
``SMTP_ALERTS_*`` settings the command still runs and its status is still our
exit status; the configuration error goes to stderr (which cron mails), and a
failure says it could not be alerted. A usage error (no command, a bad
``--timeout``) is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from .._environment import parse_duration
from .._sources.cron import default_name, headline, run_and_alert
from ..errors import ConfigurationError

if TYPE_CHECKING:
    from .._facade import Engine

__all__ = ["EXIT_USAGE", "run_cron"]

EXIT_USAGE = 2
_PREFIX = "smtp-alerts run"


class _UsageError(Exception):
    """The arguments cannot run anything; the message is the line to print."""


def run_cron(args: argparse.Namespace) -> int:
    """Run ``smtp-alerts run``; see the module docstring.

    Args:
        args: ``name`` (str or None), ``timeout`` (str or None) and ``cmd``
            (the command, possibly starting with ``--``).

    Returns:
        The exit status: the command's, or 2 for a usage error.
    """
    try:
        command = _command(args.cmd)
        timeout = _timeout(args.timeout)
    except _UsageError as exc:
        print(f"{_PREFIX}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    engine = _engine_or_none()
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


def _command(words: list[str]) -> list[str]:
    """The command after ``--``."""
    command = list(words)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise _UsageError(f"no command given; usage: {_PREFIX} [--name NAME] -- CMD ...")
    return command


def _timeout(text: str | None) -> float | None:
    """``--timeout`` in seconds; None when it was not given."""
    if text is None:
        return None
    try:
        timeout = parse_duration(text)
    except ValueError as exc:
        raise _UsageError(f"--timeout: {exc}") from exc
    if timeout == 0:
        raise _UsageError("--timeout must be more than 0 (omit it for no limit)")
    return timeout


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
