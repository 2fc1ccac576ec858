"""What the web framework tests share: an in-memory engine, the emails' text, planted secrets."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from smtp_alerts import AlertHandler, Engine, Settings
from smtp_alerts.models import Problem
from smtp_alerts.transports import MemoryTransport

# Secrets a request carries or an app is configured with: no email may contain one.
COOKIE = "planted-cookie-7f3a"
BEARER = "planted-bearer-91c2"
PASSWORD = "planted-password-5d8e"
SECRET_SETTING = "planted-setting-secret-0b4f"
PLANTED = (COOKIE, BEARER, PASSWORD, SECRET_SETTING)


@dataclass
class Sent:
    """An in-memory engine and what it sent."""

    engine: Engine
    transport: MemoryTransport

    def flush(self) -> None:
        assert self.engine.flush(timeout=10)

    def problems(self) -> list[Problem]:
        """Every problem row of every digest sent so far."""
        self.flush()
        return [p for m in self.transport.sent if m.digest for p in m.digest.problems]

    def text(self) -> str:
        """Every email sent so far, headers and both parts, as one text."""
        self.flush()
        return "\n".join(message.email.as_string() for message in self.transport.sent)


@contextmanager
def memory_engine() -> Iterator[Sent]:
    """An engine on an in-memory channel, also behind a root ``AlertHandler`` (as apps have it).

    The root handler is there to show that what the framework logs about an
    exception its integration reported is not counted a second time.
    """
    transport = MemoryTransport()
    settings = Settings(to=["oncall@example.com"], from_="alerts@example.com", group_wait="1h")
    engine = Engine(settings, transport=transport, spool=False)
    handler = AlertHandler(engine=engine)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield Sent(engine, transport)
    finally:
        root.removeHandler(handler)
        handler.close()
        engine.close()


def assert_named_and_safe(sent: Sent, subject: str, *absent: str) -> None:
    """The emails name ``subject`` and carry none of the planted secrets, nor ``absent``."""
    text = sent.text()
    assert subject in text
    for secret in (*PLANTED, *absent):
        assert secret not in text


def context_of(problem: Problem) -> dict[str, str]:
    """A problem's context table as a dict."""
    return dict(problem.alert.context)


def import_without(module: str, *hidden: str) -> subprocess.CompletedProcess[str]:
    """Import ``module`` in a fresh interpreter where the ``hidden`` packages cannot be imported."""
    code = f"""
        import sys
        for name in {hidden!r}:
            sys.modules[name] = None
        try:
            import {module}
        except ImportError as error:
            print(error)
        else:
            print("imported")
    """
    return subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", textwrap.dedent(code)],
        env={k: v for k, v in os.environ.items() if not k.startswith("SMTP_ALERTS_")},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
