"""A WSGI app served by gunicorn, with smtp-alerts' gunicorn hooks.

Set the SMTP_ALERTS_* variables (see the README), then, from ``examples/``:

    gunicorn -c python:smtp_alerts.integrations.gunicorn -w 2 --timeout 2 gunicorn_app:app

and ask for ``/fail`` and ``/slow``:

- ``/fail`` raises: gunicorn logs "Error handling request GET /fail" on
  ``gunicorn.error``, which does not propagate; the hooks report it (without
  the query string), one problem however many requests and workers;
- ``/slow`` outlives ``--timeout``: the arbiter aborts the worker, and the
  email says "gunicorn WORKER TIMEOUT ... in slow_report", with the stack;
- a worker killed with ``kill -9`` (what the out-of-memory killer does) is
  reported from the arbiter's "was sent SIGKILL! Perhaps out of memory?".

Pending alerts are handed over when a worker exits and sent when gunicorn stops.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def slow_report(seconds: float) -> None:
    """A report that takes far longer than any worker timeout."""
    time.sleep(seconds)


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """``/fail`` raises, ``/slow`` hangs, anything else answers 200."""
    path = environ.get("PATH_INFO", "/")
    if path == "/fail":
        raise ValueError("the cart service answered nonsense")
    if path == "/slow":
        slow_report(30)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]
