"""Every scripted fault of the Gmail-like server, through the real SMTPTransport.

Each test breaks the server, checks the exact error the transport raises (class,
step, code, transient), then heals the server and checks that the same
transport object delivers the same message, exactly once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from smtp_alerts._delivery.channels import smtp_channel
from smtp_alerts.errors import (
    AuthenticationError,
    ConnectError,
    DeliveryError,
    DeliveryTimeoutError,
    MessageTooLargeError,
    QuotaExceededError,
    TemporaryReplyError,
)
from smtp_alerts.models import OutgoingMessage
from smtp_alerts.testing import Faults, GmailServer
from smtp_alerts.transports.smtp import SMTPTransport
from tests.helpers import SENDER, make_message

if TYPE_CHECKING:
    from collections.abc import Iterator

    from smtp_alerts.testing._replies import AuthReply

DEADLINE = 0.8
STEP_TIMEOUT = 0.3


def _transport(server: GmailServer) -> SMTPTransport:
    """The transport ``server.settings()`` describes, with short deadline and step timeouts."""
    transport = smtp_channel(server.settings(timeout=DEADLINE))
    # Settings has one timeout, the deadline, and the transport derives the step
    # timeout from it; a shorter step timeout is what tells the two apart here
    # (set where the session waits and where its errors name it).
    transport._step_timeout = transport._errors.step_timeout = STEP_TIMEOUT
    return transport


def _check(
    error: DeliveryError,
    kind: type[DeliveryError],
    *,
    step: str,
    code: int | None = None,
    transient: bool,
) -> None:
    """``error`` is exactly a ``kind`` raised at ``step``, with this code and transient flag."""
    assert type(error) is kind, repr(error)
    assert (error.step, error.code, error.transient) == (step, code, transient)


async def _delivered_once(
    server: GmailServer, transport: SMTPTransport, message: OutgoingMessage
) -> None:
    """Send ``message`` again with the same transport: it arrives, and only once."""
    await transport.send(message)
    await transport.aclose()
    ids = [received.message["Message-ID"] for received in server.messages]
    assert ids.count(message.message_id) == 1


@pytest.fixture(params=["starttls", "tls"])
def server(request: pytest.FixtureRequest) -> Iterator[GmailServer]:
    """A Gmail-like server in STARTTLS (587) and in implicit TLS (465) mode."""
    with GmailServer(mode=request.param) as running:
        yield running


class TestFaults:
    """Faults: each one seen by SMTPTransport as Gmail's failure, then healed."""

    @pytest.mark.asyncio
    async def test_refused_connections(self, server: GmailServer) -> None:
        """A refused connection is a transient ConnectError; the same port accepts once healed."""
        port = server.port
        server.faults.refuse_connections = True
        transport = _transport(server)
        message = make_message()
        with pytest.raises(DeliveryError) as caught:
            await transport.send(message)
        _check(caught.value, ConnectError, step="connect", transient=True)
        assert server.connections == 0
        server.faults.refuse_connections = False
        assert server.port == port
        await _delivered_once(server, transport, message)

    @pytest.mark.asyncio
    async def test_refusing_from_the_start(self) -> None:
        """A server started refusing has a port that refuses, then accepts once healed."""
        with GmailServer(faults=Faults(refuse_connections=True)) as server:
            transport = _transport(server)
            message = make_message()
            with pytest.raises(ConnectError):
                await transport.send(message)
            server.faults.refuse_connections = False
            await _delivered_once(server, transport, message)

    @pytest.mark.asyncio
    async def test_never_greets(self, server: GmailServer) -> None:
        """A server that never greets times out at the greeting, within the step timeout."""
        server.faults.greet = False
        transport = _transport(server)
        message = make_message()
        with pytest.raises(DeliveryError) as caught:
            await transport.send(message)
        _check(caught.value, DeliveryTimeoutError, step="greeting", transient=True)
        assert server.fired["greet"] == 1
        server.faults.greet = True
        await _delivered_once(server, transport, message)

    @pytest.mark.asyncio
    async def test_greets_too_slowly(self, server: GmailServer) -> None:
        """A greeting later than the step timeout is a DeliveryTimeoutError at the greeting."""
        server.faults.greeting_delay = STEP_TIMEOUT * 2  # still inside the deadline
        transport = _transport(server)
        message = make_message()
        with pytest.raises(DeliveryError) as caught:
            await transport.send(message)
        _check(caught.value, DeliveryTimeoutError, step="greeting", transient=True)
        server.faults.greeting_delay = 0
        await _delivered_once(server, transport, message)

    @pytest.mark.asyncio
    async def test_slow_greeting_inside_the_step_timeout(self, server: GmailServer) -> None:
        """A greeting that is slow but inside the step timeout still leads to delivery."""
        server.faults.greeting_delay = STEP_TIMEOUT / 4
        await _delivered_once(server, _transport(server), make_message())
        assert server.fired["greeting_delay"] == 1

    @pytest.mark.asyncio
    async def test_every_step_slow(self, server: GmailServer) -> None:
        """Replies each inside the step timeout but too slow in sum hit the overall deadline."""
        # About nine replies of 0.15 s (1.35 s): every step is in time, the whole is not.
        server.faults.reply_delay = 0.15
        transport = _transport(server)
        message = make_message()
        with pytest.raises(DeliveryError) as caught:
            await transport.send(message)
        _check(caught.value, DeliveryTimeoutError, step="deadline", transient=True)
        assert not server.messages
        server.faults.reply_delay = 0
        await _delivered_once(server, transport, message)

    @pytest.mark.asyncio
    async def test_421_on_greeting(self, server: GmailServer) -> None:
        """Gmail's 421 4.7.0 greeting is a transient TemporaryReplyError at the greeting."""
        server.faults.greeting_reply = "421"
        transport = _transport(server)
        message = make_message()
        with pytest.raises(DeliveryError) as caught:
            await transport.send(message)
        _check(caught.value, TemporaryReplyError, step="greeting", code=421, transient=True)
        assert "(421 4.7.0) Try again later, closing connection." in str(caught.value)
        server.faults.greeting_reply = None
        await _delivered_once(server, transport, message)

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        ("reply", "code", "status"),
        [
            ("454", 454, "4.7.0"),
            ("530", 530, "5.7.0"),
            ("534-5.7.9", 534, "5.7.9"),
            ("534-5.7.14", 534, "5.7.14"),
            ("535", 535, "5.7.8"),
        ],
    )
    async def test_auth_refusals(
        self, server: GmailServer, reply: AuthReply, code: int, status: str
    ) -> None:
        """Each Gmail refusal of AUTH is one attempt and an AuthenticationError with its codes."""
        server.faults.auth_reply = reply
        transport = _transport(server)
        message = make_message()
        with pytest.raises(DeliveryError) as caught:
            await transport.send(message)
        _check(caught.value, AuthenticationError, step="auth", code=code, transient=False)
        assert f"({code} {status})" in str(caught.value)
        assert server.auth_attempts == [("PLAIN", SENDER, False)]
        server.faults.auth_reply = None
        await _delivered_once(server, transport, message)
        assert server.auth_attempts[-1] == ("PLAIN", SENDER, True)

    @pytest.mark.asyncio
    async def test_daily_limit_on_mail(self, server: GmailServer) -> None:
        """Gmail's 550 5.4.5 on MAIL FROM is a QuotaExceededError at the mail step."""
        server.faults.mail_reply = "550-5.4.5"
        transport = _transport(server)
        message = make_message()
        with pytest.raises(DeliveryError) as caught:
            await transport.send(message)
        _check(caught.value, QuotaExceededError, step="mail", code=550, transient=False)
        assert "(550 5.4.5) Daily user sending limit exceeded." in str(caught.value)
        server.faults.mail_reply = None
        await _delivered_once(server, transport, message)

    @pytest.mark.asyncio
    async def test_552_at_end_of_data(self, server: GmailServer) -> None:
        """Gmail's 552 5.3.4 after the message is a MessageTooLargeError at the data step."""
        server.faults.data_reply = "552"
        transport = _transport(server)
        message = make_message()
        with pytest.raises(DeliveryError) as caught:
            await transport.send(message)
        _check(caught.value, MessageTooLargeError, step="data", code=552, transient=False)
        assert "(552 5.3.4) Your message exceeded Google's message size limits." in str(
            caught.value
        )
        assert not server.messages
        server.faults.data_reply = None
        await _delivered_once(server, transport, message)

    @pytest.mark.asyncio
    async def test_552_only_above_max_message_size(self, server: GmailServer) -> None:
        """With max_message_size only a larger message gets 552; a smaller one is accepted."""
        server.faults.max_message_size = 5_000
        transport = _transport(server)
        with pytest.raises(MessageTooLargeError):
            await transport.send(make_message(body="A row of the digest.\n" * 500))
        await _delivered_once(server, transport, make_message())
        assert server.fired == {"max_message_size": 1}

    @pytest.mark.asyncio
    async def test_disconnect_in_data(self, server: GmailServer) -> None:
        """A connection cut in the middle of the message is a transient ConnectError at data."""
        server.faults.disconnect_in_data = True
        transport = _transport(server)
        message = make_message()
        with pytest.raises(DeliveryError) as caught:
            await transport.send(message)
        _check(caught.value, ConnectError, step="data", transient=True)
        assert not server.messages
        server.faults.disconnect_in_data = False
        await _delivered_once(server, transport, message)

    @pytest.mark.asyncio
    async def test_hang_after_data(self, server: GmailServer) -> None:
        """A server that never answers the final dot times out at data and records nothing."""
        server.faults.hang_after_data = True
        transport = _transport(server)
        message = make_message()
        with pytest.raises(DeliveryError) as caught:
            await transport.send(message)
        _check(caught.value, DeliveryTimeoutError, step="data", transient=True)
        assert not server.messages  # never answered, so never accepted
        server.faults.hang_after_data = False
        await _delivered_once(server, transport, message)

    @pytest.mark.asyncio
    async def test_fail_times_heals_by_itself(self, server: GmailServer) -> None:
        """With fail_times=2 the 421 greets two connections, then the server heals itself."""
        server.faults.greeting_reply = "421"
        server.faults.fail_times = 2
        transport = _transport(server)
        message = make_message()
        for _ in range(2):
            with pytest.raises(TemporaryReplyError):
                await transport.send(message)
        await _delivered_once(server, transport, message)
        assert server.fired == {"greeting_reply": 2}
        assert (server.faults.fail_times, server.faults.greeting_reply) == (0, "421")
        assert server.connections == 3

    @pytest.mark.asyncio
    async def test_fail_times_counts_every_firing(self, server: GmailServer) -> None:
        """Each fault that fires spends one of fail_times, whichever fault it is."""
        server.faults.greeting_delay = STEP_TIMEOUT / 4
        server.faults.auth_reply = "454"
        server.faults.fail_times = 2  # both spent on the first connection
        transport = _transport(server)
        message = make_message()
        with pytest.raises(AuthenticationError):
            await transport.send(message)
        await _delivered_once(server, transport, message)
        assert server.fired == {"greeting_delay": 1, "auth_reply": 1}
