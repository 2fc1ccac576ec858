"""The engine: intake, counting, windows and quotas end to end, with an in-memory channel."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from smtp_alerts import AlertHandler, Engine, Settings
from smtp_alerts._delivery.spool import Spool
from smtp_alerts._delivery.spool.gate import sqlite_gate
from smtp_alerts._engine.intake import REPORTED
from smtp_alerts._engine.render import RenderContext, render
from smtp_alerts.errors import ConnectError
from smtp_alerts.models import Digest, OutgoingMessage
from smtp_alerts.testing import ManualClock
from smtp_alerts.transports import MemoryTransport, Transport


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "to": ["oncall@example.com"],
        "from_": "alerts@example.com",
        "group_wait": "10s",
        "shutdown_timeout": "5s",
    }
    values.update(overrides)
    return Settings(**values)


class Recording(Protocol):
    sent: list[OutgoingMessage]


def digests(transport: Recording) -> list[Digest]:
    found = [message.digest for message in transport.sent]
    assert all(digest is not None for digest in found)
    return [digest for digest in found if digest is not None]


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("tests.engine.app")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    yield log
    for handler in log.handlers[:]:
        log.removeHandler(handler)
        handler.close()


class GatedTransport(Transport):
    """A channel that blocks every send until the test opens the gate."""

    name = "gated"

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []
        self.entered = threading.Event()
        self._gate = threading.Event()

    def open(self) -> None:
        self._gate.set()

    async def send(self, message: OutgoingMessage, /) -> None:
        self.entered.set()
        # The gate is opened from the test's thread, so a threading.Event polled
        # from the loop, not an asyncio.Event.
        while not self._gate.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        self.sent.append(message)


class FailingTransport(Transport):
    """A channel that refuses the first ``failures`` sends, then takes the rest."""

    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[OutgoingMessage] = []

    async def send(self, message: OutgoingMessage, /) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectError("connection refused", channel=self.name, step="connect")
        self.sent.append(message)


class TestCounting:
    def test_repeats_are_one_row_with_exact_count(self, logger: logging.Logger) -> None:
        """10,000 repeats of one call site become one problem with count 10,000."""
        transport = MemoryTransport()
        engine = Engine(make_settings(), transport=transport)
        logger.addHandler(AlertHandler(engine=engine))
        for i in range(10_000):
            logger.error("x %s", i)
        assert engine.flush(timeout=10)
        (digest,) = digests(transport)
        (problem,) = digest.problems
        assert problem.count == 10_000
        assert problem.alert.message == "x 0"
        assert problem.first_seen <= problem.last_seen
        engine.close()

    def test_exact_counts_with_eight_threads(self, logger: logging.Logger) -> None:
        """Eight threads logging at once lose and double-count nothing."""
        transport = MemoryTransport()
        engine = Engine(make_settings(queue_size=1_000_000), transport=transport)
        logger.addHandler(AlertHandler(engine=engine))
        start = threading.Barrier(8)

        def work(n: int) -> None:
            own = logging.getLogger(f"{logger.name}.thread{n}")  # a problem of its own
            start.wait()
            for i in range(5_000):
                logger.error("shared problem %s", i)
                if i % 100 == 0:
                    own.error("thread %d problem", n)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert engine.flush(timeout=10)
        counts: dict[str, int] = {}
        for digest in digests(transport):
            for problem in digest.problems:
                counts[problem.alert.message] = counts.get(problem.alert.message, 0) + problem.count
        assert counts.pop("shared problem 0") == 40_000
        assert counts == {f"thread {n} problem": 50 for n in range(8)}
        assert engine.stats().accepted == 40_400
        assert engine.stats().dropped == 0
        engine.close()

    def test_repeats_right_after_their_new_problem_are_all_counted(
        self, logger: logging.Logger
    ) -> None:
        """New problems and repeats queue apart; no repeat is counted before its problem.

        Four threads each log 200 new problems (texts with nothing to mask,
        some pre-formatted with a number), each repeated at once, from two
        threads at a time: every occurrence is in some digest, exactly once.
        """
        transport = MemoryTransport()
        engine = Engine(make_settings(queue_size=1_000_000), transport=transport)
        logger.addHandler(AlertHandler(engine=engine))
        words = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
        start = threading.Barrier(4)

        def work(n: int) -> None:
            start.wait()
            for j in range(200):
                text = f"{words[n]} {words[j % 8]} {words[j // 8 % 8]} {words[j // 64]}"
                for _ in range(5):
                    logger.error(text)  # a literal text: known by its record key
                    logger.error(f"{text} after {j} tries")  # noqa: G004 - by its shape
                    logger.error("%s, again", text)  # a template with an argument

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert engine.flush(timeout=10)
        total = sum(p.count for digest in digests(transport) for p in digest.problems)
        assert engine.stats().dropped == 0
        assert engine.stats().accepted == total == 4 * 200 * 5 * 3
        engine.close()

    @pytest.mark.parametrize("preformatted", [False, True], ids=["template", "f-string"])
    def test_a_row_has_a_later_sample_from_its_repeats(
        self, logger: logging.Logger, preformatted: bool
    ) -> None:
        """Repeats give the row a second sample: the email shows order 0 and a later order."""
        transport = MemoryTransport()
        engine = Engine(make_settings(), transport=transport)
        logger.addHandler(AlertHandler(engine=engine))
        for order in range(1_000):
            if preformatted:
                logger.error(f"payment timed out for order {order}")  # noqa: G004 - the case
            else:
                logger.error("payment timed out for order %s", order)
        assert engine.flush(timeout=10)
        ((problem,),) = (digest.problems for digest in digests(transport))
        assert problem.count == 1_000
        assert problem.alert.message == "payment timed out for order 0"
        assert problem.last_message.startswith("payment timed out for order ")
        assert problem.last_message != problem.alert.message
        engine.close()

    def test_fstring_messages_group_by_inferred_template(self, logger: logging.Logger) -> None:
        """Pre-formatted messages that differ only in numbers are one problem."""
        transport = MemoryTransport()
        engine = Engine(make_settings(), transport=transport)
        logger.addHandler(AlertHandler(engine=engine))
        for user in range(50):
            logger.error(f"login failed for user {user}")  # noqa: G004 - the point of the test
        assert engine.flush(timeout=10)
        (digest,) = digests(transport)
        assert [p.count for p in digest.problems] == [50]
        engine.close()

    def test_distinct_problems_past_the_cap_share_one_row(self, logger: logging.Logger) -> None:
        """3,000 distinct texts: 1,000 rows and one other-problems row; every event counted."""
        transport = MemoryTransport()
        engine = Engine(make_settings(), transport=transport)
        logger.addHandler(AlertHandler(engine=engine))
        letters = "ghijklmnopqrstuvwxyz"  # no hex digits: nothing in a name is masked
        names = [f"{a}{b}{c}" for a in letters for b in letters for c in letters[:8]][:3_000]
        for name in names * 2:  # each twice: the second time a repeat
            logger.error(f"user {name} could not log in")  # noqa: G004 - the point of the test
        assert engine.flush(timeout=10)
        (message,) = transport.sent
        digest = message.digest
        assert digest is not None
        assert len(digest.problems) == 1_001
        (row,) = [p for p in digest.problems if p.alert.source == "other"]
        assert row.count == 2 * 2_000
        assert row.alert.message.startswith(f"2,000 more problems from {logger.name}")
        assert sum(p.count for p in digest.problems) == 6_000
        assert engine.stats().dropped == 0
        text = message.email.get_body(("plain",))
        assert text is not None
        body = text.get_content()
        assert f"2,000 more problems from {logger.name}, counted together" in body
        assert "ERROR: user ggg could not log in (1,001 problems" in message.email["Subject"]
        assert len(message.email.as_bytes()) < 1_000_000
        engine.close()

    def test_forgetting_an_evicted_problem_forgets_no_other(self, logger: logging.Logger) -> None:
        """The engine forgets only the problems it evicted: the rest stay cheap repeats."""
        transport = MemoryTransport()
        engine = Engine(make_settings(), transport=transport)
        logger.addHandler(AlertHandler(engine=engine))

        def log_all(n: int) -> None:  # one call site per problem
            logger.error("problem A %s", n)
            logger.error(f"problem B {n}")  # noqa: G004 - a call-site shape, forgotten too
            logger.error("problem C %s", n)

        log_all(0)
        assert engine.flush(timeout=10)
        first = digests(transport)[0].problems
        fingerprints = {p.alert.message: p.alert.fingerprint for p in first}
        kept = engine._known[fingerprints["problem C 0"]]
        engine._forget([fingerprints["problem A 0"], fingerprints["problem B 0"]])
        assert kept.fingerprint is not None
        for n in range(1, 11):
            log_all(n)
        assert engine.flush(timeout=10)
        counts = {p.alert.message: p.total for p in digests(transport)[1].problems}
        assert counts == {"problem A 0": 11, "problem B 0": 11, "problem C 0": 11}
        assert engine._known[fingerprints["problem C 0"]] is kept
        assert engine.stats().dropped == 0
        engine.close()

    def test_an_exception_raised_as_an_alert_is_not_logged_twice(
        self, logger: logging.Logger
    ) -> None:
        """A framework that logs what its integration reported makes one problem, not two."""
        transport = MemoryTransport()
        engine = Engine(make_settings(), transport=transport)
        logger.addHandler(AlertHandler(engine=engine))
        orders: dict[str, int] = {}
        try:
            orders["missing"]
        except KeyError as error:
            engine.alert("GET /orders/{id} failed", exc=error, key="GET /orders/{id} KeyError")
            logger.exception("Internal Server Error: /orders/7")  # what Django logs
        try:
            orders["other"]
        except KeyError:
            logger.exception("Internal Server Error: /orders/8")  # not reported: counted
        assert engine.flush(timeout=10)
        (digest,) = digests(transport)
        assert sorted(p.alert.message for p in digest.problems) == [
            "GET /orders/{id} failed",
            "Internal Server Error: /orders/8",
        ]
        engine.close()

    def test_a_record_marked_as_reported_is_not_counted(self, logger: logging.Logger) -> None:
        """An integration that reported an event (structlog) marks the stdlib record it writes."""
        transport = MemoryTransport()
        engine = Engine(make_settings(), transport=transport)
        logger.addHandler(AlertHandler(engine=engine))
        logger.error("login failed", extra={REPORTED: True})
        logger.error("login failed for real")
        assert engine.flush(timeout=10)
        (digest,) = digests(transport)
        assert [p.alert.message for p in digest.problems] == ["login failed for real"]
        engine.close()

    def test_intake_overflow_is_counted_and_reported(self, logger: logging.Logger) -> None:
        """Records that do not fit the intake are counted, and the next digest says so."""
        transport = GatedTransport()
        engine = Engine(make_settings(queue_size=10, group_wait=0), transport=transport)
        logger.addHandler(AlertHandler(engine=engine))
        logger.critical("first")  # sent at once; the channel holds the loop
        assert transport.entered.wait(5)
        for i in range(100):
            logger.error("problem %d", i)
            logger.error(f"distinct {i}")  # noqa: G004
        assert engine.stats().dropped > 0
        transport.open()
        assert engine.flush(timeout=10)
        reported = sum(d.dropped for d in digests(transport))
        counted = sum(p.count for d in digests(transport) for p in d.problems)
        assert reported == engine.stats().dropped
        assert counted + reported == 201
        engine.close()

    def test_intake_drains_while_a_send_hangs(self, logger: logging.Logger) -> None:
        """A send that takes its time does not stop the intake from draining: nothing dropped."""
        transport = GatedTransport()
        engine = Engine(make_settings(queue_size=5_000, group_wait=0), transport=transport)
        logger.addHandler(AlertHandler(engine=engine))
        logger.critical("sent at once; the channel holds it")
        assert transport.entered.wait(5)
        # 20 times the intake's capacity goes in while the send hangs. Between
        # bursts smaller than the intake, wait for the intake to drain: that it
        # drains at all is the point (a loaded CI machine may starve the engine
        # thread for longer than a tight loop takes to fill 5,000 slots; the
        # speed of the drain is the benchmark's to measure).
        for burst in range(25):
            for i in range(4_000):
                logger.error("repeat %s", burst * 4_000 + i)
            deadline = time.monotonic() + 10
            while engine._queued() and time.monotonic() < deadline:
                time.sleep(0.001)
            assert not engine._queued(), "the intake stopped draining while the send hangs"
        transport.open()
        assert engine.flush(timeout=10)
        assert engine.stats().dropped == 0
        counted = sum(p.count for d in digests(transport) for p in d.problems)
        assert counted == 100_001
        engine.close()

    def test_library_loggers_never_alert(self, logger: logging.Logger) -> None:
        """Records of our own and our dependencies' loggers never become alerts."""
        transport = MemoryTransport()
        engine = Engine(make_settings(), transport=transport)
        handler = AlertHandler(engine=engine)
        names = ["smtp_alerts.delivery", "aiosmtplib", "apprise", "asyncio", "mail.log"]
        for name in names:
            library = logging.getLogger(name)
            library.addHandler(handler)
            library.error("delivery failed")
        assert engine.flush(timeout=5)
        assert transport.sent == []
        for name in names:
            logging.getLogger(name).removeHandler(handler)
        engine.close()

    def test_bad_records_still_alert(self, logger: logging.Logger) -> None:
        """A record with a broken format string or a non-string message is still captured."""
        transport = MemoryTransport()
        engine = Engine(make_settings(), transport=transport)
        logger.addHandler(AlertHandler(engine=engine))
        logger.error("%d items", "not a number")
        logger.error({"unhashable": ["dict"]})
        assert engine.flush(timeout=5)
        messages = sorted(p.alert.message for p in digests(transport)[0].problems)
        assert "message formatting failed" in messages[0] or "formatting failed" in messages[1]
        assert any("unhashable" in m for m in messages)
        engine.close()


class TestWindows:
    def test_critical_skips_the_group_wait(self, logger: logging.Logger) -> None:
        """A CRITICAL record is sent without waiting for GROUP_WAIT."""
        transport = MemoryTransport()
        engine = Engine(make_settings(group_wait="1h"), transport=transport)
        logger.addHandler(AlertHandler(engine=engine))
        logger.error("an error waits")
        logger.critical("the database is gone")
        deadline = threading.Event()
        for _ in range(200):
            if transport.sent:
                break
            deadline.wait(0.01)
        (digest,) = digests(transport)
        assert digest.reason == "critical"
        assert {p.alert.message for p in digest.problems} == {
            "the database is gone",
            "an error waits",
        }
        engine.close()

    def test_follow_up_digest_threads_under_the_first(self, logger: logging.Logger) -> None:
        """A second digest of one incident replies to the first one."""
        transport = MemoryTransport()
        engine = Engine(make_settings(), transport=transport)
        logger.addHandler(AlertHandler(engine=engine))
        for _ in range(2):  # the same problem again: nothing new, one thread
            logger.error("first problem")
            assert engine.flush(timeout=5)
        logger.error("second problem")  # something new: a subject that names it
        assert engine.flush(timeout=5)
        first, repeat, news = transport.sent
        assert repeat.email["In-Reply-To"] == first.message_id
        assert str(repeat.email["Subject"]) == f"Re: {first.email['Subject']}"
        assert news.email["In-Reply-To"] == first.message_id
        assert str(news.email["Subject"]).endswith("ERROR: second problem (1 event)")
        engine.close()


class TestQuota:
    def test_quota_caps_emails_with_one_notice(self, logger: logging.Logger) -> None:
        """The email that reaches the hourly cap says so; the rest waits for the window."""
        clock = ManualClock()
        transport = MemoryTransport()
        engine = Engine(
            make_settings(max_per_hour=2, group_wait=0), transport=transport, clock=clock
        )
        logger.addHandler(AlertHandler(engine=engine))
        for n in range(3):
            logger.error(f"problem {n} of a kind")  # noqa: G004
            logger.error("problem %d", n)
            engine.flush(timeout=5)
        assert len(transport.sent) == 2
        assert not digests(transport)[0].notices
        assert any("quota" in notice.lower() for notice in digests(transport)[1].notices)
        assert not engine.flush(timeout=5)  # held back: not delivered yet
        clock.advance(3601)
        assert engine.flush(timeout=5)
        third = digests(transport)[2]
        assert sum(p.count for p in third.problems) == 2
        assert any("delayed" in notice.lower() for notice in third.notices)
        engine.close()


def flush_into(engine: Engine, answers: list[bool]) -> None:
    answers.append(engine.flush(timeout=60))


class TestLifecycle:
    def test_transient_failure_is_retried_within_the_round(self, logger: logging.Logger) -> None:
        """A channel that refuses once is tried again after a short backoff and takes it."""
        transport = FailingTransport(failures=1)
        engine = Engine(make_settings(), transport=transport)
        logger.addHandler(AlertHandler(engine=engine))
        logger.error("boom")
        assert engine.flush(timeout=10)
        assert len(transport.sent) == 1
        assert engine.stats().failures == {"ConnectError": 1}
        engine.close()

    def test_undelivered_digest_waits_in_the_spool(self, logger: logging.Logger) -> None:
        """A digest no try of the round delivered waits in the spool; the next flush sends it."""
        transport = FailingTransport(failures=3)  # every try of the first round
        engine = Engine(make_settings(), transport=transport)
        logger.addHandler(AlertHandler(engine=engine))
        logger.error("boom")
        assert not engine.flush(timeout=10)
        assert engine.stats().undelivered == 1
        assert engine.flush(timeout=10)
        assert len(transport.sent) == 1
        assert engine.stats().undelivered == 0
        assert engine.stats().failures == {"ConnectError": 3}
        engine.close()

    def test_stats_never_wait_for_the_spool(self, logger: logging.Logger, tmp_path: Path) -> None:
        """While a thread is inside SQLite (a push, a claim), stats() answers: the last count."""
        engine = Engine(make_settings(spool_dir=tmp_path), transport=FailingTransport(failures=3))
        logger.addHandler(AlertHandler(engine=engine))
        logger.error("boom")
        assert not engine.flush(timeout=10)
        answers: list[int] = []
        asker = threading.Thread(target=lambda: answers.append(engine.stats().undelivered))
        with sqlite_gate():  # what every SQLite call of the process holds, a push's too
            asker.start()
            asker.join(timeout=10)
            assert answers == [1]  # at once, and what the flush's round counted
        engine.close()

    def test_stats_count_an_earlier_runs_digests_from_the_start(self, tmp_path: Path) -> None:
        """What ``spool flush`` prints while it sends what an earlier run left: all of it."""
        context = RenderContext(
            sender="alerts@example.com", recipients=("oncall@example.com",), hostname="web-1"
        )
        with Spool(tmp_path) as spool:
            for n in range(3):
                digest = Digest("default", f"incident-{n}", 1, (), 1_700_000_000.0 + n)
                spool.add(render(digest, context), claimed=False)
        transport = GatedTransport()
        engine = Engine(make_settings(spool_dir=tmp_path), transport=transport)
        engine.start()
        assert transport.entered.wait(10)  # the first of the three is being sent
        assert engine.stats().undelivered == 3
        transport.open()
        assert engine.flush(timeout=10)
        assert engine.stats().undelivered == 0
        engine.close()
        with Spool(tmp_path) as spool:
            assert [saved["spooled"] for _, _, saved in spool.counters()] == [0]

    def test_a_spool_that_cannot_be_counted_leaves_the_engine_running(
        self, logger: logging.Logger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A flush's recount that fails (a busy or broken file) answers the flush all the same."""

        def fails(spool: Spool) -> int:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(Spool, "__len__", fails)
        transport = MemoryTransport()
        engine = Engine(make_settings(spool_dir=tmp_path), transport=transport)
        logger.addHandler(AlertHandler(engine=engine))
        logger.error("boom")
        assert engine.flush(timeout=10)
        logger.error("boom again, elsewhere: %s", 2)
        assert engine.flush(timeout=10)
        assert len(transport.sent) == 2
        engine.close()

    def test_a_flush_that_comes_with_the_close_is_answered(self, tmp_path: Path) -> None:
        """A flush from another thread racing close() gets its answer, not its timeout."""
        for n in range(5):
            engine = Engine(
                make_settings(spool_dir=tmp_path / str(n), group_wait=3600),
                transport=MemoryTransport(),
            )
            engine.alert("boom")
            assert engine.flush(timeout=10)  # started, with its store
            answers: list[bool] = []
            flusher = threading.Thread(target=flush_into, args=(engine, answers))
            flusher.start()
            engine.close(timeout=10)
            flusher.join(timeout=20)
            assert answers == [True]

    def test_close_twice_and_from_threads(self, logger: logging.Logger) -> None:
        """close() delivers what is pending and is safe to call again, from any thread."""
        transport = MemoryTransport()
        engine = Engine(make_settings(), transport=transport)
        handler = AlertHandler(engine=engine)
        logger.addHandler(handler)
        logger.error("pending at close")
        results: list[bool] = []
        closers = [
            threading.Thread(target=lambda: results.append(engine.close())) for _ in range(3)
        ]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join()
        assert results == [True, True, True]
        assert len(transport.sent) == 1
        handler.close()
        handler.close()
        logger.error("after close")  # not sent, not raised: counted as late
        assert engine.stats().late == 1

    def test_engine_that_never_alerted_starts_no_thread(self) -> None:
        """An engine with nothing to send never starts its thread."""
        engine = Engine(make_settings(), transport=MemoryTransport())
        assert engine.flush(timeout=1)
        assert engine.close()
        assert engine._thread is None

    def test_direct_alert_api(self) -> None:
        """engine.alert() deduplicates by key and carries details and exceptions."""
        transport = MemoryTransport()
        engine = Engine(make_settings(), transport=transport)
        try:
            raise ValueError("disk full")
        except ValueError as exc:
            accepted = engine.alert("backup failed", details="rsync exit 23", exc=exc, name="cron")
        assert accepted
        assert engine.alert("backup failed", details="again", name="cron")
        assert engine.flush(timeout=5)
        (digest,) = digests(transport)
        counts = sorted(p.count for p in digest.problems)
        assert counts == [1, 1]  # different exception types: two problems
        with_exc = next(p for p in digest.problems if p.alert.exc_type)
        assert with_exc.alert.exc_type == "ValueError"
        assert "rsync exit 23" in (with_exc.alert.traceback or "")
        assert "disk full" in (with_exc.alert.traceback or "")
        engine.close()
