"""Alert emails from structlog: the event is the template, key-value pairs the context.

Set the SMTP_ALERTS_* variables (see the README), then run:

    python examples/structlog_app.py

structlog writes JSON lines through the standard library here, and the root
logger has an ``AlertHandler`` too, as many applications have: the five
failed logins still make one problem with 5 events (keyed by logger and
event, not counted again by the root handler), ``user_id`` shown in the
context table and ``password`` masked.
"""

from __future__ import annotations

import logging

import structlog

from smtp_alerts import AlertHandler
from smtp_alerts.integrations.structlog import AlertProcessor


def configure() -> None:
    """structlog over the standard library, JSON lines; AlertProcessor before the renderer."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger().addHandler(AlertHandler())
    structlog.configure(
        processors=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso"),
            AlertProcessor(),  # before format_exc_info: the traceback is ours to format
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )


def main() -> None:
    """Log the errors; pending alerts are sent at exit."""
    configure()
    log = structlog.get_logger("shop.auth")
    for user_id in range(5):
        log.error("login failed", user_id=user_id, password="hunter2")
    log.info("still serving")


if __name__ == "__main__":
    main()
