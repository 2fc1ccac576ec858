"""ASGI (Starlette, FastAPI): a failed request as one alert keyed by route template and exception.

Two hooks, because a Starlette app answers a failed request in two places:

- :class:`AlertMiddleware`, a pure ASGI middleware, sees every exception
  that leaves the app (Starlette's ``ServerErrorMiddleware`` answers 500 and
  raises it again, precisely so that servers and middleware outside it see
  it). It works around any ASGI app. It does not depend on logging: under
  uvicorn's default logging config ``uvicorn.error`` does not propagate, so a
  root :class:`~smtp_alerts.AlertHandler` never hears of these.
- :func:`install` puts that middleware outermost (outside
  ``ServerErrorMiddleware``) and wraps the app's exception handlers, so that
  an ``HTTPException(500)`` or a custom handler that answers 500 or more
  (``@app.exception_handler(PaymentError)`` returning 503) is reported too;
  the exception stops there and would otherwise be invisible.

The key is the method, the route template after routing
(``scope["route"].path``: ``/orders/{order_id}``) and the exception type, so N
requests to one bug are one problem with N events. An ``HTTPException(500)``
raised from another exception is keyed by that one; without a chain, by the
route and the status. The context names the method, route, status, host,
path without its query and the user's id, never a header, a cookie or the body.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from ._common import require, safe_url
from ._web import NO_ROUTE, WebFailure, masked_path, user_id

require("starlette", package="starlette", extra="asgi")

from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import PlainTextResponse, Response  # noqa: E402
from starlette.routing import Match  # noqa: E402

if TYPE_CHECKING:
    from starlette.applications import Starlette

    import smtp_alerts

__all__ = ["AlertMiddleware", "install"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Handler = Callable[[Request, Exception], Any]

# The exception a wrapped handler reported for this request: not again on the way out.
_REPORTED = "smtp_alerts.reported"
_WRAPPED = "__smtp_alerts_wrapped__"
_INSTALLED = "_smtp_alerts_install"


class AlertMiddleware:
    """Report the exceptions that leave an ASGI app, then let them go on.

    Args:
        app: any ASGI application.
        engine: the engine to report to; the process's default engine
            (:func:`smtp_alerts.get_engine`, from ``SMTP_ALERTS_*``) when omitted.
    """

    def __init__(self, app: ASGIApp, *, engine: smtp_alerts.Engine | None = None) -> None:
        self.app = app
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; an exception it raises is reported and raised again."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        status: int | None = None

        async def watch_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message.get("status")
            await send(message)

        try:
            await self.app(scope, receive, watch_status)
        except Exception as exc:
            if scope.get(_REPORTED) is not exc:
                describe_scope(scope, status or 500, self.app).report(self.engine, exc)
            raise


def install(app: Starlette, *, engine: smtp_alerts.Engine | None = None) -> None:
    """Report ``app``'s failed requests: the one line for Starlette and FastAPI.

    The middleware and the handlers' wrappers are put in place when the app
    builds its middleware stack (on its first request), so exception handlers
    registered after this call are covered too. Calling it again only changes
    the engine.

    Args:
        app: a Starlette or FastAPI application.
        engine: the engine to report to; the process's default engine when omitted.

    Raises:
        TypeError: ``app`` is not a Starlette application (wrap it in
            :class:`AlertMiddleware` instead).
    """
    if not hasattr(app, "build_middleware_stack") or not hasattr(app, "exception_handlers"):
        raise TypeError(
            f"install() takes a Starlette or FastAPI app, not {type(app).__name__}: "
            "wrap any other ASGI app in smtp_alerts.integrations.asgi.AlertMiddleware(app)"
        )
    previous = getattr(app, _INSTALLED, None)
    build = previous.original if previous is not None else app.build_middleware_stack
    installed = _Installed(app, build, engine)
    setattr(app, _INSTALLED, installed)
    # An instance attribute: Starlette calls self.build_middleware_stack() on its first request.
    app.build_middleware_stack = installed.build  # type: ignore[method-assign]
    app.middleware_stack = None


class _Installed:
    """One app's set-up by :func:`install`: its own stack builder, wrapped."""

    def __init__(
        self, app: Starlette, original: Callable[[], ASGIApp], engine: smtp_alerts.Engine | None
    ) -> None:
        self.app = app
        self.original = original
        self.engine = engine

    def build(self) -> ASGIApp:
        """The app's middleware stack, its handlers reporting, inside :class:`AlertMiddleware`."""
        handlers = self.app.exception_handlers
        if not any(_handles_http_exception(key) for key in handlers):
            handlers[HTTPException] = _default_http_exception  # Starlette's own, made visible
        for key, handler in list(handlers.items()):
            # 500 and Exception are ServerErrorMiddleware's: their exception leaves the app.
            if key not in (500, Exception) and not getattr(handler, _WRAPPED, False):
                handlers[key] = _reporting(handler, self)
        return AlertMiddleware(self.original(), engine=self.engine)


def _handles_http_exception(key: object) -> bool:
    """Whether the ExceptionMiddleware handler registered as ``key`` takes an HTTPException."""
    # Exception's handler is ServerErrorMiddleware's: HTTPException never reaches it.
    return isinstance(key, type) and key is not Exception and issubclass(HTTPException, key)


async def _default_http_exception(_request: Request, exc: Exception) -> Response:
    """Starlette's answer to an HTTPException (``ExceptionMiddleware.http_exception``)."""
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
    if exc.status_code in {204, 304}:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)


def _reporting(handler: Handler, installed: _Installed) -> Handler:
    """``handler``, reporting the exceptions it answers with a status of 500 or more."""

    async def report_server_errors(request: Request, exc: Exception) -> Any:
        if _is_async(handler):
            response = await handler(request, exc)
        else:
            response = await run_in_threadpool(handler, request, exc)
        status = getattr(response, "status_code", None)
        if isinstance(status, int) and status >= 500:
            scope = request.scope
            failure = describe_scope(scope, status, installed.app)
            http_error = isinstance(exc, HTTPException)
            key = failure.answered_key(exc, status, http_error=http_error)
            # The engine of the latest install(): this wrapper may come from an earlier one.
            current = getattr(installed.app, _INSTALLED, installed)
            failure.report(current.engine, exc, key=key)
            scope[_REPORTED] = exc
        return response

    setattr(report_server_errors, _WRAPPED, True)
    return report_server_errors


def _is_async(handler: object) -> bool:
    while isinstance(handler, functools.partial):
        handler = handler.func
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


def describe_scope(scope: Scope, status: int | None, app: object) -> WebFailure:
    """A request's scope as a :class:`WebFailure`; never raises."""
    try:
        method = scope.get("method") or scope["type"].upper()
        path = str(scope.get("path") or "")
        return WebFailure(
            "asgi",
            method,
            route_template(scope, app) or masked_path(path) or NO_ROUTE,
            status,
            {
                "host": _header(scope, b"host"),
                "path": safe_url(path),
                "user": user_id(scope.get("user")),
            },
        )
    except Exception:  # noqa: BLE001 - an odd scope still makes an alert
        return WebFailure("asgi", "?", NO_ROUTE, status)


def route_template(scope: Scope, app: object) -> str | None:
    """The template of the route that took the request (``/orders/{order_id}``), if any.

    Starlette's router names it in ``scope["route"]`` (inside a ``Mount``,
    after the mount's own path); older versions do not, so the app's routes
    are asked which one matches.
    """
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return _mount_prefix(scope) + path
    for route in getattr(scope.get("app", app), "routes", ()):
        matches = getattr(route, "matches", None)
        if matches is not None and matches(scope)[0] is Match.FULL:
            found = getattr(route, "path", None)
            return found if isinstance(found, str) else None
    return None


def _mount_prefix(scope: Scope) -> str:
    """The path a ``Mount`` matched before the route (``/api``); Starlette keeps it in root_path."""
    if "app_root_path" not in scope:  # set by a Mount only
        return ""
    root, app_root = str(scope.get("root_path", "")), str(scope["app_root_path"])
    return root[len(app_root) :] if root.startswith(app_root) else ""


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return bytes(value).decode("latin-1")
    return None
