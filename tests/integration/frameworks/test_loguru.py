"""loguru: keyed by call site, the traceback once, ``extra`` as the scrubbed context."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from smtp_alerts._util.source_paths import portable_path
from tests.integration.frameworks.inprocess import (
    Captured,
    captured,
    email_text,
    example_email,
    import_without,
)

loguru = pytest.importorskip("loguru", reason="loguru is in the test extra")
from smtp_alerts.integrations import loguru as integration  # noqa: E402

if TYPE_CHECKING:
    from loguru import Logger

__all__ = ["captured"]  # the fixture, imported for the tests below

USERS = ["alice", "bob", "carol", "dave", "eve"]


@pytest.fixture
def logger(captured: Captured) -> Iterator[Logger]:
    """loguru's logger with the integration's sink on the captured engine (and nothing else)."""
    loguru.logger.remove()
    integration.install(engine=captured.engine)
    yield loguru.logger
    integration.uninstall(captured.engine)


def login(logger: Logger, name: str) -> None:
    logger.bind(user=name, password="hunter2-SECRET", cookie="sessionid=COOKIE-SECRET").error(
        "login failed for {}", name
    )


def test_five_user_names_are_one_problem_with_its_context(
    captured: Captured, logger: Logger
) -> None:
    """loguru formats before any sink: the call site names the problem, not the text."""
    for name in USERS:
        login(logger, name)
    logger.warning("below the level: not an alert")
    captured.flushed()
    [problem] = captured.problems
    assert problem.count == len(USERS)
    assert problem.alert.message == "login failed for alice"
    assert problem.alert.logger == __name__
    assert problem.alert.location == (
        f"{portable_path(__file__)}:{login.__code__.co_firstlineno + 1} in login"
    )
    assert ("user", "alice") in problem.alert.context
    assert "password: [masked]" in captured.raw  # the decoded email is what is searched
    assert "hunter2-SECRET" not in captured.raw
    assert "COOKIE-SECRET" not in captured.raw


def charge(logger: Logger, order: int) -> None:
    cards: dict[str, str] = {}
    try:
        cards["card"]
    except KeyError:
        logger.exception("charge failed for order {}", order)  # noqa: PLE1205 - loguru formats with {}


def test_an_exception_has_its_traceback_once_and_not_in_the_message(
    captured: Captured, logger: Logger
) -> None:
    for order in range(3):
        charge(logger, order)
    captured.flushed()
    [problem] = captured.problems
    assert problem.count == 3
    assert problem.alert.exc_type == "KeyError"
    assert problem.alert.message == "charge failed for order 0"  # no second traceback in it
    assert captured.plain.count("Traceback (most recent call last)") == 1
    assert 'cards["card"]' in captured.plain  # the source line, read on the engine's thread


def test_bound_alert_key_and_group_steer_like_logging_extras(
    captured: Captured, logger: Logger
) -> None:
    logger.bind(alert_key="gateway", alert_context={"order": 1}).error("gateway down at {}", 1)
    logger.bind(alert_key="gateway").error("gateway down somewhere else")
    captured.flushed()
    [problem] = captured.problems
    assert problem.count == 2
    assert problem.alert.context == (("order", "1"),)


def test_one_sink_per_engine(captured: Captured, logger: Logger) -> None:
    first = integration.install(engine=captured.engine)
    assert integration.install(engine=captured.engine) == first
    logger.error("once")
    captured.flushed()
    assert [problem.count for problem in captured.problems] == [1]


def test_importing_without_loguru_names_the_package() -> None:
    result = import_without("loguru", "loguru")
    assert "pip install 'smtp-alerts[loguru]'" in result.stdout, result


def test_the_example_sends_one_digest() -> None:
    """examples/loguru_app.py: 5 logins in one row, the charge with its traceback; no password."""
    email, _ = example_email("loguru_app.py", 6)
    text = email_text(email)
    assert "hunter2" not in text
    assert "login failed for alice" in text
    assert "KeyError" in text
