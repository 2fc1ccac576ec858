"""Alert emails from an application's logging, configured with dictConfig.

Set the SMTP_ALERTS_* variables (see the README), then run:

    python examples/logging_app.py

Errors from the "shop" loggers arrive as one digest email: the 1,000 identical
timeouts as one row with their count, the KeyError with its traceback once.
"""

from __future__ import annotations

import logging
import logging.config

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        # Reads every setting from the environment; ERROR and above are emailed.
        "alerts": {"class": "smtp_alerts.AlertHandler", "level": "ERROR"},
    },
    "root": {"handlers": ["console", "alerts"], "level": "INFO"},
}


def handle_order(order_id: int) -> None:
    """Pretend to charge a card; every call times out."""
    logging.getLogger("shop.payments").error("payment gateway timed out for order %d", order_id)


def price(cart: dict[str, int], sku: str) -> int:
    """Look up a price; raises KeyError for an unknown item."""
    return cart[sku]


def main() -> None:
    """Log a burst of errors and an exception, then exit (pending alerts are sent at exit)."""
    logging.config.dictConfig(LOGGING)
    log = logging.getLogger("shop.api")
    log.info("starting")
    for order_id in range(1000):
        handle_order(order_id)
    try:
        price({"A-1": 300}, "B-2")
    except KeyError:
        log.exception("could not price the cart")


if __name__ == "__main__":
    main()
