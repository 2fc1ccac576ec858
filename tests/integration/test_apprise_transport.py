"""AppriseTransport with real apprise against a local webhook, and the webhook listener itself."""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from smtp_alerts.errors import (
    ConnectError,
    DeliveryError,
    DeliveryTimeoutError,
    PermanentReplyError,
    TemporaryReplyError,
)
from smtp_alerts.models import Alert, Digest, OutgoingMessage, Problem
from smtp_alerts.testing import WebhookListener, WebhookRequest
from smtp_alerts.transports.apprise import AppriseTransport

SECRET = "pathT0ken-9f8e7d"
QUERY_SECRET = "queryS3cret-1a2b3c"
PASSWORD = "passW0rd-4d5e6f"
APPRISE_THROTTLE = 5.5  # apprise's default NotifyBase.request_rate_per_sec


def _message(*, level: int | None = None) -> OutgoingMessage:
    """A rendered digest built by hand; with ``level``, it carries a digest of that level."""
    digest = None
    if level is not None:
        alert = Alert(fingerprint=("db",), level=level, logger="db", message="down", created=0.0)
        problem = Problem(alert, count=3, total=3, first_seen=0.0, last_seen=1.0, is_new=True)
        digest = Digest("default", "inc1", 1, (problem,), created=1.0)
    return OutgoingMessage(
        message_id="<1@example.com>",
        email=EmailMessage(),
        sender="alerts@example.com",
        recipients=("oncall@example.com",),
        title="[ERROR] db is down (3)",
        summary="db: down (3 times)\nfirst 12:00, last 12:01",
        digest=digest,
    )


def _closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def listener() -> Iterator[WebhookListener]:
    """A webhook listener that answers 200."""
    with WebhookListener() as running:
        yield running


@pytest.fixture
def other_listener() -> Iterator[WebhookListener]:
    """A second, independent webhook listener."""
    with WebhookListener() as running:
        yield running


@pytest.fixture
def warnings_logged() -> Iterator[list[str]]:
    """The warnings the transport logs."""
    lines: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("smtp_alerts.transports.apprise")
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


class TestAppriseTransport:
    @pytest.mark.asyncio
    async def test_digest_arrives_as_title_and_summary(self, listener: WebhookListener) -> None:
        """The JSON body carries the digest's title, its plain-text summary and its severity."""
        transport = AppriseTransport([listener.apprise_url("json")], timeout=5)
        await transport.send(_message(level=logging.ERROR))
        (request,) = listener.requests
        assert request.method == "POST"
        assert request.json["title"] == "[ERROR] db is down (3)"
        assert request.json["message"] == "db: down (3 times)\nfirst 12:00, last 12:01"
        assert request.json["type"] == "failure"

    @pytest.mark.asyncio
    async def test_form_url(self, listener: WebhookListener) -> None:
        """A form:// URL posts the same fields as a form."""
        transport = AppriseTransport([listener.apprise_url("form")], timeout=5)
        await transport.send(_message(level=logging.WARNING))
        (request,) = listener.requests
        assert request.form is not None
        assert request.form["title"] == "[ERROR] db is down (3)"
        assert request.form["type"] == "warning"

    @pytest.mark.asyncio
    async def test_server_error_is_transient(self, listener: WebhookListener) -> None:
        """A 500 reply is a transient error carrying the status and apprise's words."""
        listener.status = 500
        transport = AppriseTransport([listener.apprise_url("json")], timeout=5)
        with pytest.raises(TemporaryReplyError) as caught:
            await transport.send(_message())
        error = caught.value
        assert error.transient
        assert error.code == 500
        assert error.step == "notify"
        assert error.channel == f"apprise:json://127.0.0.1:{listener.port}"
        assert "error=500" in error.reply
        assert "HTTP 500" in str(error)

    @pytest.mark.asyncio
    async def test_not_found_is_permanent(self, listener: WebhookListener) -> None:
        """A 404 reply is a permanent error with code 404."""
        listener.status = 404
        transport = AppriseTransport([listener.apprise_url("json")], timeout=5)
        with pytest.raises(PermanentReplyError) as caught:
            await transport.send(_message())
        assert caught.value.code == 404
        assert not caught.value.transient

    @pytest.mark.asyncio
    async def test_too_many_requests_is_transient(self, listener: WebhookListener) -> None:
        """A 429 reply asks to come back later, so it is transient."""
        listener.status = 429
        transport = AppriseTransport([listener.apprise_url("json")], timeout=5)
        with pytest.raises(TemporaryReplyError) as caught:
            await transport.send(_message())
        assert caught.value.code == 429

    @pytest.mark.asyncio
    async def test_connection_refused(self) -> None:
        """Nothing listening is a transient connection error."""
        transport = AppriseTransport([f"json://127.0.0.1:{_closed_port()}/"], timeout=5)
        with pytest.raises(ConnectError) as caught:
            await transport.send(_message())
        assert caught.value.transient
        assert "Connection error" in caught.value.reply

    @pytest.mark.asyncio
    async def test_recovers_after_failures(self, listener: WebhookListener) -> None:
        """After the endpoint's failures stop, the next send is delivered."""
        listener.fail_times = 1
        transport = AppriseTransport([listener.apprise_url("json")], timeout=5)
        with pytest.raises(TemporaryReplyError):
            await transport.send(_message())
        await transport.send(_message())
        assert len(listener.requests) == 2

    @pytest.mark.asyncio
    async def test_hanging_endpoint_times_out(self, listener: WebhookListener) -> None:
        """An endpoint that never answers gives DeliveryTimeoutError at about the deadline."""
        listener.hang = True
        transport = AppriseTransport([listener.apprise_url("json")], timeout=0.5)
        started = time.monotonic()
        with pytest.raises(DeliveryTimeoutError) as caught:
            await transport.send(_message())
        elapsed = time.monotonic() - started
        listener.hang = False  # the abandoned call ends now, so the event loop closes at once
        assert 0.5 <= elapsed < 1.5
        assert caught.value.transient
        assert caught.value.channel == transport.name

    @pytest.mark.asyncio
    async def test_shorter_read_timeout_in_the_url_is_kept(self, listener: WebhookListener) -> None:
        """A read timeout set in the URL (?rto=) shorter than the deadline still applies."""
        listener.hang = True
        transport = AppriseTransport([listener.apprise_url("json", path="/?rto=0.2")], timeout=5)
        started = time.monotonic()
        with pytest.raises(ConnectError):
            await transport.send(_message())
        listener.hang = False
        assert time.monotonic() - started < 2

    @pytest.mark.asyncio
    async def test_late_answer_does_not_disturb_the_next_send(
        self, listener: WebhookListener
    ) -> None:
        """A call answered after the deadline is dropped, and the next send works normally."""
        listener.hang = True
        transport = AppriseTransport([listener.apprise_url("json")], timeout=0.5)
        with pytest.raises(DeliveryTimeoutError):
            await transport.send(_message())
        listener.wait_for_requests(1)
        listener.hang = False  # the abandoned call now gets its 200
        listener.status = 404
        with pytest.raises(PermanentReplyError):
            await transport.send(_message())
        listener.status = 200
        await transport.send(_message())
        assert len(listener.requests) == 3

    @pytest.mark.asyncio
    async def test_partial_delivery_succeeds_with_a_warning(
        self,
        listener: WebhookListener,
        other_listener: WebhookListener,
        warnings_logged: list[str],
    ) -> None:
        """One of two URLs failing still counts as delivered, and a warning names the failed one."""
        other_listener.status = 500
        transport = AppriseTransport(
            [listener.apprise_url("json"), other_listener.apprise_url("json")], timeout=5
        )
        await transport.send(_message())
        assert len(listener.requests) == 1
        assert len(other_listener.requests) == 1
        (warning,) = warnings_logged
        assert f"json://127.0.0.1:{other_listener.port} (HTTP 500" in warning

    @pytest.mark.asyncio
    async def test_all_failing_raises_the_most_hopeful(
        self, listener: WebhookListener, other_listener: WebhookListener
    ) -> None:
        """When every URL fails, the transient failure wins and the message lists both."""
        listener.status = 404
        other_listener.status = 503
        transport = AppriseTransport(
            [listener.apprise_url("json"), other_listener.apprise_url("json")], timeout=5
        )
        with pytest.raises(TemporaryReplyError) as caught:
            await transport.send(_message())
        assert caught.value.code == 503
        assert "HTTP 404" in str(caught.value)
        assert "HTTP 503" in str(caught.value)

    def test_malformed_url_is_refused_at_construction(self) -> None:
        """A string that is not scheme://... is a ValueError naming its position, not its text."""
        with pytest.raises(ValueError, match=r"URL #2 \(json:\.\.\.\)") as caught:
            AppriseTransport(["json://127.0.0.1/", f"json:/{SECRET}"])
        assert SECRET not in str(caught.value)

    def test_no_url_is_refused(self) -> None:
        """An empty list of URLs is a ValueError."""
        with pytest.raises(ValueError, match="at least one"):
            AppriseTransport([])

    @pytest.mark.asyncio
    async def test_unknown_scheme(self) -> None:
        """A scheme apprise does not know fails load() and the send, without the secret."""
        transport = AppriseTransport([f"nope://{SECRET}/x"], timeout=5)
        with pytest.raises(ValueError, match=r"URL #1 \(nope://\.\.\.\): apprise has no such"):
            transport.load()
        with pytest.raises(DeliveryError) as caught:
            await transport.send(_message())
        assert not caught.value.transient
        assert SECRET not in str(caught.value)
        assert SECRET not in caught.value.reply

    @pytest.mark.asyncio
    async def test_unknown_scheme_does_not_block_the_others(
        self, listener: WebhookListener, warnings_logged: list[str]
    ) -> None:
        """A URL apprise cannot use is reported, and the usable ones still deliver."""
        transport = AppriseTransport(["nope://x/y", listener.apprise_url("json")], timeout=5)
        await transport.send(_message())
        assert len(listener.requests) == 1
        assert "apprise:nope (not a URL apprise can use" in warnings_logged[0]

    @pytest.mark.asyncio
    async def test_secrets_never_shown(self, listener: WebhookListener) -> None:
        """Tokens in the user, path and query of a URL appear in no name, repr or error."""
        listener.status = 404
        url = f"ntfy://user:{PASSWORD}@127.0.0.1:{listener.port}/{SECRET}?token={QUERY_SECRET}"
        transport = AppriseTransport([url], timeout=5)
        with pytest.raises(PermanentReplyError) as caught:
            await transport.send(_message())
        # ntfy names the topic (here the path token) in its failure message: it is masked.
        assert "topic '***'" in caught.value.reply
        shown = [
            str(caught.value),
            repr(caught.value),
            caught.value.reply,
            caught.value.channel,
            repr(transport),
            transport.name,
            *transport.channels,
        ]
        for text in shown:
            for secret in (SECRET, QUERY_SECRET, PASSWORD):
                assert secret not in text

    def test_token_in_host_position_is_not_shown(self) -> None:
        """A URL whose host is really a token is named by its scheme alone."""
        transport = AppriseTransport([f"tgram://123456:{SECRET}/chat", f"slack://{SECRET}/B/C"])
        assert transport.channels == ("apprise:tgram", "apprise:slack")

    @pytest.mark.asyncio
    async def test_throttling_is_disabled(self, listener: WebhookListener) -> None:
        """Five sends to two ntfy topics each take far less than apprise's throttle sleeps."""
        # ntfy keeps apprise's default throttle and calls it before each topic.
        transport = AppriseTransport([listener.apprise_url("ntfy", path="/a/b")], timeout=5)
        await transport.send(_message())  # loads apprise, outside the measure
        started = time.monotonic()
        for _ in range(5):
            await transport.send(_message())
        elapsed = time.monotonic() - started
        assert len(listener.requests) == 12
        assert {request.json["topic"] for request in listener.requests} == {"a", "b"}
        assert elapsed < APPRISE_THROTTLE  # throttled, it would take 5 * 5.5 s

    def test_apprise_is_imported_on_first_send(self) -> None:
        """Importing the module and building the transport leave apprise unimported."""
        code = """
            import asyncio, sys
            from smtp_alerts.testing import WebhookListener
            from smtp_alerts.models import OutgoingMessage
            from smtp_alerts.transports.apprise import AppriseTransport
            from email.message import EmailMessage

            with WebhookListener() as listener:
                transport = AppriseTransport([listener.apprise_url("json")], timeout=10)
                print("apprise" in sys.modules)
                message = OutgoingMessage("<1@x>", EmailMessage(), "a@x", ("b@x",), "t", "s")
                asyncio.run(transport.send(message))
                print("apprise" in sys.modules, len(listener.requests))
        """
        result = subprocess.run(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
            env={k: v for k, v in os.environ.items() if not k.startswith("SMTP_ALERTS_")},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["False", "True", "1"]


class TestOutcomes:
    """apprise statuses the local listener cannot produce, built from apprise's own classes."""

    def _settle(self, result: object) -> None:
        transport = AppriseTransport(["json://127.0.0.1/"])
        transport._settle(transport._report(result, {}, ["apprise:json://127.0.0.1"], ()))

    def test_nomatch_is_a_configuration_failure(self) -> None:
        """NOMATCH (no service to notify) is a non-transient DeliveryError."""
        import apprise

        with pytest.raises(DeliveryError) as caught:
            self._settle(apprise.AppriseResult(status=apprise.AppriseResultStatus.NOMATCH))
        assert type(caught.value) is DeliveryError
        assert not caught.value.transient

    def test_timeout_status_is_a_timeout(self) -> None:
        """A service apprise reports as TIMEOUT is a DeliveryTimeoutError."""
        import apprise

        status = apprise.AppriseResultStatus.TIMEOUT
        attempt = apprise.NotifyAttempt(status=status)
        service = apprise.NotifyResult(name="JSON", url="json://127.0.0.1/", attempts=[attempt])
        with pytest.raises(DeliveryTimeoutError) as caught:
            self._settle(apprise.AppriseResult(status=status, results=[service]))
        assert caught.value.channel == "apprise:json://127.0.0.1"


class TestWebhookListener:
    @staticmethod
    def _post(
        listener: WebhookListener, body: bytes, content_type: str = "application/json"
    ) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", listener.port, timeout=5)
        try:
            connection.request("POST", "/hook?x=1", body, {"Content-Type": content_type})
            return connection.getresponse().status
        finally:
            connection.close()

    def test_records_requests(self, listener: WebhookListener) -> None:
        """Method, path, headers, body and parsed JSON of a request are recorded."""
        assert self._post(listener, b'{"a": 1}') == 200
        (request,) = listener.requests
        assert isinstance(request, WebhookRequest)
        assert (request.method, request.path, request.body) == ("POST", "/hook?x=1", b'{"a": 1}')
        assert request.headers["content-type"] == "application/json"
        assert request.json == {"a": 1}
        assert request.form is None

    def test_urls(self, listener: WebhookListener) -> None:
        """url and apprise_url point at the listener's port."""
        assert listener.url == f"http://127.0.0.1:{listener.port}/"
        assert listener.apprise_url() == f"json://127.0.0.1:{listener.port}/"
        assert listener.apprise_url("form", path="x/y") == f"form://127.0.0.1:{listener.port}/x/y"

    def test_fail_times_then_status(self, listener: WebhookListener) -> None:
        """fail_times requests get a 500, then the configured status applies."""
        listener.fail_times = 2
        listener.status = 202
        statuses = [self._post(listener, b"{}") for _ in range(3)]
        assert statuses == [500, 500, 202]
        assert listener.fail_times == 0

    def test_delay(self, listener: WebhookListener) -> None:
        """A delayed reply arrives no sooner than the delay."""
        listener.delay = 0.2
        started = time.monotonic()
        assert self._post(listener, b"{}") == 200
        assert time.monotonic() - started >= 0.2

    def test_wait_for_requests_times_out(self, listener: WebhookListener) -> None:
        """Waiting for more requests than arrive raises TimeoutError."""
        with pytest.raises(TimeoutError, match="0 of 1"):
            listener.wait_for_requests(1, timeout=0.05)

    def test_clearing_hang_releases_requests(self, listener: WebhookListener) -> None:
        """A hanging request gets its reply once hang is cleared."""
        listener.hang = True
        statuses: list[int] = []
        client = threading.Thread(target=lambda: statuses.append(self._post(listener, b"{}")))
        client.start()
        listener.wait_for_requests(1)
        listener.hang = False
        client.join(5)
        assert statuses == [200]

    def test_stops_while_a_request_hangs(self) -> None:
        """stop() ends a hanging request without a reply and leaves no thread serving."""
        baseline = set(threading.enumerate())
        listener = WebhookListener(hang=True).start()
        errors: list[BaseException] = []

        def post() -> None:
            try:
                self._post(listener, b"{}")
            except (OSError, http.client.HTTPException) as exc:
                errors.append(exc)

        client = threading.Thread(target=post)
        client.start()
        listener.wait_for_requests(1)
        listener.stop()
        client.join(5)
        assert len(errors) == 1
        assert [t for t in threading.enumerate() if t not in baseline] == []
        listener.stop()  # idempotent

    def test_requests_survive_stop_and_json_body_is_parsed_only_for_json(self) -> None:
        """A non-JSON body has no parsed JSON, and the record outlives the listener."""
        with WebhookListener() as listener:
            self._post(listener, b"a=1&b=two", "application/x-www-form-urlencoded")
        (request,) = listener.requests
        assert request.json is None
        assert request.form == {"a": "1", "b": "two"}
        assert json.loads(json.dumps(dict(request.form))) == {"a": "1", "b": "two"}
