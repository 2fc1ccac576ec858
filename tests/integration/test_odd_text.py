"""Odd text never costs a digest: each odd case beside an ordinary error, end to end.

A lone surrogate (a file name from ``os.listdir``), an ``IntEnum`` level, a
failing ``__str__``/``__repr__`` in the message, an argument, the exception
or the context: the email still arrives with both problems, the odd field
degraded and saying so. Also: groups are incidents of their own, keys and
contexts from records and ``engine.alert``, records after close, text
clipped at capture, and an engine start that a signal handler interrupts.
"""

from __future__ import annotations

import enum
import html
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from smtp_alerts import AlertHandler, Engine
from smtp_alerts._sources.crash import report_crash
from smtp_alerts.testing import GmailServer, ReceivedMessage
from tests.helpers import run_script


class MyLevel(enum.IntEnum):
    BAD = 45


class Unprintable:
    def __str__(self) -> str:
        raise ValueError("no __str__")

    def __repr__(self) -> str:
        raise ValueError("no __repr__")


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise ValueError("no __str__")

    def __repr__(self) -> str:
        raise ValueError("no __repr__")


def text_of(received: ReceivedMessage) -> str:
    part = received.message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(received: ReceivedMessage) -> str:
    part = received.message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def _raise_unprintable(log: logging.Logger) -> None:
    try:
        raise UnprintableError
    except UnprintableError:
        log.exception("the odd one")


# Each case logs one odd record; the test adds an ordinary one beside it.
ODD_CASES: dict[str, tuple[Callable[[logging.Logger], None], str]] = {
    "surrogate argument": (
        lambda log: log.error("the odd one: file %s", "report-\udcff.csv"),
        "report-\\udcff.csv",
    ),
    "IntEnum level": (lambda log: log.log(MyLevel.BAD, "the odd one"), "the odd one"),
    "failing argument": (
        lambda log: log.error("the odd one: %s", Unprintable()),
        "unprintable Unprintable: ValueError in __repr__",
    ),
    "failing message": (
        lambda log: log.error(Unprintable()),
        "unprintable Unprintable: ValueError in __str__",
    ),
    "failing exception": (_raise_unprintable, "UnprintableError"),
    "control characters": (
        lambda log: log.error("the odd one\x00\x1b[31m\r\nSubject: injected"),
        "the odd one",
    ),
    "failing context": (
        lambda log: log.error("the odd one", extra={"alert_context": {"obj": Unprintable()}}),
        "unprintable Unprintable",
    ),
    "surrogate in exception": (
        lambda log: log.error("the odd one", exc_info=FileNotFoundError(2, "no", "x-\udcff")),
        "x-\\udcff",
    ),
}


@pytest.mark.parametrize("case", ODD_CASES)
def test_odd_text_beside_an_ordinary_error_arrives(
    case: str, gmail_server: GmailServer, log: logging.Logger
) -> None:
    """One email with both problems; the odd field degraded and saying so; nothing raised."""
    action, expected = ODD_CASES[case]
    engine = Engine(gmail_server.settings(group_wait="1h"))
    handler = AlertHandler(engine=engine)
    errors: list[logging.LogRecord] = []
    handler.handleError = errors.append  # type: ignore[method-assign, assignment]
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.error("an ordinary error")
    action(log)
    assert engine.flush(timeout=20)
    (received,) = gmail_server.messages
    text = text_of(received)
    assert "2 problems" in received.message["Subject"]
    assert "an ordinary error" in text
    assert expected in text
    assert html.escape(expected) in html_of(received)
    assert len(received.message.get_all("Subject") or ()) == 1  # no header injected
    assert "\x1b" not in received.raw.decode("utf-8")  # no terminal escape either
    assert errors == []  # an alert, not handleError
    assert engine.stats().undelivered == 0


def test_crash_whose_str_raises_is_reported(gmail_server: GmailServer) -> None:
    """A crash with a failing __str__ still becomes the CRITICAL crash alert."""
    engine = Engine(gmail_server.settings(group_wait="1h"))
    try:
        raise UnprintableError
    except UnprintableError as exc:
        accepted = report_crash(exc, engine=engine)
    assert accepted
    engine.alert("an ordinary error")
    assert engine.flush(timeout=20)
    (received,) = gmail_server.messages
    text = text_of(received)
    assert "uncaught UnprintableError" in text
    assert "an ordinary error" in text
    engine.close()


def test_odd_direct_alert_arguments_degrade(gmail_server: GmailServer) -> None:
    """engine.alert with an IntEnum level, an unprintable message and details still alerts."""
    engine = Engine(gmail_server.settings(group_wait="1h"))
    assert engine.alert(Unprintable(), level=MyLevel.BAD, details=Unprintable())  # type: ignore[arg-type]
    engine.alert("an ordinary error")
    assert engine.flush(timeout=20)
    (received,) = gmail_server.messages
    assert "unprintable Unprintable" in text_of(received)
    engine.close()


class TestGroups:
    def test_one_call_site_many_groups_makes_many_incidents(
        self, gmail_server: GmailServer, log: logging.Logger
    ) -> None:
        """300 groups from one call site: 300 incidents formed, not one.

        The hourly quota (20) holds most of them back: counted, not emailed.
        """
        engine = Engine(gmail_server.settings(group_wait="1h"))
        log.addHandler(AlertHandler(engine=engine))
        for group in range(300):
            for _ in range(2):
                log.error("sync failed", extra={"alert_group": f"tenant-{group}"})
        assert not engine.flush(timeout=60)  # the quota holds some back
        stats = engine.stats()
        assert stats.open_incidents == 300
        assert stats.accepted == 600
        assert stats.digests == 20
        received = gmail_server.messages
        assert len(received) == 20
        incidents = {message.message["X-Smtp-Alerts-Incident"] for message in received}
        assert len(incidents) == 20
        assert all("(2 events)" in message.message["Subject"] for message in received)
        engine.close(timeout=5)  # says on stderr what the quota held back

    def test_same_group_still_one_problem(
        self, gmail_server: GmailServer, log: logging.Logger
    ) -> None:
        """Records of one group from one call site stay one problem of one incident."""
        engine = Engine(gmail_server.settings(group_wait="1h"))
        log.addHandler(AlertHandler(engine=engine))
        for _ in range(5):
            log.error("sync failed", extra={"alert_group": "billing"})
        log.error("sync failed")  # the default group: another incident
        assert engine.flush(timeout=20)
        assert len(gmail_server.messages) == 2
        assert engine.stats().accepted == 6


class TestKeysAndContext:
    def test_record_key_and_context(self, gmail_server: GmailServer, log: logging.Logger) -> None:
        """alert_key joins call sites into one problem; alert_context shown, scrubbed, escaped."""
        engine = Engine(gmail_server.settings(group_wait="1h"))
        log.addHandler(AlertHandler(engine=engine))
        context = {
            "order": 42,
            "note": "<script>alert(1)</script>",
            "password": "hunter2",
            "api_key": "sk-123456",
            "headers": {"Authorization": "Bearer abc.def", "accept": "json"},
            "user_cookie": "sessionid=xyz",
        }
        log.error("charge timed out", extra={"alert_key": "charge", "alert_context": context})
        log.error("charge took too long", extra={"alert_key": "charge"})
        assert engine.flush(timeout=20)
        (received,) = gmail_server.messages
        text, page = text_of(received), html_of(received)
        assert "(2 events)" in received.message["Subject"]
        for secret in ("hunter2", "sk-123456", "abc.def", "xyz"):
            assert secret not in received.raw.decode("utf-8", "replace")
        assert "order: 42" in text
        assert "headers.accept: json" in text
        assert "password: [masked]" in text
        assert "&lt;script&gt;" in page
        assert "<script>" not in page
        engine.close()

    def test_engine_alert_key_and_context(self, gmail_server: GmailServer) -> None:
        """engine.alert(key=, context=): one problem per key, the context in both parts."""
        engine = Engine(gmail_server.settings(group_wait="1h"))
        engine.alert("db down (try 1)", key="db", context={"host": "db-1", "token": "t0k3n"})
        engine.alert("db down (try 2)", key="db")
        engine.alert("db down", key="other")
        assert engine.flush(timeout=20)
        (received,) = gmail_server.messages
        text = text_of(received)
        assert "2 problems, 3 events" in received.message["Subject"]
        assert "host: db-1" in text
        assert "host</b>: db-1" in html_of(received)
        assert "t0k3n" not in received.raw.decode("utf-8", "replace")
        engine.close()


def test_records_after_close_are_reported(tmp_path: Path, gmail_server: GmailServer) -> None:
    """Records from an atexit handler that runs after ours: one stderr line per burst, counted."""
    result = run_script(
        tmp_path,
        """
        import atexit, logging
        log = logging.getLogger("app")
        # Registered before the library's own exit hook, so it runs after it.
        atexit.register(lambda: [log.error("late %d", i) for i in range(5)])
        from smtp_alerts import AlertHandler
        log.addHandler(AlertHandler())
        log.error("in time")
        """,
        gmail_server,
    )
    assert result.returncode == 0, result.stderr
    assert len(gmail_server.wait_for_messages(1)) == 1
    stderr = result.stderr
    assert "logged after the engine closed and will not be sent: 'late 0'" in stderr
    assert "5 records were logged after the engine closed" in stderr
    assert stderr.count("after the engine closed") == 2  # once per burst, not per record


def test_records_after_close_counted(gmail_server: GmailServer, log: logging.Logger) -> None:
    """Late records are counted in the stats, and a later flush reports the burst."""
    engine = Engine(gmail_server.settings())
    log.addHandler(AlertHandler(engine=engine))
    log.error("in time")
    engine.close()
    for i in range(3):
        log.error("late %d", i)
    engine.alert("late direct alert")
    assert engine.stats().late == 4


def test_huge_messages_are_clipped_at_capture(tmp_path: Path, gmail_server: GmailServer) -> None:
    """20 distinct 10 MB messages: a small email, bounded memory, every one counted."""
    result = run_script(
        tmp_path,
        """
        import logging, resource
        from smtp_alerts import AlertHandler
        log = logging.getLogger("app")
        handler = AlertHandler()
        log.addHandler(handler)
        log.error("warm-up")
        handler.flush(30)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for i in range(20):
            log.error(chr(ord("g") + i) * 10_000_000)  # 20 distinct messages: g to z
        handler.flush(30)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print("rss growth KiB", after - before)
        """,
        gmail_server,
        GROUP_WAIT="1h",
    )
    assert result.returncode == 0, result.stderr
    growth_kib = int(result.stdout.split()[-1])
    received = gmail_server.wait_for_messages(2)
    digest = received[-1]
    assert "20 problems, 20 events" in text_of(digest)  # a follow-up: "Re: <first subject>"
    assert len(digest.raw) < 1_000_000  # Gmail's limit is 25 MB
    assert "[\u2026 9,998,000 more characters cut]" in text_of(digest)  # capture's cut too
    # Two 10 MB strings live at once at most (the argument and its formatting);
    # keeping the messages whole would grow by 200 MB.
    assert growth_kib < 80_000, growth_kib


def test_signal_handler_logging_during_start_does_not_deadlock(
    tmp_path: Path, gmail_server: GmailServer
) -> None:
    """A signal handler that logs while the first error starts the engine: no hang, both sent.

    The signal is raised from inside the engine's start (while it holds its
    lock), as a SIGALRM or SIGTERM handler would interrupt it.
    """
    result = run_script(
        tmp_path,
        """
        import logging, signal
        from smtp_alerts import AlertHandler
        from smtp_alerts._engine import core
        log = logging.getLogger("app")
        handler = AlertHandler()
        log.addHandler(handler)
        signal.signal(signal.SIGUSR1, lambda *_: log.error("from the signal handler"))
        real_prepare = core.prepare_channels
        def prepare_that_is_interrupted(**kwargs):
            signal.raise_signal(signal.SIGUSR1)  # runs the handler inside _start
            return real_prepare(**kwargs)
        core.prepare_channels = prepare_that_is_interrupted
        log.error("the first error")
        print("flushed", handler.flush(30))
        """,
        gmail_server,
        timeout=30,
        GROUP_WAIT="1h",
    )
    assert result.returncode == 0, result.stderr
    assert "flushed True" in result.stdout
    (received,) = gmail_server.wait_for_messages(1)
    text = text_of(received)
    assert "from the signal handler" in text
    assert "the first error" in text
