"""Small builders and probes shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from smtp_alerts.models import OutgoingMessage
from smtp_alerts.testing import GmailServer

SENDER = "alerts@example.com"


def make_message(
    recipients: Sequence[str] = ("oncall@example.com",),
    *,
    subject: str = "[ERROR] db is down",
    body: str = "The database is down.\n",
) -> OutgoingMessage:
    """A small digest email, built by hand (the renderer is tested on its own)."""
    email = EmailMessage()
    email["From"] = SENDER
    email["To"] = ", ".join(recipients[:3])
    email["Subject"] = subject
    email["Date"] = formatdate()
    email["Message-ID"] = message_id = make_msgid(domain="example.com")
    email["Auto-Submitted"] = "auto-generated"
    email.set_content(body)
    return OutgoingMessage(
        message_id=message_id,
        email=email,
        sender=SENDER,
        recipients=tuple(recipients),
        title=subject,
        summary=body.strip(),
    )


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (killed, not yet reaped by init) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        state = stat.read_text(encoding="ascii").rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: trust kill(0)
    return state != "Z"


def run_script(
    tmp_path: Path, source: str, server: GmailServer, *, timeout: float = 60, **overrides: str
) -> subprocess.CompletedProcess[str]:
    """Write ``source`` to a file and run it as a program configured for ``server``."""
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(source), encoding="utf-8")
    return subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(script)],
        env={**os.environ, **server.environ(**overrides)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
