"""Tools for testing code that uses smtp-alerts.

The names load on first use: ``import smtp_alerts.testing`` (which the pytest
plugin does in every test run) does not import aiosmtpd or trustme.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._util.lazy import lazy_exports

if TYPE_CHECKING:
    from .._util.clock import ManualClock
    from ._capture import AlertCapture, capture_alerts
    from ._faults import Faults
    from ._server import GmailServer
    from ._state import AuthAttempt, ReceivedMessage
    from ._webhook import WebhookListener, WebhookRequest

__all__ = [
    "AlertCapture",
    "AuthAttempt",
    "Faults",
    "GmailServer",
    "ManualClock",
    "ReceivedMessage",
    "WebhookListener",
    "WebhookRequest",
    "capture_alerts",
]

_LAZY = {
    "AlertCapture": "._capture",
    "ManualClock": ".._util.clock",
    "capture_alerts": "._capture",
    "AuthAttempt": "._state",
    "Faults": "._faults",
    "GmailServer": "._server",
    "ReceivedMessage": "._state",
    "WebhookListener": "._webhook",
    "WebhookRequest": "._webhook",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
