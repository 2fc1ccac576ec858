"""The doctor's report: steps as data, their lines, their marks, and what is never printed."""

from __future__ import annotations

import io

from smtp_alerts._delivery.diagnosis import Diagnosis
from smtp_alerts.cli.report import Report, Status, Step, render

UNICODE = {
    Status.OK: "✔",
    Status.FAIL: "✘",
    Status.WARN: "!",
    Status.INFO: "·",
    Status.SKIP: "-",
}


def _stream(encoding: str) -> tuple[io.TextIOWrapper, io.BytesIO]:
    """A text stream that writes ``encoding``, and the bytes it wrote."""
    written = io.BytesIO()
    return io.TextIOWrapper(written, encoding=encoding, newline="\n"), written


class TestRender:
    def test_a_passed_step_is_one_line_with_its_timing(self) -> None:
        """Mark, label padded to a column, the text and the milliseconds."""
        assert render(Step(Status.OK, "connect", "smtp.gmail.com:587", 12.4), UNICODE) == [
            "✔ connect      smtp.gmail.com:587  (12 ms)"
        ]

    def test_a_failure_shows_the_reply_on_one_line_and_the_fix(self) -> None:
        """Under a failure: what the server said (one line, no codes repeated), then the fix."""
        why = Diagnosis("535 5.7.8", "The password was refused.", "Use an app password.")
        reply = "5.7.8 Username and Password not accepted.\n5.7.8  \x1b[31mLearn more\x1b[0m"
        step = Step(Status.FAIL, "login", "me at smtp.gmail.com:587", why=why, reply=reply)
        assert render(step, UNICODE) == [
            "✘ login        me at smtp.gmail.com:587",
            "               server said: Username and Password not accepted. Learn more",
            "               535 5.7.8: The password was refused.",
            "               fix: Use an app password.",
        ]


class TestReport:
    def test_keeps_steps_and_counts_failures_and_warnings(self) -> None:
        """Each step is kept in order; failures and warnings are counted for the exit status."""
        report = Report(_stream("utf-8")[0])
        report.ok("resolve", "ok")
        report.warn("465", "blocked")
        report.fail("login", "refused")
        report.skip("send", "skipped")
        assert [step.status for step in report.steps] == [
            Status.OK,
            Status.WARN,
            Status.FAIL,
            Status.SKIP,
        ]
        assert (report.failed, report.warned) == (1, 1)

    def test_ascii_marks_where_the_stream_cannot_show_them(self) -> None:
        """A stream that cannot encode ✔ gets [ok] and [FAIL] marks."""
        stream, written = _stream("ascii")
        report = Report(stream)
        report.ok("login", "accepted")
        report.fail("send", "refused")
        assert written.getvalue().decode("ascii").splitlines() == [
            "[ok]   login        accepted",
            "[FAIL] send         refused",
        ]

    def test_secrets_are_scrubbed_with_and_without_spaces(self) -> None:
        """An app password never reaches the stream, written with or without its spaces."""
        stream, written = _stream("utf-8")
        report = Report(stream, secrets=["abcd efgh ijkl mnop", "ab"])
        report.fail("login", "echoed abcd efgh ijkl mnop and abcdefghijklmnop; ab stays")
        assert (
            written.getvalue().decode() == "✘ login        echoed ******** and ********; ab stays\n"
        )
