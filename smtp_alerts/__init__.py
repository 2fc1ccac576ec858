"""smtp-alerts: alert emails from logging, checks and crashes, without slowing the program.

Attach :class:`AlertHandler` to logging and errors arrive as a few deduplicated
digest emails through Gmail's SMTP service (or any submission server)::

    import logging
    import smtp_alerts

    logging.getLogger().addHandler(smtp_alerts.AlertHandler())

The public names load on first use, so ``import smtp_alerts`` in a program
that never alerts costs almost nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._util.lazy import lazy_exports
from ._version import VERSION

if TYPE_CHECKING:
    from ._delivery.meta_alert import MetaAlert
    from ._engine.core import EngineStats
    from ._facade import Engine, get_engine, install_crash_hooks
    from .errors import (
        ConfigurationError,
        DeliveryError,
        SMTPAlertsError,
    )
    from .handler import AlertHandler
    from .models import Alert, Digest, OutgoingMessage, Problem
    from .settings import Settings
    from .transports.xoauth2 import OAuthToken

__version__ = VERSION

__all__ = [
    "Alert",
    "AlertHandler",
    "ConfigurationError",
    "DeliveryError",
    "Digest",
    "Engine",
    "EngineStats",
    "MetaAlert",
    "OAuthToken",
    "OutgoingMessage",
    "Problem",
    "SMTPAlertsError",
    "Settings",
    "__version__",
    "get_engine",
    "install_crash_hooks",
]

_LAZY = {
    "Alert": ".models",
    "AlertHandler": ".handler",
    "ConfigurationError": ".errors",
    "DeliveryError": ".errors",
    "Digest": ".models",
    "Engine": "._facade",
    "EngineStats": "._engine.core",
    "MetaAlert": "._delivery.meta_alert",
    "OAuthToken": ".transports.xoauth2",
    "OutgoingMessage": ".models",
    "Problem": ".models",
    "SMTPAlertsError": ".errors",
    "Settings": ".settings",
    "get_engine": "._facade",
    "install_crash_hooks": "._facade",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
