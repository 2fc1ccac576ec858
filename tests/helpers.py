"""Small builders and probes shared by the tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
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


def server_env(server: GmailServer, **extra: str) -> dict[str, str]:
    """This environment without any SMTP_ALERTS_* of its own, configured for ``server``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTP_ALERTS_")}
    return {**env, **server.environ(**{"SHUTDOWN_TIMEOUT": "10s", **extra})}


def run_code(
    code: str, env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) with ``python -c`` in ``env``; its output captured."""
    return subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def next_start(env: dict[str, str]) -> None:
    """A later process on the same SPOOL_DIR that only starts and exits: it sends what was kept."""
    result = run_code("import smtp_alerts\nsmtp_alerts.get_engine().close()\n", env)
    assert result.returncode == 0, result.stderr


def wait_for(condition: Callable[[], object], seconds: float = 20.0) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass; whether it held."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def event_counts(server: GmailServer) -> list[int]:
    """The events each email ``server`` received reports (its rows' "events  N events" lines)."""
    found = []
    for received in server.messages:
        part = received.message.get_body(preferencelist=("plain",))
        assert part is not None
        rows = re.findall(r"^ +events +([\d,]+) event", part.get_content(), re.MULTILINE)
        found.append(sum(int(row.replace(",", "")) for row in rows))
    return found


def start_script(code: str, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """Start ``code`` (dedented) with ``python -c`` in ``env``; its stderr piped, as text."""
    return subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


STEPS = """
import pathlib, sys, time
step = pathlib.Path(sys.argv[1])

def wait(name):
    deadline = time.monotonic() + 60
    while not (step / name).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
"""
"""The start of a script that waits, at each ``wait(name)``, for the test to touch
``name`` in the folder given as its first argument."""
