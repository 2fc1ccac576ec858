"""Flask: an unhandled view exception as one alert keyed by URL rule and exception.

``init_app(app)`` listens to Flask's ``got_request_exception`` signal, which
Flask sends for every exception no error handler took, before it logs
``"Exception on /orders/7 [GET]"`` (text formatted before the call, so each
path would be a problem of its own). The alert is keyed by the URL rule
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

import sys
from typing import TYPE_CHECKING, Any

from ._common import require, safe_keys, safe_url
from ._web import NO_ROUTE, WebFailure, masked_path, user_id

require("flask", package="flask", extra="flask")

from flask import Flask, g, got_request_exception, has_request_context, request  # noqa: E402

if TYPE_CHECKING:
    import smtp_alerts

__all__ = ["init_app"]

_EXTENSION = "smtp_alerts"

#: Bodies larger than this are not parsed for their field names (the view did not need them).
BODY_NAMES_MAX_BYTES = 64 * 1024


def init_app(app: Flask, *, engine: smtp_alerts.Engine | None = None) -> None:
    """Report ``app``'s unhandled exceptions as alerts.

    Calling it again replaces the earlier set-up (no exception is reported twice).

    Args:
        app: the Flask application.
        engine: the engine to report to; the process's default engine
            (:func:`smtp_alerts.get_engine`, from ``SMTP_ALERTS_*``) when omitted.
    """
    previous = app.extensions.pop(_EXTENSION, None)
    if previous is not None:
        got_request_exception.disconnect(previous, sender=app)

    def on_exception(_sender: Flask, exception: BaseException, **_: Any) -> None:
        try:
            failure = describe_request()
        except Exception:  # noqa: BLE001 - an odd request still makes an alert
            failure = WebFailure("flask", "?", NO_ROUTE, 500)
        failure.report(engine, exception)

    got_request_exception.connect(on_exception, sender=app, weak=False)
    app.extensions[_EXTENSION] = on_exception


def describe_request() -> WebFailure:
    """The current request as a :class:`WebFailure` (status 500: Flask gave up on it)."""
    if not has_request_context():  # pragma: no cover - Flask sends the signal in a request
        return WebFailure("flask", "?", NO_ROUTE, 500)
    rule = request.url_rule
    route = rule.rule if rule is not None else masked_path(request.path)
    return WebFailure(
        "flask",
        request.method,
        route,
        500,
        {
            "endpoint": request.endpoint,
            "host": request.host,
            "path": safe_url(request.path),
            "fields": _field_names(),
            "user": _user_id(),
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
