"""The web framework examples, run as a user would, against the Gmail-like server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from smtp_alerts.testing import GmailServer
from tests.helpers import event_counts, server_env

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

pytestmark = pytest.mark.slow


def run_example(name: str, server: GmailServer) -> str:
    """Run ``examples/<name>`` configured for ``server``; the one email's plain text."""
    result = subprocess.run(  # noqa: S603 - our own interpreter and example
        [sys.executable, str(EXAMPLES / name)],
        env=server_env(server),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (received,) = server.messages
    part = received.message.get_body(preferencelist=("plain",))
    assert part is not None
    return f"{received.message['Subject']}\n{part.get_content()}"


def test_flask_example(gmail_server: GmailServer) -> None:
    """Ten requests to one bug: one problem, ten events, user id but no secret."""
    pytest.importorskip("flask")
    text = run_example("flask_app.py", gmail_server)
    assert "KeyError in POST /orders/<int:order_id> (10 events)" in text
    assert "user: 7" in text
    for secret in ("example-session-cookie", "example-password", "example-token", "ada@"):
        assert secret not in text


def test_fastapi_example(gmail_server: GmailServer) -> None:
    """Under a real uvicorn: the KeyError, the handler's 503 and the HTTPException(500)."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    text = run_example("fastapi_app.py", gmail_server)
    assert "KeyError in GET /orders/{order_id} (3 problems, 12 events)" in text
    assert "PaymentDeclinedError in POST /pay/{order_id}" in text
    assert "status: 503" in text
    assert event_counts(gmail_server) == [12]


def test_django_example(gmail_server: GmailServer) -> None:
    """Ten requests to one bug and five bogus hosts: two problems."""
    pytest.importorskip("django")
    text = run_example("django_app.py", gmail_server)
    assert "KeyError in GET /orders/<int:id>/ (2 problems, 15 events)" in text
    assert "DisallowedHost in django.security.DisallowedHost" in text
    assert "example-token" not in text
