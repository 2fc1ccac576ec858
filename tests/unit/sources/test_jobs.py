"""Jobs: a failure or an overrun becomes one alert; a success is silent and beats."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtp_alerts._sources.heartbeats import heartbeat_monitor
from smtp_alerts._util.humanize import format_duration
from tests.jobs_support import Harness


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    made = Harness(tmp_path / "spool")
    yield made
    made.engine.close(timeout=5)


class TestJobFailure:
    def test_context_manager_alerts_with_traceback_and_reraises(self, harness: Harness) -> None:
        """An exception in ``with engine.job()`` alerts with its traceback and propagates as is."""
        error = ValueError("disk full on /backup")
        with pytest.raises(ValueError, match="disk full") as raised, harness.engine.job("backup"):
            raise error
        assert raised.value is error
        (problem,) = harness.problems()
        assert problem.alert.source == "job"
        assert problem.alert.level == logging.ERROR
        assert "job 'backup' failed" in problem.alert.message
        traceback = problem.alert.traceback or ""
        assert "Traceback (most recent call last)" in traceback
        assert "ValueError: disk full on /backup" in traceback

    def test_async_context_manager(self, harness: Harness) -> None:
        """``async with engine.job()`` alerts on an exception inside a coroutine."""

        async def work() -> None:
            async with harness.engine.job("sync-async"):
                await asyncio.sleep(0)
                raise ConnectionError("upstream went away")

        with pytest.raises(ConnectionError):
            asyncio.run(work())
        (problem,) = harness.problems()
        assert "ConnectionError: upstream went away" in (problem.alert.traceback or "")

    def test_sync_decorator(self, harness: Harness) -> None:
        """A decorated function returns its value on success and alerts when it raises."""

        @harness.engine.job("report")
        def report(rows: list[int]) -> int:
            return sum(rows) // len(rows)

        assert report([2, 4]) == 3
        assert report.__name__ == "report"
        with pytest.raises(ZeroDivisionError):
            report([])
        (problem,) = harness.problems()
        assert "job 'report' failed" in problem.alert.message
        assert "ZeroDivisionError" in (problem.alert.traceback or "")

    def test_async_decorator(self, harness: Harness) -> None:
        """A decorated coroutine function is awaited inside the run and alerts when it raises."""

        @harness.engine.job("fetch")
        async def fetch(key: str) -> str:
            await asyncio.sleep(0)
            return {"a": "1"}[key]

        assert asyncio.run(fetch("a")) == "1"
        with pytest.raises(KeyError):
            asyncio.run(fetch("b"))
        (problem,) = harness.problems()
        assert "job 'fetch' failed" in problem.alert.message
        assert "KeyError: 'b'" in (problem.alert.traceback or "")

    def test_success_is_silent_and_beats(self, harness: Harness) -> None:
        """A successful run sends nothing and records a heartbeat of its name."""
        with harness.engine.job("rotate-logs"):
            pass
        assert harness.problems() == []
        assert heartbeat_monitor(harness.engine).last_beat("rotate-logs") == harness.clock.now

    def test_keyboard_interrupt_is_not_a_job_failure(self, harness: Harness) -> None:
        """Interrupting a job is not its failure: no alert and no heartbeat."""
        with pytest.raises(KeyboardInterrupt), harness.engine.job("interactive"):
            raise KeyboardInterrupt
        assert harness.problems() == []
        assert heartbeat_monitor(harness.engine).last_beat("interactive") is None

    def test_one_job_object_nested(self, harness: Harness) -> None:
        """A job object entered twice at once ends each run on its own exit."""
        job = harness.engine.job("nested")
        with job:
            with pytest.raises(RuntimeError), job:
                raise RuntimeError("inner run failed")
            harness.clock.advance(5)
        (message,) = harness.messages()
        assert message == "job 'nested' failed after 0 ms: RuntimeError: inner run failed"
        assert heartbeat_monitor(harness.engine).last_beat("nested") == harness.clock.now

    def test_generator_function_refused(self, harness: Harness) -> None:
        """Decorating a generator function fails at once: its body would run outside the job."""

        def rows() -> Iterator[int]:
            yield 1

        with pytest.raises(TypeError, match="generator function"):
            harness.engine.job("rows")(rows)

    def test_bad_max_duration_names_the_field(self, harness: Harness) -> None:
        """A malformed max_duration is refused with the field's name."""
        with pytest.raises(ValueError, match="max_duration"):
            harness.engine.job("backup", max_duration="soon")


class TestMaxDuration:
    def test_overrun_alerts_when_the_run_ends(self, harness: Harness) -> None:
        """A run that took longer than max_duration (by the engine's clock) alerts at its end."""
        with harness.engine.job("backup", max_duration="1h"):
            harness.clock.advance(2 * 3600 + 60)
        (message,) = harness.messages()
        assert message == "job 'backup' took 2h 1m, longer than its max_duration of 1h"

    def test_still_running_alert_while_running(self, harness: Harness) -> None:
        """The timer on the engine's loop alerts while the job is still running."""
        with harness.engine.job("slow", max_duration=0.05):
            harness.wait_for_sent()  # the alert arrives before the body ends
        (message,) = harness.messages()
        assert message == "job 'slow' is still running after 50 ms (max_duration 50 ms)"

    def test_timely_run_sends_nothing(self, harness: Harness) -> None:
        """A run within its max_duration is silent, and its timer is cancelled."""
        with harness.engine.job("quick", max_duration="1h"):
            harness.clock.advance(60)
        assert harness.problems() == []


class TestFormatDuration:
    @pytest.mark.parametrize(
        ("seconds", "text"),
        [
            (0.012, "12 ms"),
            (0.9996, "1 s"),
            (2.5, "2.5 s"),
            (59.996, "1m"),
            (60, "1m"),
            (3725, "1h 2m"),
            (90_061, "1d 1h"),
            (-3, "0 ms"),
        ],
    )
    def test_short_human_durations(self, seconds: float, text: str) -> None:
        """Durations read as the two largest units, or ms and s below a minute, never negative."""
        assert format_duration(seconds) == text
