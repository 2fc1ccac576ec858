"""Uptime checks from a Python script: DOWN, still-DOWN and RECOVERED emails.

Set the SMTP_ALERTS_* variables (see the README), then run:

    python examples/monitor_checks.py https://example.com/            # until Ctrl-C
    python examples/monitor_checks.py https://example.com/ --rounds 3  # three rounds, then exit

It checks the URL (status and latency), its host's TCP port and, with a
function of your own, the free disk space. A check that fails three times in
a row is DOWN: one email. While it stays down, a reminder every hour; when it
is back, one RECOVERED email with the downtime. The state is kept in
SMTP_ALERTS_SPOOL_DIR, so a run from cron continues where the last one stopped.
"""

from __future__ import annotations

import argparse
import shutil
import threading
from urllib.parse import urlsplit

import smtp_alerts
from smtp_alerts.checks import CallableCheck, CheckPolicy, CheckRunner, HttpCheck, TcpCheck

# DOWN on the third failure in a row, UP on the first success, remind hourly.
POLICY = CheckPolicy(retries=2, recovery=1, resend_interval=3600)


def disk_has_room() -> tuple[bool, str]:
    """A check of your own: passes while more than 2% of the root disk is free."""
    usage = shutil.disk_usage("/")
    free = usage.free / usage.total
    return free > 0.02, f"{free:.0%} of the disk is free"


def main() -> None:
    """Run the checks, either a few rounds or until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("url", help="the URL to check")
    parser.add_argument("--rounds", type=int, default=0, help="rounds to run (0: until Ctrl-C)")
    args = parser.parse_args()

    parts = urlsplit(args.url)
    host = parts.hostname or "localhost"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    checks = [
        HttpCheck(name="website", url=args.url, max_latency=5.0, policy=POLICY),
        TcpCheck(name=f"{host}:{port}", host=host, port=port, policy=POLICY),
        CallableCheck(name="disk space", func=disk_has_room, interval=300, policy=POLICY),
    ]
    runner = CheckRunner(smtp_alerts.get_engine(), checks)
    if args.rounds:
        for _ in range(args.rounds):
            for outcome in runner.run_once():
                state, name = outcome.status.state, outcome.check.name
                print(f"{state!s:<8} {name}: {outcome.result.detail}")
        return  # what the rounds raised is sent at exit
    runner.start()
    print("checking every minute; Ctrl-C stops")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        runner.stop()


if __name__ == "__main__":
    main()
