"""The one scrubber: what secrets look like, and context made safe to show in an email.

Every integration and every ``context=`` / ``alert_context`` goes through
here, so one denylist decides (as sentry-python's does): keys that name a
secret (``password``, ``token``, ``secret``, ``Authorization``, ``Cookie``,
``X-Api-Key``, ``api_key``, ``session``, ``dsn``...) have their values masked
whatever they are; values that carry a credential whatever their key says
(``Bearer ...``, ``Basic ...``) are masked; and a URL with a password
(``redis://:hunter2@cache:6379``, ``https://user:pw@host``) keeps everything
but the password.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..models import Context
from .printable import printable, printable_repr

__all__ = [
    "CONTEXT_KEY_MAX_CHARS",
    "CONTEXT_MAX_ITEMS",
    "CONTEXT_VALUE_MAX_CHARS",
    "MASKED",
    "is_secret_key",
    "mask_url_credentials",
    "scrub_context",
    "scrub_value",
]

CONTEXT_MAX_ITEMS = 20
"""Most context entries kept per problem (nested mappings count each entry)."""

CONTEXT_KEY_MAX_CHARS = 64
CONTEXT_VALUE_MAX_CHARS = 256
"""Longest context value kept; a context is a few identifiers, not a payload."""

# Keys whose values are secrets: masked, whatever the value (DESIGN section 3).
_SECRET_KEY = re.compile(
    r"passw(or)?d|passphrase|pwd|token|secret|authori[sz]ation|cookie|api[-_]?key|credential|"
    r"private[-_]?key|session|signature|\bauth\b|dsn",
    re.IGNORECASE,
)
# Values that carry a credential whatever their key says.
_SECRET_VALUE = re.compile(r"^\s*(bearer|basic|token)\s+\S", re.IGNORECASE)
MASKED = "[masked]"


# scheme://user:password@host -> scheme://user:[masked]@host (the password only).
_URL_CREDENTIALS = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@")


def is_secret_key(key: str) -> bool:
    """Whether a key (a header, a form field, a setting) names a secret."""
    return _SECRET_KEY.search(key) is not None


def mask_url_credentials(text: str) -> str:
    """``text`` with the password of every URL in it masked."""
    if "://" not in text:
        return text
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group('head')}{MASKED}@", text)


def scrub_value(key: str, value: object, limit: int = CONTEXT_VALUE_MAX_CHARS) -> str:
    """``value`` as safe text for ``key``: masked when the key or the value says secret."""
    if is_secret_key(key):
        return MASKED
    text = printable(value, limit)
    return MASKED if _SECRET_VALUE.match(text) else mask_url_credentials(text)


def scrub_context(context: object) -> Context:
    """A context mapping as safe ``(key, value)`` lines, secrets masked.

    Keys that name a secret (password, token, secret, authorization, cookie,
    api_key...) and values that carry one (``Bearer ...``) are masked; a
    nested mapping is flattened one level (``request.user``); at most
    :data:`CONTEXT_MAX_ITEMS` entries, each clipped. Never raises: a mapping
    that fails to iterate says so in one entry.
    """
    if context is None:
        return ()
    items: list[tuple[str, str]] = []
    try:
        if not isinstance(context, Mapping):
            return (("context", _context_value("context", context)),)
        for key, value in context.items():
            _add_context(items, printable(key, CONTEXT_KEY_MAX_CHARS), value)
            if len(items) >= CONTEXT_MAX_ITEMS:
                break
    except Exception as error:  # noqa: BLE001 - odd input degrades, never fails
        items.append(("<context>", f"<unreadable: {printable_repr(error)}>"))
    return tuple(items[:CONTEXT_MAX_ITEMS])


def _add_context(items: list[tuple[str, str]], key: str, value: object) -> None:
    if isinstance(value, Mapping) and not _SECRET_KEY.search(key):
        for inner_key, inner_value in value.items():
            full_key = f"{key}.{printable(inner_key, CONTEXT_KEY_MAX_CHARS)}"
            items.append((full_key, _context_value(full_key, inner_value)))
            if len(items) >= CONTEXT_MAX_ITEMS:
                return
        return
    items.append((key, _context_value(key, value)))


def _context_value(key: str, value: object) -> str:
    return scrub_value(key, value)
