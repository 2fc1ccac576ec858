"""Shared fixtures: a clean environment and a clean logging tree for every test."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from smtp_alerts import _engine


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own SMTP_ALERTS_* settings."""
    for name in list(os.environ):
        if name.startswith("SMTP_ALERTS_"):
            monkeypatch.delenv(name)


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
    engine = _engine.swap_default_engine(None)
    if engine is not None:
        engine.close(timeout=5)
