"""The built-in checks against real local servers, and the runner that runs them."""

from __future__ import annotations

import asyncio
import datetime
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtp_alerts import Engine
from smtp_alerts.checks import (
    CallableCheck,
    Check,
    CheckMonitor,
    CheckResult,
    CheckRunner,
    CommandCheck,
    HttpCheck,
    TcpCheck,
    TlsExpiryCheck,
)
from smtp_alerts.testing import GmailServer
from tests.checks_support import (
    FlipServer,
    closed_port,
    full_backlog,
    silent_listener,
    write_ca,
)
from tests.helpers import process_alive

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell and process groups")


def days_from_now(days: float) -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)


@pytest.fixture
def web() -> Iterator[FlipServer]:
    with FlipServer() as flip:
        yield flip


class TestHttpCheck:
    @pytest.mark.asyncio
    async def test_up_and_down(self, web: FlipServer) -> None:
        """200 passes with the status and latency; 503 fails saying what was expected."""
        check = HttpCheck(name="web", url=web.url(), timeout=5)
        result = await check.run()
        assert result.ok
        assert result.detail.startswith("HTTP 200 OK in ")
        assert result.latency > 0
        web.down()
        result = await check.run()
        assert not result.ok
        assert "HTTP 503 Service Unavailable" in result.detail
        assert "expected 2xx" in result.detail

    @pytest.mark.asyncio
    async def test_expected_statuses(self, web: FlipServer) -> None:
        """expect_status replaces the 2xx default: a 404 can be the healthy answer."""
        web.down(404)
        assert (await HttpCheck(name="web", url=web.url(), expect_status=(404,)).run()).ok
        result = await HttpCheck(name="web", url=web.url(), expect_status=(200, 204)).run()
        assert "expected 200, 204" in result.detail

    @pytest.mark.asyncio
    async def test_latency_threshold(self, web: FlipServer) -> None:
        """A response slower than max_latency fails, naming the limit."""
        web.delay = 0.3
        result = await HttpCheck(name="web", url=web.url(), max_latency=0.1).run()
        assert not result.ok
        assert "slower than 100 ms" in result.detail
        assert (await HttpCheck(name="web", url=web.url(), max_latency=5).run()).ok

    @pytest.mark.asyncio
    async def test_body_match(self, web: FlipServer) -> None:
        """body_contains and body_regex pass on a match and fail, quoting them, without."""
        web.body = b'{"status": "ok", "queue": 12}'
        assert (await HttpCheck(name="web", url=web.url(), body_contains='"ok"').run()).ok
        regex = HttpCheck(name="web", url=web.url(), body_regex=r'"queue": \d+')
        assert (await regex.run()).ok
        web.body = b'{"status": "degraded"}'
        result = await HttpCheck(name="web", url=web.url(), body_contains='"ok"').run()
        assert not result.ok
        assert "does not contain" in result.detail
        assert not (await regex.run()).ok

    @pytest.mark.asyncio
    async def test_redirects(self, web: FlipServer) -> None:
        """A redirect is followed by default; when not, it fails naming where it pointed."""
        web.location = "/landing"
        assert (await HttpCheck(name="web", url=web.url()).run()).ok
        assert web.requests[-1] == ("GET", "/landing")
        result = await HttpCheck(name="web", url=web.url(), follow_redirects=False).run()
        assert not result.ok
        assert "HTTP 302" in result.detail
        assert "/landing" in result.detail

    @pytest.mark.asyncio
    async def test_head(self, web: FlipServer) -> None:
        """method HEAD sends a HEAD request and judges its status."""
        assert (await HttpCheck(name="web", url=web.url(), method="head").run()).ok
        assert web.requests[-1] == ("HEAD", "/health")

    @pytest.mark.asyncio
    async def test_https_is_verified(self, tmp_path: Path) -> None:
        """HTTPS passes with the CA file and fails as untrusted without it."""
        with FlipServer(tls=True) as secure:
            ca_file = write_ca(secure.ca, tmp_path)
            assert (await HttpCheck(name="web", url=secure.url(), ca_file=ca_file).run()).ok
            result = await HttpCheck(name="web", url=secure.url()).run()
        assert not result.ok
        assert "TLS certificate not trusted" in result.detail

    @pytest.mark.asyncio
    async def test_refused(self) -> None:
        """Nothing listening fails with "connection refused"."""
        url = f"http://127.0.0.1:{closed_port()}/"
        result = await HttpCheck(name="web", url=url).run()
        assert (result.ok, result.detail) == (False, "connection refused")

    @pytest.mark.asyncio
    async def test_timeout(self, web: FlipServer) -> None:
        """A server slower than the timeout fails with "timed out after"."""
        web.delay = 2
        result = await HttpCheck(name="web", url=web.url(), timeout=0.2).run()
        assert (result.ok, result.detail) == (False, "timed out after 200 ms")

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"url": "ftp://example.com/"}, "url"),
            ({"url": "https://"}, "url"),
            ({"url": "http://x/", "method": "POST"}, "method"),
            ({"url": "http://x/", "body_regex": "("}, "body_regex"),
            ({"url": "http://x/", "method": "HEAD", "body_contains": "ok"}, "HEAD"),
            ({"url": "http://x/", "expect_status": (99,)}, "expect_status"),
            ({"url": "http://x/", "timeout": 0}, "timeout"),
        ],
    )
    def test_bad_options(self, options: dict[str, object], message: str) -> None:
        """A wrong option is refused up front, naming the check and the option."""
        with pytest.raises(ValueError, match=message):
            HttpCheck(name="web", **options)  # type: ignore[arg-type]

    def test_headers_stay_out_of_the_repr(self) -> None:
        """Request headers (often a token) never show in the check's repr."""
        check = HttpCheck(name="web", url="http://x/", headers={"Authorization": "Bearer s3cret"})
        assert "s3cret" not in repr(check)
        assert check.headers == (("Authorization", "Bearer s3cret"),)


class TestTcpCheck:
    @pytest.mark.asyncio
    async def test_listening_and_closed(self, web: FlipServer) -> None:
        """A listening port passes; a closed one fails with "connection refused"."""
        result = await TcpCheck(name="db", host="127.0.0.1", port=web.port).run()
        assert result.ok
        assert result.detail.startswith(f"connected to 127.0.0.1:{web.port} in ")
        result = await TcpCheck(name="db", host="localhost", port=closed_port()).run()
        assert (result.ok, result.detail) == (False, "connection refused")

    @pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux drops SYNs")
    @pytest.mark.asyncio
    async def test_timeout(self) -> None:
        """A connection that never opens fails at the timeout."""
        with full_backlog() as port:
            result = await TcpCheck(name="db", host="127.0.0.1", port=port, timeout=0.3).run()
        assert (result.ok, result.detail) == (False, "timed out after 300 ms")

    def test_bad_port(self) -> None:
        """A port outside 1-65535 is refused, naming the check."""
        with pytest.raises(ValueError, match="db: port"):
            TcpCheck(name="db", host="localhost", port=70000)


class TestTlsExpiryCheck:
    @pytest.mark.asyncio
    async def test_far_expiry_passes_and_near_fails(self, tmp_path: Path) -> None:
        """A certificate with 60 days left passes; one with 5 fails under min_days=14."""
        with FlipServer(tls=True, not_after=days_from_now(60)) as far:
            ca_file = write_ca(far.ca, tmp_path)
            check = TlsExpiryCheck(name="cert", host="localhost", port=far.port, ca_file=ca_file)
            result = await check.run()
        assert result.ok
        assert result.detail.startswith("certificate valid: ")
        assert "days left (until " in result.detail
        with FlipServer(tls=True, ca=far.ca, not_after=days_from_now(5)) as near:
            check = TlsExpiryCheck(
                name="cert", host="localhost", port=near.port, ca_file=ca_file, min_days=14
            )
            result = await check.run()
        assert not result.ok
        assert "certificate expires soon" in result.detail
        assert "fewer than 14" in result.detail

    @pytest.mark.asyncio
    async def test_untrusted_fails(self) -> None:
        """Without the CA the certificate is not trusted, and the check fails saying so."""
        with FlipServer(tls=True, not_after=days_from_now(60)) as server:
            result = await TlsExpiryCheck(name="cert", host="localhost", port=server.port).run()
        assert not result.ok
        assert "not trusted" in result.detail

    @pytest.mark.asyncio
    async def test_server_name_is_verified(self, tmp_path: Path) -> None:
        """A certificate for another name fails, even from a trusted CA."""
        with FlipServer(tls=True, not_after=days_from_now(60)) as server:
            check = TlsExpiryCheck(
                name="cert",
                host="localhost",
                port=server.port,
                ca_file=write_ca(server.ca, tmp_path),
                server_name="example.org",
            )
            result = await check.run()
        assert not result.ok
        assert "Hostname mismatch" in result.detail or "not trusted" in result.detail

    @pytest.mark.asyncio
    async def test_timeout(self) -> None:
        """A server that accepts but never answers the handshake fails at the timeout."""
        with silent_listener() as port:
            result = await TlsExpiryCheck(
                name="cert", host="127.0.0.1", port=port, timeout=0.3
            ).run()
        assert (result.ok, result.detail) == (False, "timed out after 300 ms")


@posix_only
class TestCommandCheck:
    @pytest.mark.asyncio
    async def test_exit_codes(self) -> None:
        """Exit 0 passes; another code fails showing the code and the last output line."""
        assert (await CommandCheck(name="cmd", command="true").run()).ok
        result = await CommandCheck(
            name="cmd", command="echo checking; echo disk 97%; exit 3"
        ).run()
        assert not result.ok
        assert result.detail.startswith("exit code 3 in ")
        assert result.detail.endswith(": disk 97%")

    @pytest.mark.asyncio
    async def test_argv_and_ok_codes(self) -> None:
        """A list runs without a shell; ok_codes widens what passes."""
        argv = (sys.executable, "-c", "import sys; print('warning'); sys.exit(1)")
        assert not (await CommandCheck(name="cmd", command=argv).run()).ok
        assert (await CommandCheck(name="cmd", command=argv, ok_codes=(0, 1)).run()).ok

    @pytest.mark.asyncio
    async def test_timeout_kills_the_command_and_its_children(self, tmp_path: Path) -> None:
        """At the timeout the shell and what it started are killed, and the check fails."""
        pid_file = tmp_path / "child.pid"
        command = f"sleep 30 & echo $! > {pid_file}; wait"
        result = await CommandCheck(name="cmd", command=command, timeout=0.5).run()
        assert (result.ok, result.detail) == (
            False,
            "timed out after 500 ms; the command was killed",
        )
        child = int(pid_file.read_text(encoding="utf-8"))
        for _ in range(100):  # the kernel reaps it within moments
            if not process_alive(child):
                break
            await asyncio.sleep(0.02)
        assert not process_alive(child)


class TestCallableCheck:
    @pytest.mark.parametrize(
        ("value", "ok", "detail"),
        [
            (True, True, "passed in"),
            (None, True, "passed in"),
            (False, False, "returned False"),
            ((False, "3 jobs stuck"), False, "3 jobs stuck"),
            (CheckResult(True, "custom"), True, "custom"),
            ("yes", False, "expected True, False, None"),
        ],
    )
    @pytest.mark.asyncio
    async def test_return_values(self, value: object, ok: bool, detail: str) -> None:
        """What a sync function returns decides the result."""
        result = await CallableCheck(name="fn", func=lambda: value).run()
        assert result.ok is ok
        assert detail in result.detail

    @pytest.mark.asyncio
    async def test_exception_fails_with_its_type(self) -> None:
        """An exception fails the check with its type and message."""

        def broken() -> None:
            raise KeyError("missing")

        result = await CallableCheck(name="fn", func=broken).run()
        assert (result.ok, result.detail) == (False, "KeyError: 'missing'")

    @pytest.mark.asyncio
    async def test_sync_runs_on_its_own_thread(self) -> None:
        """A sync function runs off the loop's thread (it may block)."""
        threads: list[str] = []
        check = CallableCheck(
            name="fn", func=lambda: threads.append(threading.current_thread().name)
        )
        assert (await check.run()).ok
        assert threads == ["smtp-alerts-check"]

    @pytest.mark.asyncio
    async def test_async_function(self) -> None:
        """An async function is awaited on the loop."""

        async def ping() -> tuple[bool, str]:
            await asyncio.sleep(0)
            return True, "pong"

        result = await CallableCheck(name="fn", func=ping).run()
        assert (result.ok, result.detail) == (True, "pong")

    @pytest.mark.asyncio
    async def test_timeouts_sync_and_async(self) -> None:
        """Both kinds fail at the timeout; a hung sync one is not called again meanwhile."""
        release = threading.Event()
        calls: list[int] = []

        def hangs() -> bool:
            calls.append(1)
            return release.wait(10)

        async def hangs_async() -> bool:
            await asyncio.sleep(10)
            return True

        sync_check = CallableCheck(name="fn", func=hangs, timeout=0.2)
        assert (await sync_check.run()).detail == "timed out after 200 ms"
        again = await sync_check.run()
        assert (again.ok, again.detail) == (False, "the previous call has not returned yet")
        assert calls == [1]
        release.set()
        for _ in range(100):
            if not sync_check._running[0]:
                break
            await asyncio.sleep(0.02)
        assert (await sync_check.run()).ok
        async_check = CallableCheck(name="fn", func=hangs_async, timeout=0.2)
        assert (await async_check.run()).detail == "timed out after 200 ms"


class _Meeting:
    """Where probes wait for each other: it opens when all have arrived."""

    def __init__(self, everyone: int) -> None:
        self.everyone = everyone
        self.arrived: list[str] = []
        self.all_here = asyncio.Event()


class _Probe(Check):
    """A check that waits until all its siblings have started (so only concurrency passes)."""

    def __init__(self, name: str, meeting: _Meeting) -> None:
        super().__init__(name=name, timeout=5)
        object.__setattr__(self, "meeting", meeting)

    async def probe(self) -> CheckResult:
        meeting: _Meeting = self.meeting  # type: ignore[attr-defined]
        meeting.arrived.append(self.name)
        if len(meeting.arrived) == meeting.everyone:
            meeting.all_here.set()
        await meeting.all_here.wait()
        return CheckResult(True, "met the others")


class TestRunner:
    @pytest.fixture
    def engine(self) -> Iterator[Engine]:
        with GmailServer() as server:
            engine = Engine(server.settings())
            yield engine
            engine.close(timeout=5)

    def test_run_once_runs_checks_concurrently(self, engine: Engine) -> None:
        """Checks that each wait for all the others pass only when they run at the same time."""
        meeting = _Meeting(3)
        checks = [_Probe(f"probe-{i}", meeting) for i in range(3)]
        outcomes = CheckRunner(engine, checks, monitor=CheckMonitor(engine)).run_once(timeout=20)
        assert [o.check.name for o in outcomes] == ["probe-0", "probe-1", "probe-2"]
        assert all(o.result.detail == "met the others" for o in outcomes)

    def test_start_and_stop(self, engine: Engine) -> None:
        """A started runner runs each check again and again on the loop until stopped."""
        results: list[str] = []
        enough = threading.Event()

        def on_result(outcome: object) -> None:
            results.append("x")
            if len(results) >= 6:
                enough.set()

        check = CallableCheck(name="tick", func=lambda: True, interval=0.02)
        runner = CheckRunner(engine, [check], monitor=CheckMonitor(engine), on_result=on_result)
        runner.start()
        assert runner.running
        assert enough.wait(10)
        assert runner.stop(timeout=5)
        assert "stopped" in repr(runner)
        count = len(results)
        time.sleep(0.1)
        assert len(results) == count

    def test_engine_watch_starts_a_runner(self, engine: Engine) -> None:
        """engine.watch() starts a runner on the engine's loop and returns it."""
        seen = threading.Event()
        runner = engine.watch([CallableCheck(name="w", func=seen.set, interval=0.02)])
        try:
            assert seen.wait(10)
        finally:
            assert runner.stop(timeout=5)

    @pytest.mark.asyncio
    async def test_run_once_refuses_to_block_a_loop(self, engine: Engine) -> None:
        """Called from a coroutine, run_once() says to await run_once_async() instead."""
        runner = CheckRunner(engine, [CallableCheck(name="a", func=bool)])
        with pytest.raises(RuntimeError, match="await run_once_async"):
            runner.run_once()

    def test_bad_arguments(self, engine: Engine) -> None:
        """Repeated names and an out-of-range jitter are refused."""
        twins = [CallableCheck(name="a", func=bool), CallableCheck(name="a", func=bool)]
        with pytest.raises(ValueError, match="repeated: a"):
            CheckRunner(engine, twins)
        with pytest.raises(ValueError, match="jitter"):
            CheckRunner(engine, [], jitter=0.9)
