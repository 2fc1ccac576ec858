"""pytest fixtures for smtp-alerts, registered as a ``pytest11`` plugin.

Installing smtp-alerts makes these fixtures available in every test suite:

- ``gmail_server``: a :class:`~smtp_alerts.testing.GmailServer` like
  ``smtp.gmail.com:587`` (STARTTLS required before AUTH);
- ``gmail_server_tls``: one like ``smtp.gmail.com:465`` (implicit TLS).

Each runs for one test. This module is imported by every pytest run of
every project that has smtp-alerts installed, so it imports nothing heavy:
the server (aiosmtpd, trustme) loads only when a test asks for a fixture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._server import GmailServer


@pytest.fixture
def gmail_server() -> Iterator[GmailServer]:
    """A Gmail-like SMTP server on 127.0.0.1 that requires STARTTLS, like port 587."""
    from ._server import GmailServer  # noqa: PLC0415 - loaded only when a test uses it

    with GmailServer(mode="starttls") as server:
        yield server


@pytest.fixture
def gmail_server_tls() -> Iterator[GmailServer]:
    """A Gmail-like SMTP server on 127.0.0.1 with implicit TLS, like port 465."""
    from ._server import GmailServer  # noqa: PLC0415 - loaded only when a test uses it

    with GmailServer(mode="tls") as server:
        yield server
