"""Crash hooks: uncaught exceptions are emailed before the process ends; old hooks still run."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from smtp_alerts import install_crash_hooks
from smtp_alerts._sources.crash import CrashHooks
from smtp_alerts.testing import AlertCapture, GmailServer, ReceivedMessage, capture_alerts
from tests.helpers import run_script


def text_of(message: ReceivedMessage) -> str:
    part = message.message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


class TestDeliveredBeforeExit:
    def test_main_thread(self, tmp_path: Path) -> None:
        """An uncaught exception in the main thread is emailed; the traceback still prints."""
        source = """
            import smtp_alerts
            smtp_alerts.install_crash_hooks()

            def load(settings):
                return settings["database_url"]

            load({})
        """
        # GROUP_WAIT of an hour: only skipping it (a crash is critical) sends in time.
        with GmailServer() as server:
            result = run_script(tmp_path, source, server, GROUP_WAIT="1h")
            (received,) = server.messages
        assert result.returncode == 1
        assert "KeyError: 'database_url'" in result.stderr  # the previous hook ran
        assert "KeyError in app.py" in received.subject
        text = text_of(received)
        assert "[CRITICAL]" in text
        assert "uncaught KeyError in the main thread" in text
        assert 'return settings["database_url"]' in text

    def test_other_thread(self, tmp_path: Path) -> None:
        """An exception that ends another thread is emailed by the time the process exits."""
        source = """
            import threading
            import smtp_alerts
            smtp_alerts.install_crash_hooks()

            def work():
                raise ValueError("worker blew up")

            thread = threading.Thread(target=work, name="worker-1")
            thread.start()
            thread.join()
            print("main finished")
        """
        with GmailServer() as server:
            result = run_script(tmp_path, source, server, GROUP_WAIT="1h")
            (received,) = server.messages
        assert result.returncode == 0
        assert result.stdout == "main finished\n"
        assert "ValueError: worker blew up" in result.stderr
        text = text_of(received)
        assert "uncaught ValueError in thread 'worker-1'" in text
        assert 'raise ValueError("worker blew up")' in text

    @pytest.mark.parametrize("where", ["before asyncio.run", "inside main"])
    def test_asyncio_task(self, tmp_path: Path, where: str) -> None:
        """A task that dies with an exception nobody retrieves is emailed, hooked either way."""
        source = f"""
            import asyncio
            import smtp_alerts

            if {where == "before asyncio.run"}:
                smtp_alerts.install_crash_hooks()

            async def refresh():
                raise RuntimeError("task blew up")

            async def main():
                if {where == "inside main"}:
                    smtp_alerts.install_crash_hooks()
                asyncio.create_task(refresh(), name="refresher")
                await asyncio.sleep(0.1)

            asyncio.run(main())
        """
        with GmailServer() as server:
            result = run_script(tmp_path, source, server, GROUP_WAIT="1h")
            (received,) = server.messages
        assert result.returncode == 0
        assert "Task exception was never retrieved" in result.stderr  # asyncio still says it
        text = text_of(received)
        assert "uncaught RuntimeError in asyncio" in text
        assert 'raise RuntimeError("task blew up")' in text
        assert text.count("Traceback (most recent call last)") == 1  # reported once

    def test_sigterm_flushes_pending_alerts(self, tmp_path: Path) -> None:
        """SIGTERM delivers an alert still waiting for its group, then ends the process."""
        script = tmp_path / "service.py"
        script.write_text(
            textwrap.dedent("""
                import time
                import smtp_alerts
                smtp_alerts.install_crash_hooks()
                smtp_alerts.get_engine().alert("disk 91% full on /var")
                print("ready", flush=True)
                time.sleep(60)
            """),
            encoding="utf-8",
        )
        with GmailServer() as server:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
                [sys.executable, str(script)],
                env={**os.environ, **server.environ(GROUP_WAIT="1h")},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert process.stdout is not None
            assert process.stdout.readline() == "ready\n"
            assert server.messages == []
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=60)
            assert process.returncode == -signal.SIGTERM, stderr
            (received,) = server.messages
        assert "disk 91% full on /var" in received.subject


@pytest.fixture
def captured() -> Iterator[AlertCapture]:
    with capture_alerts() as capture:
        yield capture


def crash_info(exc: BaseException) -> tuple[type[BaseException], BaseException, TracebackType]:
    """The (type, value, traceback) of ``exc`` raised for real."""
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001 - the test raises it on purpose
        traceback = caught.__traceback__
    assert traceback is not None
    return type(exc), exc, traceback


class TestChaining:
    def test_previous_excepthook_still_runs(
        self, captured: AlertCapture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The hook reports, then calls the excepthook it replaced; uninstall puts that back."""
        seen: list[BaseException] = []
        previous = lambda _kind, value, _tb: seen.append(value)  # noqa: E731
        monkeypatch.setattr(sys, "excepthook", previous)
        with install_crash_hooks(captured.engine, force=True, sigterm=False) as hooks:
            assert sys.excepthook is not previous
            info = crash_info(LookupError("no such tenant"))
            sys.excepthook(*info)
            assert seen == [info[1]]
        assert not hooks.installed
        assert sys.excepthook is previous
        (problem,) = captured.problems
        assert problem.alert.level == logging.CRITICAL
        assert problem.alert.source == "crash"
        assert "LookupError: no such tenant" in (problem.alert.traceback or "")

    def test_previous_threading_hook_still_runs(
        self, captured: AlertCapture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A thread's crash is reported and passed to the threading hook it replaced."""
        seen: list[str] = []
        previous = lambda args: seen.append(args.thread.name)  # noqa: E731
        monkeypatch.setattr(threading, "excepthook", previous)

        def work() -> None:
            raise OSError("socket closed")

        with install_crash_hooks(captured.engine, force=True, sigterm=False):
            thread = threading.Thread(target=work, name="poller")
            thread.start()
            thread.join()
        assert threading.excepthook is previous
        assert seen == ["poller"]
        (problem,) = captured.problems
        assert problem.alert.message == "uncaught OSError in thread 'poller': socket closed"

    def test_keyboard_interrupt_is_not_a_crash(
        self, captured: AlertCapture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Ctrl-C reaches the previous hook but sends no alert."""
        seen: list[BaseException] = []
        monkeypatch.setattr(sys, "excepthook", lambda _kind, value, _tb: seen.append(value))
        with install_crash_hooks(captured.engine, force=True, sigterm=False):
            sys.excepthook(*crash_info(KeyboardInterrupt()))
        assert len(seen) == 1
        assert captured.problems == []

    def test_loop_handler_chains_and_reports_once(
        self, captured: AlertCapture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A loop's own handler still runs; the default handler's log line is not reported twice."""
        seen: list[dict[str, Any]] = []
        custom = asyncio.new_event_loop()
        default = asyncio.new_event_loop()
        custom.set_exception_handler(lambda _loop, context: seen.append(context))
        # A dictConfig elsewhere in the session may have disabled existing loggers.
        monkeypatch.setattr(logging.getLogger("asyncio"), "disabled", False)
        try:
            with install_crash_hooks(captured.engine, force=True, sigterm=False) as hooks:
                hooks.install_asyncio_handler(custom)
                hooks.install_asyncio_handler(default)
                custom.call_exception_handler(
                    {"message": "callback failed", "exception": ValueError("in a callback")}
                )
                # The default handler logs it to "asyncio", where the logger hook listens.
                default.call_exception_handler(
                    {"message": "Task exception", "exception": TypeError("in a task")}
                )
            assert len(seen) == 1
            assert custom.get_exception_handler() is not None
            assert default.get_exception_handler() is None  # uninstalled
        finally:
            custom.close()
            default.close()
        messages = sorted(problem.alert.message for problem in captured.problems)
        assert messages == [
            "uncaught TypeError in asyncio (Task exception): in a task",
            "uncaught ValueError in asyncio (callback failed): in a callback",
        ]
        assert all(problem.count == 1 for problem in captured.problems)


class TestInstalling:
    def test_not_installed_in_an_interactive_session(
        self, captured: AlertCapture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """In the REPL an exception is not a crash: nothing is hooked unless forced."""
        monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)
        before = sys.excepthook
        hooks = install_crash_hooks(captured.engine)
        assert not hooks.installed
        assert sys.excepthook is before
        with install_crash_hooks(captured.engine, force=True, sigterm=False) as forced:
            assert forced.installed
            assert sys.excepthook is not before

    def test_second_install_returns_the_same_hooks(self, captured: AlertCapture) -> None:
        """Installing twice does not chain twice (which would report every crash twice)."""
        with install_crash_hooks(captured.engine, force=True, sigterm=False) as first:
            assert install_crash_hooks(captured.engine, force=True) is first
        again = install_crash_hooks(captured.engine, force=True, sigterm=False)
        try:
            assert again is not first
        finally:
            again.uninstall()

    def test_sigterm_handler_only_replaces_the_default(
        self, captured: AlertCapture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A program's own SIGTERM handler is left in place; the default one is replaced."""
        own = lambda _signum, _frame: None  # noqa: E731
        previous = signal.signal(signal.SIGTERM, own)
        try:
            with install_crash_hooks(captured.engine, force=True) as hooks:
                assert not hooks.sigterm
                assert signal.getsignal(signal.SIGTERM) is own
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            with install_crash_hooks(captured.engine, force=True) as hooks:
                assert hooks.sigterm
                assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        finally:
            signal.signal(signal.SIGTERM, previous)

    def test_hooks_repr(self, captured: AlertCapture) -> None:
        """The hooks say whether they are installed."""
        with install_crash_hooks(captured.engine, force=True, sigterm=False) as hooks:
            assert isinstance(hooks, CrashHooks)
            assert repr(hooks) == "<CrashHooks installed>"
        assert repr(hooks) == "<CrashHooks not installed>"
