"""A problem's timeline end to end: alerts over minutes reach the Gmail-like server in a
digest whose object carries them per minute (the renderer draws them; its text is not
asserted here)."""

from __future__ import annotations

from smtp_alerts import Engine
from smtp_alerts.models import OutgoingMessage
from smtp_alerts.testing import GmailServer, ManualClock
from smtp_alerts.transports import Transport
from smtp_alerts.transports.smtp import SMTPTransport
from tests.helpers import wait_for

T0 = 1_800_000_000.0 - 1_800_000_000.0 % 60  # on a minute


class Recording(Transport):
    """The real SMTP channel, keeping what it sent (the digest objects)."""

    name = "recording"

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.sent: list[OutgoingMessage] = []

    async def send(self, message: OutgoingMessage, /) -> None:
        await self.inner.send(message)
        self.sent.append(message)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_the_digest_sent_carries_each_problems_occurrences_per_minute(
    gmail_server: GmailServer,
) -> None:
    settings = gmail_server.settings(group_wait="1h")
    smtp = SMTPTransport(
        host=settings.host,
        port=settings.port,
        security="starttls",
        username=gmail_server.username,
        password=gmail_server.password,
        ca_file=gmail_server.ca_file,
    )
    channel = Recording(smtp)
    clock = ManualClock(T0)
    engine = Engine(settings, transport=channel, clock=clock)
    # The engine counts a drain's repeats at the latest one's time: each minute's
    # are taken in before the clock moves on, as a running program's would be.
    taken = 0

    def alert(message: str, key: str) -> None:
        nonlocal taken
        engine.alert(message, key=key)
        taken += 1
        assert wait_for(lambda: engine.stats().accepted == taken, 10)

    try:
        alert("payment gateway timed out for order 1", "pay")
        clock.advance(70)
        alert("payment gateway timed out for order 2", "pay")
        clock.advance(180)
        for order in range(3, 6):
            alert(f"payment gateway timed out for order {order}", "pay")
        alert("disk almost full", "disk")
        clock.advance(90)
        assert engine.flush(timeout=10)
    finally:
        engine.close()
    assert len(gmail_server.messages) == 1
    (message,) = channel.sent
    digest = message.digest
    assert digest is not None
    assert (digest.timeline_start, digest.timeline_step) == (T0, 60.0)
    rows = {problem.alert.message: problem.timeline for problem in digest.problems}
    assert rows == {
        "payment gateway timed out for order 1": (1, 1, 0, 0, 3, 0),
        "disk almost full": (0, 0, 0, 0, 1, 0),
    }
