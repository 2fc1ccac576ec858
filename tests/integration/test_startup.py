"""Start-up is cheap: attaching the handler loads none of the engine's loop or delivery.

Every gunicorn worker, cron script and CLI tool that attaches ``AlertHandler()``
pays its start-up, so it loads no pydantic, asyncio, ssl, aiosmtplib, tenacity
or apprise: those load on the engine's own thread, when the first alert starts
it. (The store's code, sqlite3 and the spool, does load with the handler: the
engine's thread puts the first alert in the store before anything else, so a
kill right after it loses nothing.) A wrong setting still fails at
construction, naming the variable. With ``FALLBACK_URLS`` set, apprise loads
off the caller's thread and the first email does not wait for it.

These tests pin the behaviour (what is imported, what is sent, what fails),
never timings: ``benchmarks/bench_startup.py`` measures those.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from smtp_alerts import AlertHandler
from smtp_alerts.errors import ConfigurationError
from smtp_alerts.testing import GmailServer
from tests.helpers import run_code, server_env, wait_for

#: What the caller's thread must not load by attaching the handler.
HEAVY = (
    "aiosmtplib",
    "apprise",
    "asyncio",
    "pydantic",
    "pydantic_settings",
    "ssl",
    "tenacity",
)

REPORT_MODULES = f"""
import json, sys
def loaded():
    return sorted(m for m in {HEAVY!r} if m in sys.modules)
"""


def test_attaching_the_handler_loads_no_engine_machinery(
    tmp_path: Path, gmail_server: GmailServer
) -> None:
    """``AlertHandler()`` from the environment: none of the heavy modules is imported."""
    env = server_env(gmail_server, SPOOL_DIR=str(tmp_path))
    result = run_code(
        REPORT_MODULES
        + """
import logging, smtp_alerts
logging.getLogger().addHandler(smtp_alerts.AlertHandler())
print(json.dumps(loaded()))
""",
        env,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert result.stderr == ""


def test_fallback_urls_leave_apprise_to_the_engine(
    tmp_path: Path, gmail_server: GmailServer
) -> None:
    """With FALLBACK_URLS, neither constructing nor the first error imports apprise in the caller.

    The first error is sent by SMTP; apprise loads on a thread of its own.
    """
    env = server_env(gmail_server, SPOOL_DIR=str(tmp_path), FALLBACK_URLS="json://127.0.0.1:9/hook")
    result = run_code(
        REPORT_MODULES
        + """
import logging, smtp_alerts
handler = smtp_alerts.AlertHandler()
log = logging.getLogger("app")
log.addHandler(handler)
after_construction = loaded()
log.error("the first error")
after_first_error = "apprise" in sys.modules
print(json.dumps([after_construction, after_first_error, handler.flush(30)]))
""",
        env,
    )
    assert result.returncode == 0, result.stderr
    after_construction, after_first_error, flushed = json.loads(result.stdout)
    assert after_construction == []
    assert after_first_error is False
    assert flushed is True
    (received,) = gmail_server.wait_for_messages(1)
    assert "the first error" in received.message["Subject"]


SLOW_APPRISE = """
import importlib.abc, importlib.machinery, os, sys, time
RELEASE, STARTED = {release!r}, {started!r}
class SlowLoader(importlib.abc.Loader):
    # Runs apprise's own module code only once the test says so: as a slow
    # import really is, in the module's code, holding only its own module
    # lock (a slow finder would hold the global import lock instead).
    def __init__(self, real):
        self.real = real
    def create_module(self, spec):
        return self.real.create_module(spec)
    def exec_module(self, module):
        open(STARTED, "w").close()
        while not os.path.exists(RELEASE):
            time.sleep(0.01)
        self.real.exec_module(module)
class SlowApprise(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "apprise":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        spec.loader = SlowLoader(spec.loader)
        return spec
sys.meta_path.insert(0, SlowApprise())
def apprise_loaded():
    return hasattr(sys.modules.get("apprise"), "Apprise")
"""


def test_first_email_goes_out_while_apprise_is_still_importing(
    tmp_path: Path, gmail_server: GmailServer
) -> None:
    """apprise's import is held up: the first error still reaches the SMTP server meanwhile."""
    release, started = tmp_path / "release", tmp_path / "apprise-import-started"
    env = server_env(
        gmail_server,
        SPOOL_DIR=str(tmp_path / "spool"),
        GROUP_WAIT="0",
        FALLBACK_URLS="json://127.0.0.1:9/hook",
    )
    script = SLOW_APPRISE.format(release=str(release), started=str(started)) + (
        """
import logging, smtp_alerts
log = logging.getLogger("app")
handler = smtp_alerts.AlertHandler()
log.addHandler(handler)
log.error("the database is down")
print("flushed", handler.flush(30), "apprise loaded", apprise_loaded(), flush=True)
"""
    )
    try:
        result = run_code(script, env, timeout=60)
    finally:
        release.touch()  # whatever happened, let a waiting import go
    assert result.returncode == 0, result.stderr
    assert "flushed True apprise loaded False" in result.stdout
    assert started.exists()  # apprise was being imported, on the engine's side
    (received,) = gmail_server.wait_for_messages(1)
    assert "the database is down" in received.message["Subject"]


class TestWrongSettingsStillFailAtConstruction:
    """The quick check loads no pydantic, yet every wrong setting fails in ``AlertHandler()``."""

    @pytest.fixture(autouse=True)
    def _valid(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setenv("SMTP_ALERTS_TO", "oncall@example.com")
        monkeypatch.setenv("SMTP_ALERTS_USERNAME", "me@gmail.com")
        monkeypatch.setenv("SMTP_ALERTS_PASSWORD", "app-password")
        monkeypatch.setenv("SMTP_ALERTS_SPOOL_DIR", str(tmp_path))

    def test_misspelt_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A misspelt name fails, naming it and the setting it resembles."""
        monkeypatch.setenv("SMTP_ALERTS_GROUP_WAT", "5s")
        with pytest.raises(ConfigurationError, match="did you mean SMTP_ALERTS_GROUP_WAIT"):
            AlertHandler()

    @pytest.mark.parametrize(
        ("name", "value"),
        [("PORT", "abc"), ("TIMEOUT", "soon"), ("TO", "not-an-address"), ("QUEUE_SIZE", "5")],
    )
    def test_bad_value(self, monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
        """A bad value fails with the settings model's own message, naming the variable."""
        monkeypatch.setenv(f"SMTP_ALERTS_{name}", value)
        with pytest.raises(ConfigurationError, match=f"SMTP_ALERTS_{name}"):
            AlertHandler()

    def test_missing_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A missing recipient fails, saying what TO holds."""
        monkeypatch.delenv("SMTP_ALERTS_TO")
        with pytest.raises(ConfigurationError, match="SMTP_ALERTS_TO is required"):
            AlertHandler()

    def test_password_is_never_shown(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Failing on another variable, the error never echoes the password."""
        monkeypatch.setenv("SMTP_ALERTS_PORT", "nope")
        with pytest.raises(ConfigurationError) as caught:
            AlertHandler()
        assert "app-password" not in str(caught.value)


def test_engine_settings_are_the_environment_checked_at_start_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gmail_server: GmailServer
) -> None:
    """The model the engine builds later is made from the snapshot checked at construction.

    A program may drop a secret from its environment once the handler is attached.
    """
    for name, value in server_env(gmail_server, SPOOL_DIR=str(tmp_path), GROUP_WAIT="0").items():
        if name.startswith("SMTP_ALERTS_"):
            monkeypatch.setenv(name, value)
    handler = AlertHandler()
    monkeypatch.delenv("SMTP_ALERTS_PASSWORD")
    monkeypatch.setenv("SMTP_ALERTS_PORT", "not a port")
    log = logging.getLogger("tests.startup")
    log.propagate = False
    log.addHandler(handler)
    try:
        log.error("sent with the settings checked at start-up")
        assert handler.flush(30)
    finally:
        log.removeHandler(handler)
        handler.close()
    assert wait_for(lambda: len(gmail_server.messages) == 1)
    assert handler.engine.settings.port == gmail_server.port


def test_no_settings_model_for_a_program_that_never_alerts(
    tmp_path: Path, gmail_server: GmailServer
) -> None:
    """A program that attaches the handler and never alerts shuts logging down without pydantic."""
    env = server_env(gmail_server, SPOOL_DIR=str(tmp_path))
    result = run_code(
        """
import logging, sys, smtp_alerts
handler = smtp_alerts.AlertHandler()
logging.getLogger().addHandler(handler)
logging.shutdown()  # flushes and closes every handler, as at exit
print("pydantic" in sys.modules, handler.engine.started)
""",
        env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
