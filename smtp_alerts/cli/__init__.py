"""The ``smtp-alerts`` command line.

Subcommands:

- ``smtp-alerts demo``: the whole pipeline against an embedded Gmail-like
  server; needs no settings and no network.
- ``smtp-alerts spool list | flush | purge | history``: look at and manage the
  digests waiting in ``SPOOL_DIR`` and the delivery log.
- ``smtp-alerts doctor [--send]``: step-by-step reachability, TLS, auth (and
  sending) diagnosis, with Gmail's failure codes explained.
- ``smtp-alerts send-test``: one real message with the current settings.
- ``smtp-alerts watch CHECKS.toml``: run the checks a TOML file describes.
- ``smtp-alerts run [--name NAME] [--timeout T] -- CMD ...``: the cron wrapper.
- ``smtp-alerts silence add | list | remove``: silences, shared through the store.

Each subcommand's module is imported only when it runs.

Every error a person can cause is one line on stderr and an exit status, never
a traceback: 2 for wrong usage or settings, 130 for Ctrl-C; output cut short by
a closed pipe (``smtp-alerts spool list | head``) ends quietly, as
``head``-friendly tools do.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .._environment import environment_values, parse_duration
from .._version import VERSION
from ..errors import ConfigurationError

if TYPE_CHECKING:
    from typing import TypeAlias

    from ..settings import Settings

    # What add_subparsers() returns; argparse names its class privately.
    _Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]  # noqa: SLF001

__all__ = ["EXIT_USAGE", "duration_flag", "load_settings", "main", "store_settings"]

EXIT_USAGE = 2
"""The exit status for wrong usage or wrong settings."""
_EXIT_INTERRUPTED = 128 + signal.SIGINT
_EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
# The sender and recipient of store-only commands, which send nothing (see store_settings).
_NOBODY = "nobody@smtp-alerts.invalid"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``smtp-alerts`` command line.

    Args:
        argv: the arguments (without the program name); ``sys.argv[1:]`` when omitted.

    Returns:
        The process exit status.
    """
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")  # as parse_args says it
    # `run` gets them: a misspelt flag must not stop the job (cli.run reports it).
    args.unknown = unknown
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    prefix = f"smtp-alerts {args.command}"
    try:
        status = _COMMANDS[args.command](args)
        sys.stdout.flush()  # here, so that a closed pipe is caught below, not at exit
    except ConfigurationError as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more can be shown. Standard
        # output goes to /dev/null so that the flush at exit cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return _EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print(f"\n{prefix}: interrupted", file=sys.stderr)
        return _EXIT_INTERRUPTED
    return status


def duration_flag(text: str) -> float:
    """Read a duration flag (``--timeout 5s``) as the settings read durations.

    Args:
        text: ``30``, ``500ms``, ``30s``, ``5m``, ``4h``, ``1d``...

    Returns:
        The duration in seconds, more than 0.

    Raises:
        argparse.ArgumentTypeError: not a duration, or 0 (argparse names the flag).
    """
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return seconds


def _count_flag(text: str) -> int:
    """An argparse type: a whole number more than 0 (argparse names the flag)."""
    if not (text.isascii() and text.isdigit()) or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number more than 0")
    return int(text)


def load_settings() -> Settings:
    """The settings from the ``SMTP_ALERTS_*`` environment, for a command that sends.

    Raises:
        ConfigurationError: what is missing or wrong (:func:`main` prints it, exit 2).
    """
    from ..settings import Settings  # noqa: PLC0415 - pydantic loads only when a command needs it

    return Settings()


def store_settings() -> Settings:
    """The settings of a command that only uses the store (``spool list``, ``silence``...).

    Such a command needs to know where the store is (``SPOOL_DIR``,
    ``REDIS_URL``), not whom alerts go to: a person looking at what waits must
    not be told to set ``TO`` first. A missing recipient or sender is filled
    with an address nothing is ever sent to; every other setting is checked
    as usual.

    Raises:
        ConfigurationError: what is wrong (:func:`main` prints it, exit 2).
    """
    from ..settings import Settings  # noqa: PLC0415 - pydantic loads only when a command needs it

    values = environment_values(os.environ)
    placeholders: dict[str, object] = {}
    if not values.get("to", "").strip():
        placeholders["to"] = [_NOBODY]
    if not values.get("from_", "").strip() and not values.get("username", "").strip():
        placeholders["from_"] = _NOBODY
    return Settings(**placeholders)


# Each command's module loads only when it runs: `--help` stays instant.


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo  # noqa: PLC0415 - the server loads only for the demo

    return run_demo(output_root=args.output, quick=args.quick)


def _doctor(args: argparse.Namespace) -> int:
    from .doctor import run_doctor  # noqa: PLC0415

    return run_doctor(send=args.send, timeout=args.timeout)


def _send_test(args: argparse.Namespace) -> int:
    from .send_test import run_send_test  # noqa: PLC0415

    return run_send_test(timeout=args.timeout)


def _run(args: argparse.Namespace) -> int:
    from .run import run_cron  # noqa: PLC0415

    return run_cron(args)


def _watch(args: argparse.Namespace) -> int:
    from .watch import run_watch  # noqa: PLC0415

    return run_watch(args)


def _spool(args: argparse.Namespace) -> int:
    from .spool import run_spool_command  # noqa: PLC0415

    return run_spool_command(args)


def _silence(args: argparse.Namespace) -> int:
    from .silence import run_silence_command  # noqa: PLC0415

    return run_silence_command(args)


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": _demo,
    "doctor": _doctor,
    "run": _run,
    "send-test": _send_test,
    "silence": _silence,
    "spool": _spool,
    "watch": _watch,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smtp-alerts",
        description="Alert emails from Python logging, checks and crashes, through Gmail SMTP.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _demo_arguments(commands)
    _spool_arguments(commands)
    _doctor_arguments(commands)
    _send_test_arguments(commands)
    _watch_arguments(commands)
    _run_arguments(commands)
    _silence_arguments(commands)
    return parser


def _demo_arguments(commands: _Commands) -> None:
    """``demo [--output DIR] [--quick]``."""
    demo = commands.add_parser(
        "demo",
        help="run a short scenario through the real pipeline against an embedded Gmail-like server",
        description=(
            "Starts a local SMTP server that behaves like Gmail (STARTTLS, AUTH required, "
            "Gmail's reply codes), logs a burst of errors through AlertHandler, and shows "
            "the digest emails that arrived. Needs no settings and no network."
        ),
    )
    demo.add_argument(
        "--output",
        type=Path,
        default=Path("smtp-alerts-demo"),
        help="folder for the received emails (.eml) and index.html (default: %(default)s)",
    )
    demo.add_argument(
        "--quick", action="store_true", help="shorter windows, for tests (about one second)"
    )


def _spool_arguments(commands: _Commands) -> None:
    """``spool list [--all] | flush [--timeout D] | purge [--yes] | history [--limit N]``."""
    spool = commands.add_parser(
        "spool",
        help="look at and manage undelivered digests (SPOOL_DIR) and the delivery log",
        description="The digests waiting in SPOOL_DIR, and the log of every delivery attempt.",
    )
    actions = spool.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list", help="a summary of the waiting digests and of the engines' counters"
    )
    listing.add_argument(
        "--all",
        action="store_true",
        help="list every waiting digest, and each engine's counters on its own",
    )
    flush = actions.add_parser(
        "flush", help="send every waiting digest now, with the current settings"
    )
    flush.add_argument(
        "--timeout",
        type=duration_flag,
        default=60.0,
        metavar="DURATION",
        help="how long to wait: 90, 30s, 5m... (default: 60s)",
    )
    purge = actions.add_parser("purge", help="delete every waiting digest (not the log)")
    purge.add_argument("--yes", action="store_true", help="do it: without --yes, only say what")
    history = actions.add_parser("history", help="the delivery log, newest first")
    history.add_argument(
        "--limit", type=_count_flag, default=50, help="how many attempts (default: 50)"
    )


def _doctor_arguments(commands: _Commands) -> None:
    """``doctor [--send] [--timeout D]``."""
    doctor = commands.add_parser(
        "doctor",
        help="check DNS, ports 587 and 465, TLS, the certificate and the login, step by step",
        description=(
            "Resolves the host, connects to the configured port and the other one (587 "
            "STARTTLS / 465 TLS, or SMTP_ALERTS_ALTERNATE_PORT), checks STARTTLS or TLS and "
            "the certificate, and logs in once with the current settings; one line per step, "
            "with Gmail's failure codes explained. Exits 1 when a needed step fails, 2 when "
            "the settings are unusable."
        ),
    )
    doctor.add_argument("--send", action="store_true", help="also send a test message")
    doctor.add_argument(
        "--timeout",
        type=duration_flag,
        default=15.0,
        metavar="DURATION",
        help="how long each step may take: 15, 5s, 1m... (default: 15s)",
    )


def _send_test_arguments(commands: _Commands) -> None:
    """``send-test [--timeout D]``."""
    send_test = commands.add_parser(
        "send-test",
        help="send one test message with the current settings",
        description="Sends one message with the current settings through the delivery "
        "chain (both ports, the backup server, the apprise URLs) and says which channel "
        "took it; exits non-zero with a diagnosis in Gmail's terms when none did.",
    )
    send_test.add_argument(
        "--timeout",
        type=duration_flag,
        default=30.0,
        metavar="DURATION",
        help="how long it may take in all: 30, 45s, 2m... (default: 30s)",
    )


def _watch_arguments(commands: _Commands) -> None:
    """``watch FILE [--once]``."""
    watch = commands.add_parser(
        "watch",
        help="run the checks a TOML file describes, alerting on failures",
        description="Runs HTTP, TCP, TLS-expiry and command checks from a TOML file "
        "until interrupted, and alerts when one goes down, stays down or recovers.",
    )
    watch.add_argument("file", type=Path, help="the checks file (TOML)")
    watch.add_argument(
        "--once", action="store_true", help="run every check once, print the results and exit"
    )


def _run_arguments(commands: _Commands) -> None:
    """``run [--name NAME] [--timeout T] -- CMD ...``."""
    run = commands.add_parser(
        "run",
        help="run a command; alert when it fails, times out or crashes (a cron wrapper)",
        description="Runs CMD; silent on success. On a non-zero exit, a timeout or a "
        "crash it sends an alert with the exit code, the duration and the tail of the "
        "output, then exits with the command's own exit code.",
    )
    run.add_argument("--name", help="the job's name in the alert (default: the command)")
    run.add_argument("--timeout", help="kill the command after this long (e.g. 90s, 30m)")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...")


def _silence_arguments(commands: _Commands) -> None:
    """``silence add [--logger P] [--match T] [--check N] --for D [--comment C]``, list, remove."""
    silence = commands.add_parser(
        "silence",
        help="stop emailing some problems for a while (counted, and said when it ends)",
        description="Silences live in the store (SPOOL_DIR, or Redis with REDIS_URL), so they "
        "hold for every process of the host or of the fleet. A silenced problem is counted, "
        "not emailed; the first digest after the silence ends says how many occurrences it "
        "held. A meta-alert about a broken login is never silenced.",
    )
    actions = silence.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a silence; prints its id")
    add.add_argument("--logger", metavar="PREFIX", help="a logger name prefix (app.db)")
    add.add_argument("--match", metavar="TEXT", help="a text the message contains")
    add.add_argument("--check", metavar="NAME", help="a check's name")
    add.add_argument(
        "--for", dest="duration", required=True, metavar="DURATION", help="30m, 2h, 1d..."
    )
    add.add_argument("--comment", help="why, for the people who list silences")
    actions.add_parser("list", help="the silences, with what each held so far")
    remove = actions.add_parser("remove", help="end a silence now")
    remove.add_argument("id", help="the id that add printed")
