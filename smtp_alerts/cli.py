"""The ``smtp-alerts`` command line.

Subcommands:

- ``smtp-alerts demo``: the whole pipeline against an embedded Gmail-like
  server; needs no settings and no network.
- ``smtp-alerts spool list | flush | purge | history``: look at and manage the
  digests waiting in ``SPOOL_DIR`` and the delivery log.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ._version import VERSION

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``smtp-alerts`` command line.

    Args:
        argv: the arguments (without the program name); ``sys.argv[1:]`` when omitted.

    Returns:
        The process exit status.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "spool":
        from ._spool_cli import run_spool_command  # noqa: PLC0415 - settings load only here

        return run_spool_command(args)
    from ._demo import run_demo  # noqa: PLC0415 - the server loads only for the demo

    return run_demo(output_root=args.output, quick=args.quick)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smtp-alerts",
        description="Alert emails from Python logging, checks and crashes, through Gmail SMTP.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
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
    spool = commands.add_parser(
        "spool",
        help="look at and manage undelivered digests (SPOOL_DIR) and the delivery log",
        description="The digests waiting in SPOOL_DIR, and the log of every delivery attempt.",
    )
    actions = spool.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="the waiting digests and the engines' counters")
    flush = actions.add_parser(
        "flush", help="send every waiting digest now, with the current settings"
    )
    flush.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default: 60)")
    purge = actions.add_parser("purge", help="delete every waiting digest (not the log)")
    purge.add_argument("--yes", action="store_true", help="do it: without --yes, only say what")
    history = actions.add_parser("history", help="the delivery log, newest first")
    history.add_argument("--limit", type=int, default=50, help="how many attempts (default: 50)")
    return parser


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
