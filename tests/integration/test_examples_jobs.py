"""The job, cron, crash and asyncio examples, run as a user would, against the Gmail-like server."""

from __future__ import annotations

from smtp_alerts.testing import GmailServer, ReceivedMessage

from .test_examples import run_example


def text_of(message: ReceivedMessage) -> str:
    part = message.message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def all_text(server: GmailServer) -> str:
    return "\n".join(text_of(message) for message in server.messages)


class TestCronJob:
    def test_failed_job_is_emailed_with_its_output(self) -> None:
        """The wrapped job's failure arrives with its exit code and output; its status is kept."""
        with GmailServer() as server:
            result = run_example("cron_job.py", server)
            (received,) = server.messages
        assert result.returncode == 3, result.stderr
        assert "dumping invoices... ok" in result.stdout  # passed through live
        assert "nightly-backup failed with exit code 3" in received.subject
        text = text_of(received)
        assert "permission denied for table payments" in text
        assert "dumping invoices... ok" in text


class TestCrashNotification:
    def test_both_crashes_are_emailed(self) -> None:
        """The thread's and the main thread's tracebacks both arrive before the process exits."""
        with GmailServer() as server:
            result = run_example("crash_notification.py", server)
            text = all_text(server)
        assert result.returncode == 1
        assert "KeyError: 'database_url'" in result.stderr
        assert "uncaught ZeroDivisionError in thread 'stats-worker'" in text
        assert "uncaught KeyError in the main thread" in text
        assert text.count("Traceback (most recent call last)") == 2


class TestJobHooks:
    def test_failure_overrun_and_missed_heartbeat(self) -> None:
        """The failure, the overrun and one missed heartbeat arrive; the success is silent."""
        with GmailServer() as server:
            result = run_example("job_hooks.py", server)
            text = all_text(server)
        assert result.returncode == 0, result.stderr
        assert "job 'nightly-report' failed" in text
        assert "KeyError: 'amount'" in text
        assert "job 'sync-inventory' is still running after 100 ms" in text
        assert "job 'sync-inventory' took" in text
        assert text.count("| missed heartbeat: 'billing-export'") == 1  # one problem row
        assert "rotate-logs" not in text


class TestAsyncioService:
    def test_job_failure_task_crash_and_missed_heartbeat(self) -> None:
        """The service's failed poll, crashed task and stalled heartbeat each arrive."""
        with GmailServer() as server:
            result = run_example("asyncio_service.py", server)
            text = all_text(server)
        assert result.returncode == 0, result.stderr
        assert "job 'poll-queue' failed" in text
        assert "QueueUnavailableError: queue.internal:5672 refused the connection" in text
        assert "uncaught ValueError in asyncio task 'refresh-cache'" in text
        assert text.count("| missed heartbeat: 'poll-queue' last seen") == 1  # one problem row
