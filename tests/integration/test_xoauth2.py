"""XOAUTH2 sessions: tokens cached until shortly before expiry, connections retired with them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest

import smtp_alerts
from smtp_alerts.errors import AuthenticationError
from smtp_alerts.testing import GmailServer, ManualClock
from smtp_alerts.transports.smtp import SMTPTransport
from smtp_alerts.transports.xoauth2 import (
    GMAIL_TOKEN_LIFETIME,
    TOKEN_REFRESH_MARGIN,
    InvalidTokenError,
    OAuthToken,
    as_token,
)
from tests.helpers import SENDER, make_message

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

TOKEN = "ya29.a0-first-secret-token"
NEW_TOKEN = "ya29.a0-second-secret-token"


@pytest.fixture
def server() -> Iterator[GmailServer]:
    """A Gmail-like server that accepts ``TOKEN`` over XOAUTH2."""
    with GmailServer(xoauth2_token=TOKEN) as running:
        yield running


def _transport(
    server: GmailServer, provider: Callable[[], Any], clock: ManualClock
) -> SMTPTransport:
    return SMTPTransport(
        host=server.host,
        port=server.port,
        security="starttls",
        username=server.username,
        token_provider=provider,
        ca_file=server.ca_file,
        timeout=5.0,
        local_hostname="client.example",
        clock=clock,
    )


class Tokens:
    """A provider that hands out the given tokens in turn and counts its calls."""

    def __init__(self, *tokens: object) -> None:
        self.tokens = list(tokens)
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        return self.tokens.pop(0)


class TestTokenReuse:
    """One token and one connection per token lifetime, renewed before it ends."""

    @pytest.mark.asyncio
    async def test_two_sends_within_lifetime_share_token_and_connection(
        self, server: GmailServer
    ) -> None:
        """Two sends an hour apart minus the margin ask for one token and use one connection."""
        clock = ManualClock()
        provider = Tokens(TOKEN)
        transport = _transport(server, provider, clock)
        await transport.send(make_message())
        clock.advance(GMAIL_TOKEN_LIFETIME - TOKEN_REFRESH_MARGIN - 1)
        await transport.send(make_message())
        await transport.aclose()
        assert provider.calls == 1
        assert server.connections == 1
        assert server.auth_attempts == [("XOAUTH2", SENDER, True)]
        assert len(server.messages) == 2

    @pytest.mark.asyncio
    async def test_connection_near_expiry_is_replaced_with_a_fresh_token(
        self, server: GmailServer
    ) -> None:
        """Within the margin of expiry the provider is asked again and a new connection opens."""
        clock = ManualClock()
        provider = Tokens(TOKEN, NEW_TOKEN)
        transport = _transport(server, provider, clock)
        await transport.send(make_message())
        clock.advance(GMAIL_TOKEN_LIFETIME - TOKEN_REFRESH_MARGIN)
        server.xoauth2_token = NEW_TOKEN  # the old token would no longer be accepted
        await transport.send(make_message())
        await transport.aclose()
        assert provider.calls == 2
        assert server.connections == 2
        assert server.auth_attempts == [("XOAUTH2", SENDER, True)] * 2
        assert len(server.messages) == 2

    @pytest.mark.asyncio
    async def test_token_object_expiry_is_respected(self, server: GmailServer) -> None:
        """An OAuthToken that lives ten minutes is renewed after five, not after an hour."""
        clock = ManualClock()
        provider = Tokens(
            OAuthToken(TOKEN, clock.now + 600), OAuthToken(NEW_TOKEN, clock.now + 4000)
        )
        transport = _transport(server, provider, clock)
        await transport.send(make_message())
        clock.advance(299)
        await transport.send(make_message())
        assert (provider.calls, server.connections) == (1, 1)
        clock.advance(1)
        server.xoauth2_token = NEW_TOKEN
        await transport.send(make_message())
        await transport.aclose()
        assert (provider.calls, server.connections) == (2, 2)

    @pytest.mark.asyncio
    async def test_google_auth_style_credentials(self, server: GmailServer) -> None:
        """An object with .token and a naive-UTC .expiry (google-auth's) is understood."""

        class Credentials:
            """Looks like google.oauth2.credentials.Credentials after refresh()."""

            def __init__(self, token: str, expiry: datetime) -> None:
                self.token = token
                self.expiry = expiry

        clock = ManualClock()
        naive_utc = datetime.fromtimestamp(clock.now, timezone.utc).replace(tzinfo=None)
        provider = Tokens(Credentials(TOKEN, naive_utc + timedelta(minutes=10)))
        transport = _transport(server, provider, clock)
        await transport.send(make_message())
        clock.advance(299)
        await transport.send(make_message())
        await transport.aclose()
        assert (provider.calls, server.connections) == (1, 1)

    @pytest.mark.asyncio
    async def test_async_provider(self, server: GmailServer) -> None:
        """An async provider is awaited, and its token cached like a sync one's."""
        clock = ManualClock()
        calls: list[float] = []

        async def provider() -> OAuthToken:
            calls.append(clock.now)
            return OAuthToken(TOKEN, clock.now + GMAIL_TOKEN_LIFETIME)

        transport = _transport(server, provider, clock)
        await transport.send(make_message())
        await transport.send(make_message())
        await transport.aclose()
        assert calls == [clock.now]
        assert server.auth_attempts == [("XOAUTH2", SENDER, True)]

    @pytest.mark.asyncio
    async def test_refused_token_is_forgotten(self, server: GmailServer) -> None:
        """A token the server refuses is not reused: the next connection asks for a new one."""
        clock = ManualClock()
        provider = Tokens("ya29.revoked-token", TOKEN)
        transport = _transport(server, provider, clock)
        with pytest.raises(AuthenticationError):
            await transport.send(make_message())
        await transport.send(make_message())
        await transport.aclose()
        assert provider.calls == 2
        assert [attempt.success for attempt in server.auth_attempts] == [False, True]


class TestProviderFailures:
    """A provider that fails or returns nothing usable is an XOAUTH2 authentication error."""

    @pytest.mark.asyncio
    async def test_provider_that_raises(self, server: GmailServer) -> None:
        """The error names XOAUTH2 and the exception type, never the provider's message."""

        def broken() -> str:
            raise RuntimeError(f"refresh failed for {TOKEN}")

        transport = _transport(server, broken, ManualClock())
        with pytest.raises(AuthenticationError) as caught:
            await transport.send(make_message())
        error = caught.value
        assert error.mechanism == "XOAUTH2"
        assert "RuntimeError" in str(error)
        assert TOKEN not in str(error)
        assert TOKEN not in repr(error)
        assert server.connections == 0

    @pytest.mark.asyncio
    async def test_async_provider_that_raises(self, server: GmailServer) -> None:
        """An async provider's failure is reported the same way."""

        async def broken() -> str:
            raise PermissionError(TOKEN)

        transport = _transport(server, broken, ManualClock())
        with pytest.raises(AuthenticationError) as caught:
            await transport.send(make_message())
        assert caught.value.mechanism == "XOAUTH2"
        assert TOKEN not in str(caught.value)

    @pytest.mark.asyncio
    @pytest.mark.parametrize("returned", ["", None, 42])
    async def test_provider_returning_no_token(self, server: GmailServer, returned: object) -> None:
        """An empty string, None or a number is refused before connecting."""
        transport = _transport(server, lambda: returned, ManualClock())
        with pytest.raises(AuthenticationError, match="token provider returned") as caught:
            await transport.send(make_message())
        assert caught.value.mechanism == "XOAUTH2"
        assert server.connections == 0


class TestOAuthToken:
    """The token value and the conversion of what providers return."""

    def test_repr_hides_the_token(self) -> None:
        """The repr shows the expiry and never the token."""
        token = OAuthToken(TOKEN, 1_700_000_000.0)
        assert TOKEN not in repr(token)
        assert "1700000000" in repr(token)

    def test_exported_from_the_package(self) -> None:
        """``smtp_alerts.OAuthToken`` is the public name."""
        assert smtp_alerts.OAuthToken is OAuthToken
        assert "OAuthToken" in smtp_alerts.__all__

    @pytest.mark.parametrize(
        ("token", "expires_at"), [("", 1.0), (TOKEN, float("nan")), (TOKEN, float("inf"))]
    )
    def test_invalid_values(self, token: str, expires_at: float) -> None:
        """An empty token or a non-finite expiry is refused."""
        with pytest.raises(ValueError, match="OAuthToken"):
            OAuthToken(token, expires_at)

    def test_plain_string_lives_gmails_hour(self) -> None:
        """A string is assumed to expire GMAIL_TOKEN_LIFETIME from now."""
        assert as_token(TOKEN, now=100.0) == OAuthToken(TOKEN, 100.0 + GMAIL_TOKEN_LIFETIME)

    def test_aware_expiry(self) -> None:
        """An aware .expiry is taken as it is; a missing one means an hour."""

        class Credentials:
            """A google-auth look-alike."""

            token = TOKEN
            expiry: datetime | None = datetime(2030, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))

        assert (
            as_token(Credentials(), now=0.0).expires_at
            == datetime(2030, 1, 1, tzinfo=timezone.utc).timestamp()
        )
        Credentials.expiry = None
        assert as_token(Credentials(), now=5.0).expires_at == 5.0 + GMAIL_TOKEN_LIFETIME

    def test_credentials_without_token(self) -> None:
        """Credentials whose .token is None (never refreshed) are refused clearly."""

        class Credentials:
            """Not refreshed yet."""

            token = None
            expiry = None

        with pytest.raises(InvalidTokenError, match="without a token"):
            as_token(Credentials(), now=0.0)
