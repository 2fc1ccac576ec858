"""A Redis URL read without a client: where it points, and whether it carries a password.

The settings validate ``REDIS_URL`` with it and the Redis store names its
server with it, so that a message never needs the URL itself (which may hold
a password).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from .net import is_loopback

__all__ = ["RedisTarget", "parse_redis_url"]

_SCHEMES = {"redis": 6379, "rediss": 6379}


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """What a Redis URL says, the password left out.

    Attributes:
        tls: ``rediss://``: TLS, the server certificate verified.
        host: the server's host name or address.
        port: its port.
        has_password: the URL carries a password (or a user and password).
    """

    tls: bool
    host: str
    port: int
    has_password: bool

    @property
    def where(self) -> str:
        """``host:port``, for messages (never the URL: it may hold a password)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def clear_text_credential(self) -> bool:
        """A password would cross an unencrypted connection to another machine."""
        return self.has_password and not self.tls and not is_loopback(self.host)


def parse_redis_url(url: str) -> RedisTarget:
    """Read ``redis://[[user]:password@]host[:port][/db]`` or ``rediss://...``.

    Raises:
        ValueError: not such a URL; the message never repeats the URL.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError("not a Redis URL (redis://host:6379/0 or rediss://...)") from None
    if parts.scheme not in _SCHEMES:
        raise ValueError("not a Redis URL: use redis://host:6379/0, or rediss://... for TLS")
    if not parts.hostname:
        raise ValueError("a Redis URL needs a host: redis://host:6379/0")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ValueError("the database of a Redis URL is a number: redis://host:6379/0")
    return RedisTarget(
        tls=parts.scheme == "rediss",
        host=parts.hostname,
        port=port or _SCHEMES[parts.scheme],
        has_password=bool(parts.password),
    )
