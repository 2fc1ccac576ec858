"""Django: a failed request or a security event as one alert keyed by route and exception.

Enabled by ``"smtp_alerts.integrations.django"`` in ``INSTALLED_APPS``; the
app's ``ready()`` calls :func:`install`. Two hooks, each for a reason:

- Django's ``got_request_exception`` signal: sent for every exception no
  view or middleware handled, with the request at hand (under ASGI too:
  asgiref raises the exception again in the thread that answers it), before
  Django logs "Internal Server Error: /orders/7" (always from
  ``django/utils/log.py``, without the request). :meth:`Engine.alert` marks
  the exception, so that log record is not counted again by a root
  :class:`~smtp_alerts.AlertHandler`.
- a handler on the ``django.security`` loggers: ``DisallowedHost`` and the
  other ``SuspiciousOperation`` answers (400) are keyed by their type, not by
  their text, so five bogus hosts are one problem with five events.

The key is the method, the route template (``request.resolver_match.route``,
``orders/<int:id>/``) and the exception type. The context names the method,
route, view, status, host, path without its query, the names of the POST
fields and the user's id (only a user the request already loaded: looking it
up could be what failed), never a cookie, a header, a field's value or the
user's name. Besides the one scrubber, the values Django's own
``SafeExceptionReporterFilter`` hides (``SECRET_KEY``, ``*_TOKEN``,
``DATABASES[...]["PASSWORD"]``...: its ``hidden_settings`` pattern, or the
filter named by ``DEFAULT_EXCEPTION_REPORTER_FILTER``) are replaced by its
``cleansed_substitute`` wherever they appear in the alert's message or context.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import TYPE_CHECKING, Any

from .._common import exception_key, require, safe_keys, safe_url
from .._web import NO_ROUTE, WebFailure, safely, user_id

require("django", package="django", extra="django")

from django.conf import settings  # noqa: E402
from django.core.signals import got_request_exception  # noqa: E402
from django.utils.functional import empty  # noqa: E402
from django.views.debug import get_default_exception_reporter_filter  # noqa: E402

if TYPE_CHECKING:
    import smtp_alerts

__all__ = ["install"]

#: Bodies larger than this are not parsed for their field names.
BODY_NAMES_MAX_BYTES = 64 * 1024

_DISPATCH_UID = "smtp_alerts.integrations.django"


class _State:
    """The integration's set-up: the engine (None: the default one) and the secrets to hide."""

    engine: smtp_alerts.Engine | None = None
    secrets: tuple[str, ...] = ()
    substitute: str = "********************"


def install(*, engine: smtp_alerts.Engine | None = None) -> None:
    """Report failed requests and security events; the app's ``ready()`` calls it.

    Calling it again only changes the engine (no hook is added twice).

    Args:
        engine: the engine to report to; the process's default engine
            (:func:`smtp_alerts.get_engine`, from ``SMTP_ALERTS_*``) when omitted.
    """
    _State.engine = engine
    _State.secrets, _State.substitute = _hidden_values()
    got_request_exception.connect(_on_request_exception, dispatch_uid=_DISPATCH_UID)
    security = logging.getLogger("django.security")
    if not any(isinstance(handler, _SecurityHandler) for handler in security.handlers):
        security.addHandler(_SecurityHandler(logging.ERROR))


def _on_request_exception(_sender: object = None, request: Any = None, **_: Any) -> None:
    """Django gave up on a request's exception (it answers 500 next): report it."""
    exc = sys.exc_info()[1]
    if exc is not None and request is not None:
        _report(_describe(request, 500), exc)


class _SecurityHandler(logging.Handler):
    """Reports ``django.security.*`` error records keyed by their exception type, not their text."""

    def emit(self, record: logging.LogRecord) -> None:
        """Report ``record``'s exception; never raises into Django's request handling."""
        try:
            exc = record.exc_info[1] if record.exc_info else None
            if exc is None:
                return  # nothing to key it by: a root AlertHandler takes it as a record
            request = getattr(record, "request", None)
            failure = (
                _describe(request, getattr(record, "status_code", None))
                if request is not None
                else WebFailure("django", "?", NO_ROUTE)
            )
            key = exception_key(record.name, exc)
            _report(failure, exc, key=key, name=record.name, level=record.levelno)
        except Exception:  # noqa: BLE001 - logging's own way: a line on stderr
            self.handleError(record)


def _report(
    failure: WebFailure,
    exc: BaseException,
    *,
    key: str | None = None,
    name: str | None = None,
    level: int = logging.ERROR,
) -> None:
    failure.report(
        _State.engine,
        exc,
        key=key,
        name=name,
        level=level,
        clean=_cleansed,
    )


def _describe(request: Any, status: int | None) -> WebFailure:
    """A Django request as a :class:`WebFailure`; never raises."""
    try:
        match = getattr(request, "resolver_match", None)
        route = getattr(match, "route", None)
        meta = getattr(request, "META", {})
        return WebFailure(
            "django",
            str(request.method),
            f"/{route}" if isinstance(route, str) else NO_ROUTE,
            status,
            {
                "view": getattr(match, "view_name", None),
                # Not request.get_host(): it raises for the hosts DisallowedHost is about.
                "host": meta.get("HTTP_HOST") or meta.get("SERVER_NAME"),
                "path": safe_url(str(request.path)),
                "fields": safely(lambda: _field_names(request, meta)),
                "user": safely(lambda: user_id(_loaded_user(request))),
            },
        )
    except Exception:  # noqa: BLE001 - an odd request still makes an alert
        return WebFailure("django", "?", NO_ROUTE, status)


def _field_names(request: Any, meta: dict[str, Any]) -> str:
    """The names of a small form POST's fields (never their values)."""
    if request.method != "POST" or not str(meta.get("CONTENT_TYPE", "")).startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        return ""
    try:
        length = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return ""
    if length > BODY_NAMES_MAX_BYTES:
        return ""
    reporter_filter = get_default_exception_reporter_filter()
    return safe_keys(reporter_filter.get_post_parameters(request).keys())


def _loaded_user(request: Any) -> object:
    """The request's user if the request already loaded it; never a database query here."""
    user = request.__dict__.get("user")
    wrapped = getattr(user, "_wrapped", None)
    if wrapped is None:
        return user  # a plain object (or no user at all)
    if wrapped is not empty:
        return wrapped
    return request.__dict__.get("_cached_user")


def _hidden_values() -> tuple[tuple[str, ...], str]:
    """The values Django's exception reporter filter hides among the settings, and its mask."""
    reporter_filter = get_default_exception_reporter_filter()
    substitute = str(getattr(reporter_filter, "cleansed_substitute", _State.substitute))
    found: set[str] = set()
    for name in dir(settings):
        if not name.isupper():
            continue
        try:
            # Reading a deprecated setting warns (Django 6: EMAIL_*): not our
            # users' concern here. An unset one raises: nothing to hide.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = getattr(settings, name)
            _collect(value, reporter_filter.cleanse_setting(name, value), substitute, found)
        except Exception:  # noqa: BLE001, S112 - an unreadable setting hides nothing
            continue
    # Longest first, so a secret that contains another is replaced whole; short
    # values ("", "1") would mask ordinary words.
    return tuple(sorted((v for v in found if len(v) >= 6), key=len, reverse=True)), substitute


def _collect(value: object, cleansed: object, substitute: str, found: set[str]) -> None:
    """Add to ``found`` each text of ``value`` that the filter replaced by ``substitute``."""
    if cleansed == substitute and value != substitute:
        if isinstance(value, str):
            found.add(value)
        elif isinstance(value, (dict, list, tuple)):
            _collect_all(value, found)
        return
    if isinstance(value, dict) and isinstance(cleansed, dict):
        for key, inner in value.items():
            _collect(inner, cleansed.get(key), substitute, found)
    elif isinstance(value, (list, tuple)) and isinstance(cleansed, (list, tuple)):
        for inner, inner_cleansed in zip(value, cleansed, strict=False):
            _collect(inner, inner_cleansed, substitute, found)


def _collect_all(value: object, found: set[str]) -> None:
    """Every text inside a hidden setting that is a mapping or a list."""
    if isinstance(value, str):
        found.add(value)
    elif isinstance(value, dict):
        for inner in value.values():
            _collect_all(inner, found)
    elif isinstance(value, (list, tuple)):
        for inner in value:
            _collect_all(inner, found)


def _cleansed(text: str) -> str:
    """``text`` with every hidden setting's value replaced by the filter's substitute."""
    for secret in _State.secrets:
        if secret in text:
            text = text.replace(secret, _State.substitute)
    return text
