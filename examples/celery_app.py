"""A Celery app whose failed tasks arrive as one email, however many pool children saw them.

Set the SMTP_ALERTS_* variables (see the README; every process of the
worker shares ``SPOOL_DIR``), then, from ``examples/``, start a worker and
queue a few tasks (the broker is a SQLite file: no server needed):

    celery -A celery_app worker --pool prefork -c 2
    python celery_app.py

Each ``charge`` fails three times: twice retried (not alerts), then for good
(an alert keyed by the task and the exception, with its id, retries, host
and queue). The three charges make one problem with 3 events. Stop the
worker (Ctrl-C or SIGTERM) before GROUP_WAIT passes: nothing is lost, the
pool children hand their counts over and the worker sends them as it stops.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from celery import Celery

from smtp_alerts.integrations.celery import install

# A broker that needs no server: SQLite through SQLAlchemy (pip install sqlalchemy).
BROKER = Path(os.environ.get("BROKER_DIR", Path(tempfile.gettempdir()) / "smtp-alerts-celery"))
BROKER.mkdir(parents=True, exist_ok=True)

app = Celery("celery_app", broker=f"sqla+sqlite:///{BROKER / 'broker.sqlite'}")
app.conf.task_ignore_result = True
install(app)  # one line: task failures, to the default engine


@app.task(autoretry_for=(ConnectionRefusedError,), max_retries=2, default_retry_delay=0)  # type: ignore[untyped-decorator]
def charge(order_id: int) -> None:
    """Charge an order; the payment gateway refuses every time."""
    raise ConnectionRefusedError(f"the payment gateway refused order {order_id}")


if __name__ == "__main__":
    for order in range(3):
        charge.delay(order)
    print("queued 3 charges")
