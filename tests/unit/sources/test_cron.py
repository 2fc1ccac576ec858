"""The cron wrapper's source: how a command ended, and what the engine is told about it."""

from __future__ import annotations

import sys

import pytest

from smtp_alerts._sources.cron import (
    EXIT_NOT_FOUND,
    EXIT_TIMEOUT,
    default_name,
    run_and_alert,
    run_command,
)
from smtp_alerts.testing import capture_alerts

PYTHON = sys.executable


class TestRunCommand:
    def test_exit_code_and_tails(self, capfd: pytest.CaptureFixture[str]) -> None:
        """The command's exit code is the status, and the tail of each stream is kept."""
        script = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
        result = run_command([PYTHON, "-c", script], None)
        assert (result.status, result.returncode, result.ok) == (3, 3, False)
        assert result.stdout is not None
        assert result.stderr is not None
        assert (result.stdout.text(), result.stderr.text()) == ("out", "err")
        assert capfd.readouterr().out == "out\n"  # passed through as it came

    def test_not_found(self) -> None:
        """A command that does not exist is status 127, with the reason."""
        result = run_command(["smtp-alerts-no-such-command"], None)
        assert (result.status, result.error) == (EXIT_NOT_FOUND, "command not found")

    def test_timeout(self) -> None:
        """A command still running at the timeout is stopped: status 124."""
        result = run_command([PYTHON, "-c", "import time; time.sleep(30)"], 0.3)
        assert (result.status, result.timed_out, result.killed) == (EXIT_TIMEOUT, True, False)


class TestRunAndAlert:
    def test_failure_is_one_alert(self) -> None:
        """A failed command raises one alert naming the job, its exit code and its output."""
        script = "import sys; print('disk full', file=sys.stderr); sys.exit(2)"
        with capture_alerts() as capture:
            result = run_and_alert([PYTHON, "-c", script], engine=capture.engine, name="backup")
            (problem,) = capture.problems
        assert result.status == 2
        assert problem.alert.message.startswith("backup failed with exit code 2 after ")
        assert "disk full" in (problem.alert.traceback or "")  # the details, under it
        assert (problem.alert.logger, problem.alert.source) == ("backup", "job")

    def test_success_sends_nothing(self) -> None:
        """A command that succeeds is silent."""
        with capture_alerts() as capture:
            result = run_and_alert([PYTHON, "-c", "pass"], engine=capture.engine)
            assert capture.messages == []
        assert result.ok

    def test_runs_without_an_engine(self) -> None:
        """With no engine (broken settings) the command still runs and its status counts."""
        result = run_and_alert([PYTHON, "-c", "raise SystemExit(5)"], engine=None)
        assert result.status == 5


class TestDefaultName:
    def test_long_command_is_cut(self) -> None:
        """The command line names the job, cut with an ellipsis past sixty characters."""
        assert default_name(["backup", "--all"]) == "backup --all"
        name = default_name(["echo", "x" * 100])
        assert len(name) == 60
        assert name.endswith("\N{HORIZONTAL ELLIPSIS}")
