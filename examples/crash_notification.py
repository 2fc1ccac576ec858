"""Tracebacks of uncaught exceptions by email, before the process ends.

Set the SMTP_ALERTS_* variables (see the README), then run:

    python examples/crash_notification.py

A worker thread dies with a ZeroDivisionError, then the main thread with a
KeyError. Both tracebacks still print as usual, and both are emailed at
CRITICAL (crashes skip GROUP_WAIT); the main thread's is delivered before the
interpreter exits, bounded by SMTP_ALERTS_SHUTDOWN_TIMEOUT. A SIGTERM (from
systemd, Docker, Kubernetes) would also deliver whatever alerts were pending.
"""

from __future__ import annotations

import threading

import smtp_alerts


def average(values: list[int]) -> float:
    """Divide by the count: fails on an empty list."""
    return sum(values) / len(values)


def load_settings(settings: dict[str, str]) -> str:
    """Read a required key: fails when it is missing."""
    return settings["database_url"]


def main() -> None:
    """Install the hooks once, early; then crash a thread and the main thread."""
    smtp_alerts.install_crash_hooks()
    worker = threading.Thread(target=average, args=([],), name="stats-worker")
    worker.start()
    worker.join()
    load_settings({"debug": "true"})


if __name__ == "__main__":
    main()
