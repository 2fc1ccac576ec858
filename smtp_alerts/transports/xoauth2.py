"""OAuth2 access tokens for AUTH XOAUTH2, and when to ask for a fresh one.

A token provider is any callable, sync or async, returning one of:

- a plain ``str``: an access token assumed to live :data:`GMAIL_TOKEN_LIFETIME`
  (Google's access tokens last one hour);
- an :class:`OAuthToken`, which says when it expires;
- an object with ``.token`` and ``.expiry`` (a naive UTC or an aware
  :class:`~datetime.datetime`, or None), such as google-auth's
  ``Credentials`` after ``refresh()``.

:class:`TokenSource` keeps the current token and asks the provider again
:data:`TOKEN_REFRESH_MARGIN` before it expires. No I/O here beyond calling
the provider; time comes from an injected clock.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

from .._util.clock import SYSTEM_CLOCK, Clock

__all__ = [
    "GMAIL_TOKEN_LIFETIME",
    "TOKEN_REFRESH_MARGIN",
    "CredentialsLike",
    "InvalidTokenError",
    "OAuthToken",
    "TokenLike",
    "TokenProvider",
    "TokenSource",
    "as_token",
]

GMAIL_TOKEN_LIFETIME = 3600.0
"""Seconds a plain-string access token is assumed to live (Google's access tokens: one hour)."""
TOKEN_REFRESH_MARGIN = 300.0
"""A token is renewed, and its connection retired, this many seconds before it expires."""


@dataclass(frozen=True, slots=True)
class OAuthToken:
    """An OAuth2 access token and when it expires.

    The token itself never appears in the ``repr``.

    Attributes:
        access_token: the bearer token sent with AUTH XOAUTH2.
        expires_at: when it stops being valid, in seconds since the epoch.

    Raises:
        ValueError: an empty token, or an expiry that is not a finite number.
    """

    access_token: str = field(repr=False)
    expires_at: float

    def __post_init__(self) -> None:
        if not self.access_token:
            raise ValueError("an OAuthToken needs a non-empty access_token")
        if not math.isfinite(self.expires_at):
            raise ValueError("OAuthToken.expires_at must be a finite number of epoch seconds")


class InvalidTokenError(ValueError):
    """A token provider returned nothing usable; the message never holds a token."""


class CredentialsLike(Protocol):
    """What is read from google-auth's ``Credentials`` (or any look-alike)."""

    @property
    def token(self) -> str | None:
        """The current access token."""

    @property
    def expiry(self) -> datetime | None:
        """When it expires: naive UTC (google-auth's convention) or aware; None if unknown."""


TokenLike = str | OAuthToken | CredentialsLike
"""What a token provider may return."""
TokenProvider = Callable[[], TokenLike | Awaitable[TokenLike]]
"""A callable returning a :data:`TokenLike`, or an awaitable of one."""


def as_token(value: object, *, now: float) -> OAuthToken:
    """Turn what a provider returned into an :class:`OAuthToken`.

    Args:
        value: a ``str``, an :class:`OAuthToken`, or an object with ``.token``
            and ``.expiry``.
        now: the current time, for a token whose lifetime is not stated.

    Returns:
        The token.

    Raises:
        InvalidTokenError: no usable token.
    """
    if isinstance(value, OAuthToken):
        return value
    if isinstance(value, str):
        if not value:
            raise InvalidTokenError("the OAuth token provider returned no token")
        return OAuthToken(value, now + GMAIL_TOKEN_LIFETIME)
    token = getattr(value, "token", None)
    if not isinstance(token, str) or not token:
        if hasattr(value, "token"):
            raise InvalidTokenError("the OAuth token provider returned credentials without a token")
        raise InvalidTokenError(
            f"the OAuth token provider returned a {type(value).__name__}, not a token "
            "(expected a str, an OAuthToken, or credentials with .token and .expiry)"
        )
    expiry = getattr(value, "expiry", None)
    if expiry is None:
        return OAuthToken(token, now + GMAIL_TOKEN_LIFETIME)
    if not isinstance(expiry, datetime):
        raise InvalidTokenError("the OAuth credentials' .expiry is not a datetime")
    if expiry.tzinfo is None:  # google-auth keeps naive datetimes in UTC
        expiry = expiry.replace(tzinfo=timezone.utc)
    return OAuthToken(token, expiry.timestamp())


class TokenSource:
    """The current access token from a provider, renewed before it expires.

    Args:
        provider: the token provider (sync or async).
        clock: the current time, epoch seconds.
        margin: renew this many seconds before the token expires.
    """

    def __init__(
        self,
        provider: TokenProvider,
        *,
        clock: Clock = SYSTEM_CLOCK,
        margin: float = TOKEN_REFRESH_MARGIN,
    ) -> None:
        self._provider = provider
        self._clock = clock
        self._margin = margin
        self._token: OAuthToken | None = None

    def usable_until(self, token: OAuthToken) -> float:
        """When a connection logged in with ``token`` must be retired (expiry minus margin)."""
        return token.expires_at - self._margin

    async def get(self) -> OAuthToken:
        """The cached token while it is fresh; otherwise a new one from the provider.

        Raises:
            InvalidTokenError: the provider returned no usable token.
            Exception: whatever the provider raised.
        """
        token = self._token
        if token is not None and self._clock() < self.usable_until(token):
            return token
        self._token = None
        value: object = self._provider()
        if inspect.isawaitable(value):
            value = await value
        self._token = token = as_token(value, now=self._clock())
        return token

    def invalidate(self) -> None:
        """Forget the cached token (the server refused it): the next :meth:`get` asks again."""
        self._token = None
