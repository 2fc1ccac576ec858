"""Shared fixtures: a clean environment and logging tree for every test, and the suite's Redis."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from smtp_alerts._delivery import chain
from smtp_alerts._facade import swap_default_engine
from tests.redis_support import RedisServer


@pytest.fixture(autouse=True)
def _clean_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No test sees the developer's SMTP_ALERTS_* settings or writes to their spool."""
    for name in list(os.environ):
        if name.startswith("SMTP_ALERTS_"):
            monkeypatch.delenv(name)
    # The default SPOOL_DIR is the user's state dir; subprocesses inherit this too.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Restore the root logger's handlers and level, and forget the default engine."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    engine = swap_default_engine(None)
    if engine is not None:
        engine.close(timeout=5)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries within a delivery round pause milliseconds, not seconds."""
    monkeypatch.setattr(chain, "RETRY_INITIAL", 0.01)


@pytest.fixture
def log(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    """A logger of the test's own module that does not propagate; its handlers closed after."""
    logger = logging.getLogger(f"tests.{request.module.__name__.rpartition('.')[2]}")
    logger.propagate = False
    yield logger
    for handler in logger.handlers[:]:
        logger.removeHandler(handler)
        handler.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of the suite's own on 127.0.0.1 and a free port, for the whole session.

    Skipped with the reason when ``redis-server`` is not installed, except under
    CI (``CI`` set), where the Redis tests must run: there its absence fails them.
    """
    server = RedisServer.find()
    if server is None:
        reason = "redis-server is not installed (apt-get install redis-server; ./scripts/test does)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; under CI the Redis tests must run")
        pytest.skip(reason)
    server.start(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The suite's Redis, emptied for this test (and restarted if a test stopped it)."""
    redis_server.ensure_running()
    redis_server.flush()
    return redis_server.url
