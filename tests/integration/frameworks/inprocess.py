"""An in-process engine on a memory channel, and what its emails say (loguru, structlog)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage

import pytest

from smtp_alerts import Engine, Settings
from smtp_alerts.models import Problem
from smtp_alerts.testing import GmailServer
from smtp_alerts.transports import MemoryTransport
from tests.helpers import event_counts
from tests.integration.test_examples import run_example


@dataclass
class Captured:
    """An engine whose emails stay in memory, and what they said once flushed."""

    engine: Engine
    transport: MemoryTransport

    def flushed(self) -> Captured:
        assert self.engine.flush(10)
        return self

    @property
    def problems(self) -> list[Problem]:
        return [p for m in self.transport.sent if m.digest for p in m.digest.problems]

    @property
    def raw(self) -> str:
        """Every email's headers and decoded parts (plain and HTML)."""
        return "\n".join(email_text(message.email) for message in self.transport.sent)

    @property
    def plain(self) -> str:
        """The plain-text parts of every email."""
        return plain_text(message.email for message in self.transport.sent)


def email_text(email: EmailMessage) -> str:
    """An email's headers and every part decoded (a body may be base64 on the wire)."""
    headers = "\n".join(f"{name}: {value}" for name, value in email.items())
    parts = [
        str(part.get_content())
        for part in email.walk()
        if not part.is_multipart() and isinstance(part, EmailMessage)
    ]
    return "\n".join([headers, *parts])


def plain_text(emails: Iterable[EmailMessage]) -> str:
    """The plain-text parts of ``emails``, one after the other."""
    parts = [email.get_body(preferencelist=("plain",)) for email in emails]
    return "\n".join(str(part.get_content()) for part in parts if part is not None)


def example_email(name: str, events: int) -> tuple[EmailMessage, str]:
    """Run ``examples/<name>`` against a Gmail-like server: its one email (of ``events``
    events) and the example's output."""
    with GmailServer() as server:
        result = run_example(name, server)
        assert result.returncode == 0, result.stderr
        assert event_counts(server) == [events]
        (received,) = server.messages
    return received.message, result.stdout + result.stderr


@pytest.fixture
def captured() -> Iterator[Captured]:
    """An engine with a long group wait (only a flush sends), no spool."""
    settings = Settings(to=["oncall@example.com"], from_="alerts@example.com", group_wait="10m")
    engine = Engine(settings, transport=(transport := MemoryTransport()), spool=False)
    yield Captured(engine, transport)
    engine.close(5)


def import_without(module: str, integration: str) -> subprocess.CompletedProcess[str]:
    """Import ``smtp_alerts.integrations.<integration>`` with ``module`` hidden."""
    code = f"""
        import sys
        sys.modules[{module!r}] = None  # as if not installed
        try:
            import smtp_alerts.integrations.{integration}
        except ImportError as exc:
            print(exc)
        else:
            print("imported")
    """
    return subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=dict(os.environ),
    )
