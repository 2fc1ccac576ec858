"""A failed web request as one alert: its key, its message and its context table.

The three web integrations (Django, Flask, ASGI) see a request through their
own framework's objects; once they have read the route template, the method,
the status and the user, what makes the alert is the same: the key
``"GET /orders/{id} KeyError"`` (so N requests hitting one bug are one problem
with N events, whatever ids they carried), a one-line message, and a context
table that names the request without its cookies, headers or body.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import smtp_alerts

from ._common import exception_key, report, safe_url

__all__ = ["NO_ROUTE", "WebFailure", "engine_or_default", "masked_path", "safely", "user_id"]

T = TypeVar("T")

NO_ROUTE = "<no route>"
"""The route of a request that failed before (or without) routing."""

_log = logging.getLogger("smtp_alerts.integrations")

# A path segment that carries an id: a number, or a longer token with a digit
# in it (a hex or UUID id, "order-1234"); "v1" or "ipv6" are names.
_SEGMENT = re.compile(r"(?<=/)[^/]+")


def _masked_segment(match: re.Match[str]) -> str:
    segment = match.group()
    has_digit = any(c.isdigit() for c in segment)
    return "{}" if segment.isdigit() or (has_digit and len(segment) >= 6) else segment


def masked_path(path: str) -> str:
    """A path with its id-like segments masked, for an app that names no route template.

    ``/orders/42/items/7`` and ``/orders/43/items/8`` are one key: ``/orders/{}/items/{}``.
    """
    return _SEGMENT.sub(_masked_segment, safe_url(path))


def user_id(user: object) -> str | None:
    """The id of an authenticated user object (``id``, else ``pk``), never its name or email."""
    if user is None or getattr(user, "is_authenticated", True) is False:
        return None
    for attribute in ("id", "pk"):
        try:
            value = getattr(user, attribute, None)
        except Exception:  # noqa: BLE001 - a user object that fails says nothing
            return None
        if value is not None and not callable(value):
            return str(value)
    return None


def safely(read: Callable[[], T]) -> T | None:
    """What ``read`` returns, or None when it fails: one odd field must not change the key."""
    try:
        return read()
    except Exception:  # noqa: BLE001 - a request that cannot say this says nothing
        return None


def engine_or_default(engine: smtp_alerts.Engine | None) -> smtp_alerts.Engine | None:
    """``engine``, or the process's default engine; None when it cannot be built."""
    if engine is not None:
        return engine
    try:
        return smtp_alerts.get_engine()
    except Exception:  # noqa: BLE001 - a misconfigured engine must not break a request
        _log.debug("no engine to report to", exc_info=True)
        return None


@dataclass
class WebFailure:
    """What an integration read from its framework about one failed request.

    Attributes:
        framework: the integration's name (``django``, ``flask``, ``asgi``), shown as who raised it.
        method: the HTTP method (``WEBSOCKET`` for a websocket).
        route: the route template (``/orders/{order_id}``), or :data:`NO_ROUTE`.
        status: the response's status, when known.
        extra: further context (host, path, endpoint, field names, user id); None values
            are left out.
    """

    framework: str
    method: str
    route: str
    status: int | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def key(self, exc: BaseException) -> str:
        """What makes two failed requests the same bug: method, route and exception type."""
        return exception_key(f"{self.method} {self.route}", exc)

    def answered_key(self, exc: BaseException, status: int, *, http_error: bool) -> str:
        """The key of an exception a handler answered with ``status`` (500 or more).

        An HTTP error (``HTTPException(500)``, ``abort(500)``) raised from another
        exception is that exception's bug; without one, the route and the status
        say what failed. Any other exception is keyed as if unhandled.
        """
        if not http_error:
            return self.key(exc)
        cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if cause is not None:
            return self.key(cause)
        return f"{self.method} {self.route} HTTP {status}"

    def message(self, exc: BaseException) -> str:
        """One line: the request and what it raised."""
        text = str(exc).partition("\n")[0] if str(exc) else ""
        name = type(exc).__qualname__
        return f"{self.method} {self.route} raised {name}" + (f": {text}" if text else "")

    def context(self) -> dict[str, object]:
        """The table shown in the email (scrubbed again by the engine's one scrubber)."""
        table: dict[str, object] = {"method": self.method, "route": self.route}
        if self.status is not None:
            table["status"] = self.status
        table.update((k, v) for k, v in self.extra.items() if v is not None and v != "")
        return table

    def report(
        self,
        engine: smtp_alerts.Engine | None,
        exc: BaseException,
        *,
        key: str | None = None,
        name: str | None = None,
        level: int = logging.ERROR,
        clean: Callable[[str], str] | None = None,
    ) -> bool:
        """Raise ``exc`` as this request's alert on ``engine`` (or the default one); never raises.

        Args:
            engine: the engine; the process's default one when None.
            exc: what the request raised.
            key: what makes it the same problem; :meth:`key` when omitted.
            name: who raised it, shown where a logger's name would be; the
                method and route when omitted, so the subject names the route.
            level: a :mod:`logging` level.
            clean: a framework's own scrubbing of text (Django's hidden
                settings), applied to the message and the context's values.
        """
        target = engine_or_default(engine)
        if target is None:
            return False
        try:
            key = key if key is not None else self.key(exc)
            message, context = self.message(exc), self.context()
            if clean is not None:
                message = clean(message)
                context = {k: clean(v) if isinstance(v, str) else v for k, v in context.items()}
        except Exception:  # noqa: BLE001 - an odd exception or request degrades, never raises
            _log.debug("describing the failure failed", exc_info=True)
            key, message, context = f"{self.framework} request", "a request failed", {}
        return report(
            target,
            exc,
            message=message,
            key=key,
            name=name if name is not None else f"{self.method} {self.route}",
            context=context,
            level=level,
        )
