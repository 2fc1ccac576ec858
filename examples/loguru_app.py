"""Alert emails from loguru: one sink, one problem per line of code.

Set the SMTP_ALERTS_* variables (see the README), then run:

    python examples/loguru_app.py

Five failed logins of five users arrive as one problem with 5 events (loguru
formats the message before any sink, so the call site names the problem),
with the bound ``user`` in the problem's context table and the bound
``password`` masked; the failed charge arrives with its traceback once.
"""

from __future__ import annotations

from loguru import logger

from smtp_alerts.integrations import loguru as alerts


def login(user: str, password: str) -> None:
    """Pretend to check a password; every check fails."""
    logger.bind(user=user, password=password).error("login failed for {}", user)


def charge(order_id: int) -> None:
    """Pretend to charge a card; the gateway's answer lacks a field."""
    answer: dict[str, str] = {}
    try:
        answer["authorization_code"]
    except KeyError:
        logger.exception("charge failed for order {}", order_id)


def main() -> None:
    """Log the errors; pending alerts are sent at exit."""
    alerts.install()  # ERROR and above, to the default engine
    for user in ("alice", "bob", "carol", "dave", "eve"):
        login(user, "hunter2")
    charge(42)


if __name__ == "__main__":
    main()
