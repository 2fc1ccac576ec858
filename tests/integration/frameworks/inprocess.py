"""An in-process engine on a memory channel, and what its emails say (loguru, structlog)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from smtp_alerts import Engine, Settings
from smtp_alerts.models import Problem
from smtp_alerts.transports import MemoryTransport


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
        """Every email as sent (headers, plain and HTML parts)."""
        return "\n".join(message.email.as_string() for message in self.transport.sent)

    @property
    def plain(self) -> str:
        """The plain-text parts of every email."""
        parts = [m.email.get_body(preferencelist=("plain",)) for m in self.transport.sent]
        return "\n".join(part.get_content() for part in parts if part is not None)


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
