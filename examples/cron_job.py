"""A cron job wrapped by ``smtp-alerts run``: silent when it works, one email when it fails.

In a crontab, the wrapper goes in front of the job::

    30 2 * * * smtp-alerts run --name nightly-backup --timeout 1h -- /usr/local/bin/backup.sh

Set the SMTP_ALERTS_* variables (see the README), then run:

    python examples/cron_job.py

This script plays both parts without a shell: it runs itself, with ``--job``,
under the wrapper. The "backup" prints a little, complains on stderr and exits
with status 3; the wrapper passes the output through, emails the exit code, the
duration and the tail of both streams, and exits with the job's own status.
"""

from __future__ import annotations

import subprocess
import sys


def backup() -> int:
    """The job itself: copy some tables, then fail on one."""
    for table in ("users", "orders", "invoices"):
        print(f"dumping {table}... ok")
    print("dumping payments... permission denied for table payments", file=sys.stderr)
    return 3


def main() -> int:
    """Run this file's job under ``smtp-alerts run`` and return its exit status."""
    if "--job" in sys.argv:
        return backup()
    wrapper = [sys.executable, "-m", "smtp_alerts.cli", "run", "--name", "nightly-backup"]
    command = [sys.executable, __file__, "--job"]
    # S603: our own interpreter running this very file.
    run = subprocess.run([*wrapper, "--timeout", "1m", "--", *command], check=False)  # noqa: S603
    status = run.returncode
    print(f"the wrapper exited with the job's status: {status}")
    return status


if __name__ == "__main__":
    sys.exit(main())
