"""Jobs and heartbeats in a plain script: alerts when a job fails, overruns or stops running.

Set the SMTP_ALERTS_* variables (see the README), then run:

    python examples/job_hooks.py

- ``rotate-logs`` succeeds: no email; the run counts as its heartbeat.
- ``nightly-report`` raises: one alert with the traceback; the exception still
  propagates to the caller, who decides what happens next.
- ``sync-inventory`` runs longer than its ``max_duration``: one alert while it is
  still running, one when it ends.
- ``billing-export`` is expected every 200 ms and never beats: one "missed
  heartbeat" alert, and no other until it beats again.

Pending alerts go out as one digest when the script exits.
"""

from __future__ import annotations

import time

import smtp_alerts

engine = smtp_alerts.get_engine()


@engine.job("nightly-report")
def nightly_report(rows: list[dict[str, int]]) -> int:
    """Sum a column; one row lacks it."""
    return sum(row["amount"] for row in rows)


def main() -> None:
    """Run the jobs, then wait long enough for the missed heartbeat."""
    engine.heartbeat("billing-export", period="200ms", grace="100ms")
    with engine.job("rotate-logs"):
        time.sleep(0.01)
    try:
        nightly_report([{"amount": 3}, {"total": 4}])
    except KeyError as exc:
        print(f"the report failed ({exc!r}); an alert is on its way")
    with engine.job("sync-inventory", max_duration="100ms"):
        time.sleep(0.3)
    time.sleep(0.5)  # billing-export stays silent for more than 300 ms


if __name__ == "__main__":
    main()
