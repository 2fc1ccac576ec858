"""structlog: keyed by logger and event, key-value pairs as scrubbed context, not counted twice."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from smtp_alerts import AlertHandler
from smtp_alerts._util.source_paths import portable_path
from tests.integration.frameworks.inprocess import (
    Captured,
    captured,
    email_text,
    example_email,
    import_without,
)

structlog = pytest.importorskip("structlog", reason="structlog is in the test extra")
from smtp_alerts.integrations.structlog import REPORTED, AlertProcessor  # noqa: E402

__all__ = ["captured"]  # the fixture, imported for the tests below


@pytest.fixture
def over_stdlib(captured: Captured) -> Iterator[logging.Logger]:
    """structlog over the standard library, rendered as JSON, with a root AlertHandler too."""
    root = logging.getLogger()
    handler = AlertHandler(engine=captured.engine)
    root.addHandler(handler)
    structlog.configure(
        processors=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso"),
            AlertProcessor(engine=captured.engine),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    yield root
    structlog.reset_defaults()
    root.removeHandler(handler)


def test_five_user_ids_are_one_problem_reported_once_without_the_password(
    captured: Captured, over_stdlib: logging.Logger
) -> None:
    """The stdlib record of each event reaches the root AlertHandler too: not counted again."""
    log = structlog.get_logger("shop.auth")
    for user_id in range(5):
        log.error("login failed", user_id=user_id, password="hunter2-SECRET")
    log.warning("slow login", user_id=9)  # below the processor's level: the root handler's
    captured.flushed()
    [problem] = captured.problems
    assert problem.count == 5
    assert problem.alert.logger == "shop.auth"
    assert problem.alert.message == "login failed"
    assert ("user_id", "0") in problem.alert.context
    assert ("password", "[masked]") in problem.alert.context
    # The caller, not structlog or logging; as a path in the project.
    assert problem.alert.location.startswith(f"{portable_path(__file__)}:")
    assert "hunter2-SECRET" not in captured.raw


def test_an_exception_is_keyed_by_its_type_with_one_traceback(
    captured: Captured, over_stdlib: logging.Logger
) -> None:
    log = structlog.get_logger("shop.orders")
    prices: dict[str, int] = {}

    def price(order: int) -> None:
        try:
            prices["sku"]
        except KeyError:
            log.exception("pricing failed", order=order, authorization="Bearer abc.SECRET")

    for order in range(3):
        price(order)
    captured.flushed()
    [problem] = captured.problems
    assert problem.count == 3
    assert problem.alert.exc_type == "KeyError"
    assert captured.plain.count("Traceback (most recent call last)") == 1
    assert "abc.SECRET" not in captured.raw


def test_the_stdlib_record_of_a_reported_event_carries_the_marker(
    captured: Captured, over_stdlib: logging.Logger
) -> None:
    """Only the record written for the event is marked, not the next one of that logger."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    over_stdlib.addHandler(keep := Keep())
    try:
        structlog.get_logger("shop.mark").error("reported")
        logging.getLogger("shop.mark").error("plain stdlib, not reported by structlog")
    finally:
        over_stdlib.removeHandler(keep)
    assert [getattr(record, REPORTED, False) for record in seen] == [True, False]
    captured.flushed()
    assert sorted(p.alert.message for p in captured.problems) == [
        "plain stdlib, not reported by structlog",
        "reported",
    ]


def test_without_the_stdlib_the_logger_name_is_the_callers_module(captured: Captured) -> None:
    structlog.configure(
        processors=[AlertProcessor(engine=captured.engine, level="warning")],
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    try:
        log = structlog.get_logger()
        for attempt in range(2):
            log.warning("disk almost full", attempt=attempt, api_key="KEY-SECRET")
        log.info("fine")
    finally:
        structlog.reset_defaults()
    captured.flushed()
    [problem] = captured.problems
    assert (problem.count, problem.alert.logger) == (2, __name__)
    assert "KEY-SECRET" not in captured.raw


def test_the_marker_is_the_one_the_intake_skips() -> None:
    from smtp_alerts._engine.intake import REPORTED as INTAKE_REPORTED

    assert REPORTED == INTAKE_REPORTED


def test_importing_without_structlog_names_the_package() -> None:
    result = import_without("structlog", "structlog")
    assert "pip install 'smtp-alerts[structlog]'" in result.stdout, result


def test_the_example_sends_one_problem_of_five_events() -> None:
    """examples/structlog_app.py: JSON over stdlib plus a root AlertHandler; 5 events, once."""
    email, output = example_email("structlog_app.py", 5)
    assert "hunter2" not in email_text(email)
    assert "hunter2" in output  # the JSON line itself is the app's
