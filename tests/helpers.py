"""Small builders shared by the tests."""

from __future__ import annotations

from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from smtp_alerts.models import OutgoingMessage

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
