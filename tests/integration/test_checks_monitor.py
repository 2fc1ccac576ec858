"""The check monitor end to end: a flipping HTTP service, the Gmail-like server, a manual clock."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtp_alerts import Engine
from smtp_alerts.checks import (
    CheckMonitor,
    CheckPolicy,
    CheckRunner,
    CheckState,
    HttpCheck,
    _monitor,
)
from smtp_alerts.testing import GmailServer, ManualClock, ReceivedMessage, capture_alerts
from tests.checks_support import FlipServer


@pytest.fixture
def server() -> Iterator[GmailServer]:
    with GmailServer() as gmail:
        yield gmail


@pytest.fixture
def web() -> Iterator[FlipServer]:
    with FlipServer() as flip:
        yield flip


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def engine(server: GmailServer, clock: ManualClock) -> Iterator[Engine]:
    engine = Engine(server.settings(), clock=clock)
    yield engine
    engine.close(timeout=5)


@pytest.fixture
def warnings_logged() -> Iterator[list[str]]:
    """What the monitor warns about, captured from its logger."""
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("smtp_alerts.checks")
    handler = Collect(logging.WARNING)
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def text(message: ReceivedMessage) -> str:
    body = message.message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def sent(engine: Engine, server: GmailServer) -> list[ReceivedMessage]:
    assert engine.flush(timeout=10)
    return server.messages


class TestOutage:
    def test_one_down_one_reminder_one_recovered(
        self, engine: Engine, server: GmailServer, web: FlipServer, clock: ManualClock
    ) -> None:
        """Three failures with retries=2 give one DOWN email, a reminder, and one RECOVERED."""
        policy = CheckPolicy(retries=2, recovery=1, resend_interval=600)
        check = HttpCheck(name="website", url=web.url(), timeout=5, policy=policy)
        runner = CheckRunner(engine, [check], monitor=CheckMonitor(engine))
        web.down()
        for _ in range(2):
            clock.advance(60)
            (outcome,) = runner.run_once()
            assert outcome.status.state is CheckState.PENDING
        assert sent(engine, server) == []
        clock.advance(60)
        runner.run_once()
        (down,) = sent(engine, server)
        assert "website is DOWN: HTTP 503 Service Unavailable" in down.subject
        assert "State:   DOWN" in text(down)
        clock.advance(60)
        runner.run_once()  # still down, before the reminder is due
        assert len(sent(engine, server)) == 1

        clock.advance(540)  # 600 s after the DOWN alert
        runner.monitor.tick()
        reminder = sent(engine, server)[1]
        # Down since the first failure (t=60), reminded at t=780.
        assert "website is still DOWN after 12m (reminder 1)" in text(reminder)
        assert reminder.message["In-Reply-To"] == down.message["Message-ID"]

        web.up()
        clock.advance(60)
        runner.run_once()
        recovered = sent(engine, server)[2]
        # Failing from the first failure (t=60) to the first success (t=840).
        assert "website RECOVERED after 13m down, now UP: HTTP 200 OK" in text(recovered)
        for _ in range(3):
            clock.advance(60)
            runner.run_once()
        assert len(sent(engine, server)) == 3

    def test_reminder_is_sent_by_the_windows_not_held_for_repeat_interval(
        self, server: GmailServer, clock: ManualClock
    ) -> None:
        """With real windows (5m group interval, 4h repeat), a reminder goes out on its own."""
        engine = Engine(server.settings(group_interval="5m", repeat_interval="4h"), clock=clock)
        try:
            monitor = CheckMonitor(engine, policy=CheckPolicy(retries=0, resend_interval=600))
            monitor.report("db", False, "refused")
            server.wait_for_messages(1, timeout=10)
            clock.advance(600)
            monitor.tick()  # no flush: the engine's own windows decide
            reminder = server.wait_for_messages(2, timeout=10)[1]
            assert "db is still DOWN after 10m (reminder 1)" in text(reminder)
        finally:
            engine.close(timeout=5)

    def test_a_second_outage_has_its_own_text(
        self, engine: Engine, server: GmailServer, clock: ManualClock
    ) -> None:
        """The second outage's emails show its own detail and downtime, not the first one's."""
        monitor = CheckMonitor(engine, policy=CheckPolicy(retries=0, recovery=1))
        for detail, downtime in (("refused", 60), ("reset", 120)):
            monitor.report("db", False, detail)
            sent(engine, server)
            clock.advance(downtime)
            monitor.report("db", True, "fine")
            sent(engine, server)
            clock.advance(3600)
        bodies = [text(m) for m in sent(engine, server)]
        assert len(bodies) == 4
        assert "db is DOWN: refused" in bodies[0]
        assert "RECOVERED after 1m down" in bodies[1]
        assert "db is DOWN: reset" in bodies[2]
        assert "RECOVERED after 2m down" in bodies[3]


class TestFlapping:
    def test_flapping_service_gives_one_flapping_alert(
        self, engine: Engine, server: GmailServer, web: FlipServer, clock: ManualClock
    ) -> None:
        """A service that keeps flipping gives one FLAPPING email, then silence."""
        policy = CheckPolicy(retries=0, recovery=1, flap_threshold=4, flap_window=600)
        check = HttpCheck(name="api", url=web.url(), timeout=5, policy=policy)
        runner = CheckRunner(engine, [check], monitor=CheckMonitor(engine))
        for round_ in range(12):
            if round_ % 2:
                web.down()
            else:
                web.up()
            clock.advance(10)
            runner.run_once()
            sent(engine, server)  # one email per event, to count them
        bodies = [text(m) for m in sent(engine, server)]
        assert sum("api is FLAPPING" in body for body in bodies) == 1
        assert "its alerts pause until it is stable for 10m" in bodies[-1]
        assert len(bodies) == 4  # DOWN, RECOVERED, DOWN, FLAPPING
        web.up()
        clock.advance(10)
        runner.run_once()  # one more flip: still quiet
        assert len(sent(engine, server)) == 4
        clock.advance(600)
        runner.run_once()
        assert "api is stable again and UP" in text(sent(engine, server)[-1])


class TestRestart:
    def test_state_survives_a_new_engine(
        self, server: GmailServer, clock: ManualClock, tmp_path: Path
    ) -> None:
        """A new engine on the same spool directory neither repeats DOWN nor forgets its start."""
        policy = CheckPolicy(retries=2, recovery=1)
        first = Engine(server.settings(), clock=clock)
        monitor = CheckMonitor(first, policy=policy)
        for _ in range(3):
            clock.advance(60)
            monitor.report("queue", False, "no consumers")
        assert len(sent(first, server)) == 1
        first.close(timeout=5)
        assert monitor.path.parent == server.settings().spool_path

        clock.advance(600)
        second = Engine(server.settings(), clock=clock)
        try:
            again = CheckMonitor(second, policy=policy)
            assert again.status("queue") is not None
            status = again.report("queue", False, "no consumers")
            assert status.state is CheckState.DOWN
            assert len(sent(second, server)) == 1
            clock.advance(60)
            again.report("queue", True, "3 consumers")
            recovered = sent(second, server)[1]
            assert "queue RECOVERED after 13m down" in text(recovered)
        finally:
            second.close(timeout=5)


class TestStateFile:
    def test_corrupt_file_starts_fresh_with_a_warning(
        self, engine: Engine, warnings_logged: list[str], tmp_path: Path
    ) -> None:
        """A corrupt state file is moved aside with a warning; the checks start fresh."""
        path = tmp_path / "state.json"
        path.write_text("{not json", encoding="utf-8")
        monitor = CheckMonitor(engine, path=path)
        status = monitor.report("db", False, "refused")
        assert status.state is CheckState.PENDING
        assert any("corrupt" in message for message in warnings_logged)
        assert (tmp_path / "state.json.corrupt").read_text(encoding="utf-8") == "{not json"
        saved = json.loads(path.read_text(encoding="utf-8"))
        assert saved["checks"]["db"]["state"] == "PENDING"

    def test_unwritable_directory_keeps_state_in_memory(
        self, engine: Engine, server: GmailServer, warnings_logged: list[str], tmp_path: Path
    ) -> None:
        """When the state cannot be written, the monitor warns once and still alerts."""
        blocker = tmp_path / "a-file"
        blocker.write_text("", encoding="utf-8")
        monitor = CheckMonitor(engine, path=blocker / "state.json", policy=CheckPolicy(retries=0))
        monitor.report("db", False, "refused")
        monitor.report("cache", False, "refused")
        assert sum("cannot write" in message for message in warnings_logged) == 1
        assert "db is DOWN" in text(sent(engine, server)[0])

    def test_entries_of_other_processes_are_kept(self, engine: Engine, tmp_path: Path) -> None:
        """Writing its own checks leaves another process's entries in the file."""
        path = tmp_path / "state.json"
        theirs = {"version": 1, "checks": {"their-check": {"version": 1, "state": "UP"}}}
        path.write_text(json.dumps(theirs), encoding="utf-8")
        CheckMonitor(engine, path=path).report("mine", True, "fine")
        saved = json.loads(path.read_text(encoding="utf-8"))["checks"]
        assert saved["their-check"] == {"version": 1, "state": "UP"}
        assert saved["mine"]["state"] == "UP"

    def test_save_waits_for_another_process_holding_the_file_lock(self, tmp_path: Path) -> None:
        """A save waits while another process holds the file's lock, then keeps what it wrote."""
        fcntl = pytest.importorskip("fcntl")
        path = tmp_path / "state.json"
        theirs = {"version": 1, "checks": {"their-check": {"version": 1, "state": "UP"}}}
        with (
            capture_alerts(spool_dir=tmp_path) as captured,
            (tmp_path / "state.json.lock").open("w") as holder,
        ):
            fcntl.flock(holder, fcntl.LOCK_EX)  # another open file: it excludes the monitor's

            def other_process_writes_then_lets_go() -> None:
                path.write_text(json.dumps(theirs), encoding="utf-8")
                fcntl.flock(holder, fcntl.LOCK_UN)

            other = threading.Timer(0.3, other_process_writes_then_lets_go)
            started = time.monotonic()
            other.start()
            CheckMonitor(captured.engine, path=path).report("mine", True, "fine")
            waited = time.monotonic() - started
            other.join()
        assert waited >= 0.3
        saved = json.loads(path.read_text(encoding="utf-8"))["checks"]
        assert sorted(saved) == ["mine", "their-check"]


class TestAlerts:
    def test_source_key_group_and_levels(self, tmp_path: Path) -> None:
        """Check alerts have source "check", a key per event, group "checks"; RECOVERED is INFO."""
        with capture_alerts(spool_dir=tmp_path) as captured:
            monitor = CheckMonitor(captured.engine, policy=CheckPolicy(retries=0, recovery=1))
            monitor.report("db", False, "refused", at=1000.0)
            monitor.report("db", True, "fine", at=1090.0)
            problems = captured.problems
        assert [p.alert.level for p in problems] == [logging.ERROR, logging.INFO]
        assert {p.alert.source for p in problems} == {"check"}
        assert {p.alert.group for p in problems} == {"checks"}
        assert {p.alert.logger for p in problems} == {"db"}
        # A key replaces the fingerprint; the group keeps it apart from other groups'.
        fingerprints = {p.alert.fingerprint for p in problems}
        assert fingerprints == {
            ("key", "check db down #1", "group", "checks"),
            ("key", "check db recovered #1", "group", "checks"),
        }

    def test_empty_name_is_refused(self, engine: Engine) -> None:
        """report() with an empty name raises ValueError naming the problem."""
        with pytest.raises(ValueError, match="non-empty name"):
            CheckMonitor(engine).report(" ", False)


class TestEngineReport:
    def test_push_style_report_alerts(
        self, engine: Engine, server: GmailServer, clock: ManualClock
    ) -> None:
        """engine.report() goes through the engine's own monitor and alerts on DOWN."""
        for _ in range(3):
            clock.advance(30)
            engine.report("nightly-export", False, "exit code 2")
        messages = sent(engine, server)
        assert len(messages) == 1
        assert "nightly-export is DOWN: exit code 2" in text(messages[0])

    def test_never_raises(self, server: GmailServer) -> None:
        """engine.report() swallows bad input and a closed engine: the caller never breaks."""
        engine = Engine(server.settings())
        engine.report("", False)
        engine.close(timeout=5)
        engine.report("db", False, "refused")

    def test_ticker_sends_reminders_without_results(
        self,
        engine: Engine,
        server: GmailServer,
        clock: ManualClock,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The monitor's ticker on the engine's loop sends a due reminder by itself."""
        monkeypatch.setattr(_monitor, "TICK_INTERVAL", 0.02)
        policy = CheckPolicy(retries=0, resend_interval=60)
        engine.report("db", False, "refused", policy=policy)
        server.wait_for_messages(1, timeout=10)
        clock.advance(60)
        messages = server.wait_for_messages(2, timeout=10)
        assert "db is still DOWN after 1m (reminder 1)" in text(messages[1])
