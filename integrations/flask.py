"""Flask: a failed request as one alert keyed by URL rule and exception.

``init_app(app)`` listens to Flask's ``got_request_exception`` signal, which
Flask sends for every exception no error handler took, before it logs
``"Exception on /orders/7 [GET]"`` (text formatted before the call, so each
path would be a problem of its own). It also watches the app's
``handle_user_exception``: an exception that one of the app's error handlers
answered with a server error (``@app.errorhandler(PaymentDeclined)``
returning 503, ``abort(500)``) is reported once the response says so, as
Starlette's are by :mod:`smtp_alerts.integrations.asgi`. The alert is keyed by the URL rule
(``/orders/<int:order_id>``) and the exception type, so ten requests to one
bug are one problem with ten events; :meth:`Engine.alert` marks the exception,
so Flask's own log record of it is not counted again by a root
:class:`~smtp_alerts.AlertHandler`.

The context names the request (method, rule, endpoint, status, host, path
without its query, the names of its form or JSON fields, the user's id from
``g.user`` or Flask-Login's ``current_user``), never a cookie, a header, a
field's value or the user's name.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._common import require, safe_keys, safe_url
from ._web import NO_ROUTE, WebFailure, masked_path, safely, user_id

require("flask", package="flask", extra="flask")

from flask import (  # noqa: E402
    Flask,
    g,
    got_request_exception,
    has_request_context,
    request,
    request_finished,
)
from werkzeug.exceptions import HTTPException  # noqa: E402

if TYPE_CHECKING:
    import smtp_alerts

__all__ = ["init_app"]

_EXTENSION = "smtp_alerts"
# The exception an error handler answered, kept in ``g`` until the response is known.
_ANSWERED = "_smtp_alerts_answered"

#: Bodies larger than this are not parsed for their field names (the view did not need them).
BODY_NAMES_MAX_BYTES = 64 * 1024


def init_app(app: Flask, *, engine: smtp_alerts.Engine | None = None) -> None:
    """Report ``app``'s unhandled exceptions, and those its error handlers answer with 5xx.

    Calling it again replaces the earlier set-up (no exception is reported twice).

    Args:
        app: the Flask application.
        engine: the engine to report to; the process's default engine
            (:func:`smtp_alerts.get_engine`, from ``SMTP_ALERTS_*``) when omitted.
    """
    previous = app.extensions.pop(_EXTENSION, None)
    if isinstance(previous, _Hooks):
        previous.disconnect()
    hooks = _Hooks(app, engine, app.handle_user_exception)
    hooks.connect()
    app.extensions[_EXTENSION] = hooks


class _Hooks:
    """One app's hooks: Flask's two signals, and its ``handle_user_exception`` watched."""

    def __init__(
        self,
        app: Flask,
        engine: smtp_alerts.Engine | None,
        original: Callable[[Exception], Any],
    ) -> None:
        self.app = app
        self.engine = engine
        self.original = original

    def connect(self) -> None:
        got_request_exception.connect(self.on_exception, sender=self.app, weak=False)
        request_finished.connect(self.on_finished, sender=self.app, weak=False)
        # An instance attribute: Flask calls self.handle_user_exception(e).
        self.app.handle_user_exception = self.handle_user_exception  # type: ignore[method-assign,assignment]

    def disconnect(self) -> None:
        got_request_exception.disconnect(self.on_exception, sender=self.app)
        request_finished.disconnect(self.on_finished, sender=self.app)
        self.app.handle_user_exception = self.original  # type: ignore[method-assign,assignment]

    def on_exception(self, _sender: Flask, exception: BaseException, **_: Any) -> None:
        """No handler took it: Flask answers 500 and logs it next."""
        _failure(500).report(self.engine, exception)

    def handle_user_exception(self, exc: Exception) -> Any:
        """Flask's own; an exception a handler answered is kept for :meth:`on_finished`."""
        answer = self.original(exc)  # raises when no handler takes it: on_exception reports
        with contextlib.suppress(Exception):  # never in the way of the app's answer
            g.setdefault(_ANSWERED, exc)
        return answer

    def on_finished(self, _sender: Flask, response: Any, **_: Any) -> None:
        """Report the exception a handler answered, when its answer was a server error."""
        # Flask turns an exception raised here into a 500 of its own: none may leave.
        with contextlib.suppress(Exception):
            exc = g.pop(_ANSWERED, None)
            status = getattr(response, "status_code", 0)
            if exc is None or not isinstance(status, int) or status < 500:
                return
            failure = _failure(status)
            key = failure.answered_key(exc, status, http_error=isinstance(exc, HTTPException))
            failure.report(self.engine, exc, key=key)


def _failure(status: int) -> WebFailure:
    try:
        return describe_request(status)
    except Exception:  # noqa: BLE001 - an odd request still makes an alert
        return WebFailure("flask", "?", NO_ROUTE, status)


def describe_request(status: int) -> WebFailure:
    """The current request, answered with ``status``, as a :class:`WebFailure`."""
    if not has_request_context():  # pragma: no cover - Flask sends its signals in a request
        return WebFailure("flask", "?", NO_ROUTE, status)
    rule = request.url_rule
    route = rule.rule if rule is not None else masked_path(request.path)
    return WebFailure(
        "flask",
        request.method,
        route,
        status,
        {
            "endpoint": request.endpoint,
            "host": request.host,
            "path": safe_url(request.path),
            "fields": safely(_field_names),
            "user": safely(_user_id),
        },
    )


def _field_names() -> str:
    """The names of the request's form or JSON fields (never their values); small bodies only."""
    length = request.content_length
    if length is None or length > BODY_NAMES_MAX_BYTES:
        return ""
    if request.is_json:
        body = request.get_json(silent=True)
        return safe_keys(body) if isinstance(body, dict) else ""
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return safe_keys(request.form.keys())
    return ""


def _user_id() -> str | None:
    """The id of ``g.user``, or of Flask-Login's ``current_user`` when the app uses it."""
    found = user_id(g.get("user"))
    if found is not None:
        return found
    flask_login = sys.modules.get("flask_login")  # only when the app imported it
    if flask_login is None:
        return None
    try:
        current = flask_login.current_user
        return str(current.get_id()) if current.is_authenticated else None
    except Exception:  # noqa: BLE001 - no login manager on this app, or no user loaded
        return None
