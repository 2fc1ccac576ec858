"""Tests for the rows of an alert email: titles that do not mislead, samples, times, details."""

from __future__ import annotations

import logging
import re
from dataclasses import replace

import pytest

from smtp_alerts._engine.capture import mask_variable_parts, record_fingerprint
from smtp_alerts._engine.render import render
from smtp_alerts.models import Alert, Problem
from tests.unit.engine.test_render import (
    CONTEXT,
    NOW,
    html_of,
    make_digest,
    make_problem,
    text_of,
)

MARK = "\u2039\u2026\u203a"


def logged(msg: str, args: object = (), *, level: int = logging.ERROR, **fields: object) -> Alert:
    """The alert a log record makes, with the fingerprint capture gives it."""
    record = logging.LogRecord("shop.payments", level, "/srv/shop/pay.py", 86, msg, args, None)  # type: ignore[arg-type]
    fingerprint, _ = record_fingerprint(record)
    alert = Alert(
        fingerprint=fingerprint,
        level=level,
        logger="shop.payments",
        message=record.getMessage(),
        created=NOW - 60,
        location="shop/pay.py:86 in charge",
    )
    return replace(alert, **fields)  # type: ignore[arg-type]


def direct(
    fingerprint: tuple[object, ...], source: str, exc_type: str | None, **fields: object
) -> Alert:
    """An alert as a source other than logging raises it."""
    alert = Alert(
        fingerprint=fingerprint,
        level=logging.ERROR,
        logger="x",
        message="boom",
        created=NOW,
        source=source,
        exc_type=exc_type,
    )
    return replace(alert, **fields)  # type: ignore[arg-type]


def row_of(alert: Alert, *, count: int = 2000, last_message: str = "", **fields: object) -> Problem:
    return Problem(
        alert=alert,
        count=count,
        total=count,
        first_seen=NOW - 60,
        last_seen=NOW - 1,
        is_new=True,
        last_message=last_message,
        **fields,  # type: ignore[arg-type]
    )


def first_line_of_row(text: str) -> str:
    return text.split("PROBLEMS\n\n", 1)[1].split("\n", 1)[0]


class TestTemplateTitle:
    def test_arguments_are_marked_and_both_samples_shown(self) -> None:
        """2,000 timeouts of different orders read as a template, with the first and a later one."""
        problem = row_of(
            logged("payment gateway timed out for order %d", (0,)),
            last_message="payment gateway timed out for order 2499",
        )
        out = render(make_digest(problem), CONTEXT)
        text = text_of(out)
        assert (
            first_line_of_row(text)
            == f"1. [ERROR] payment gateway timed out for order {MARK}  [new]"
        )
        assert "   first       | payment gateway timed out for order 0\n" in text
        assert "   later       | payment gateway timed out for order 2499\n" in text
        page = html_of(out)
        assert re.search(
            r"payment gateway timed out for order <span title=\"varies\"[^>]*>&hellip;</span>", page
        )
        assert ">payment gateway timed out for order 2499</div>" in page
        assert f"ERROR \u00d72,000 payment gateway timed out for order {MARK}" in out.summary

    def test_named_placeholders_keep_their_names(self) -> None:
        """A ``%(order)s`` placeholder is marked with its name; ``%%`` is a plain percent sign."""
        alert = logged("charge %(order)s failed at %(pct)d%%", {"order": "o-17", "pct": 40})
        text = text_of(render(make_digest(row_of(alert)), CONTEXT))
        assert first_line_of_row(text).startswith(
            "1. [ERROR] charge \u2039order\u203a failed at \u2039pct\u203a%"
        )

    def test_preformatted_text_is_masked_and_a_literal_hash_stays(self) -> None:
        """An f-string's numbers are marked; a ``#`` that was in the text is not taken for one."""
        alert = logged("ticket #42 failed after 3 retries")
        text = text_of(render(make_digest(row_of(alert)), CONTEXT))
        assert (
            first_line_of_row(text)
            == f"1. [ERROR] ticket #{MARK} failed after {MARK} retries  [new]"
        )
        assert "   example     | ticket #42 failed after 3 retries\n" in text

    def test_a_direct_alert_is_titled_by_its_masked_template(self) -> None:
        """``engine.alert(f"...")`` without a key: its numbers vary between occurrences too."""
        message = "replica 3 lags 1200 ms behind"
        fingerprint = ("alert", "db", 40, mask_variable_parts(message), None, None)
        text = text_of(
            render(
                make_digest(row_of(direct(fingerprint, "alert", None, message=message))), CONTEXT
            )
        )
        assert first_line_of_row(text) == f"1. [ERROR] replica {MARK} lags {MARK} ms behind  [new]"

    def test_a_template_that_does_not_fit_the_sample_is_not_shown(self) -> None:
        """A fingerprint whose template the sample does not have keeps the sample's title."""
        alert = logged("payment gateway timed out for order %d", (0,), message="something else 7")
        text = text_of(render(make_digest(row_of(alert)), CONTEXT))
        assert first_line_of_row(text) == "1. [ERROR] something else 7  [new]"

    def test_one_occurrence_keeps_its_own_text(self) -> None:
        """A problem seen once has nothing that varies: its title is its message."""
        alert = logged("card declined for customer %s", ("c-1042",))
        text = text_of(render(make_digest(row_of(alert, count=1)), CONTEXT))
        assert first_line_of_row(text) == "1. [ERROR] card declined for customer c-1042  [new]"

    @pytest.mark.parametrize(
        ("fingerprint", "source", "exc_type"),
        [
            (("key", "charge-timeout"), "log", None),
            (("crash", "app", 50, "uncaught KeyError in #", "KeyError", None), "crash", "KeyError"),
            (("key", "check db down #1"), "check", None),
            (("key", "run:backup:exit"), "job", None),
            (("other-problems", "default", "shop", 40), "other", None),
        ],
    )
    def test_keys_crashes_checks_jobs_and_others_keep_their_title(
        self, fingerprint: tuple[object, ...], source: str, exc_type: str | None
    ) -> None:
        """Rows without a template (or whose title is an exception's type) show their title."""
        alert = direct(fingerprint, source, exc_type, logger="shop", message="order 17 failed")
        text = text_of(render(make_digest(row_of(alert)), CONTEXT))
        assert MARK not in text
        title = "KeyError in shop" if exc_type else "order 17 failed"
        assert first_line_of_row(text) == f"1. [ERROR] {title}  [new]"

    def test_an_exception_row_is_titled_by_its_type(self) -> None:
        """A logged exception keeps "KeyError in logger" as its title; its message is a sample."""
        alert = logged("could not price item %s", ("A-17",), exc_type="KeyError", traceback="tb")
        text = text_of(render(make_digest(row_of(alert)), CONTEXT))
        assert first_line_of_row(text) == "1. [ERROR] KeyError in shop.payments  [new]"

    def test_template_pieces_are_made_safe(self) -> None:
        """Control characters and markup in a template reach neither a title line nor raw HTML."""
        alert = logged("<b>evil</b>\x1b[31m order %d\r\nBcc: x@example.com", (1,))
        out = render(make_digest(row_of(alert)), CONTEXT)
        assert "<b>evil" not in html_of(out)
        assert "&lt;b&gt;evil&lt;/b&gt;" in html_of(out)
        line = first_line_of_row(text_of(out))
        assert "\x1b" not in line
        assert "Bcc" not in line


class TestNoise:
    def test_html_does_not_repeat_a_title_in_a_second_line(self) -> None:
        """A one-line message that is the title is not shown again in monospace."""
        page = html_of(render(make_digest(make_problem(message="disk is full")), CONTEXT))
        cards = page.split("</h1>", 1)[1]  # after the summary line, which names it too
        assert cards.count("disk is full") == 1

    def test_html_shows_a_message_that_says_more_than_the_title(self) -> None:
        """A multi-line message is shown in full under its first line."""
        page = html_of(
            render(make_digest(make_problem(message="disk is full\n/var: 100%")), CONTEXT)
        )
        assert "disk is full\n/var: 100%</div>" in page

    def test_equal_first_and_last_seen_show_as_one_time(self) -> None:
        """First and last seen in the same second read as one "seen" time."""
        problem = make_problem(first_seen=NOW - 60, last_seen=NOW - 59.6)
        out = render(make_digest(problem), CONTEXT)
        assert "   seen        2026-11-18 11:05:40 UTC\n" in text_of(out)
        assert "first seen" not in text_of(out)
        assert "seen 2026-11-18 11:05:40 UTC" in html_of(out)
        assert "last seen" not in html_of(out)

    def test_different_first_and_last_seen_show_both(self) -> None:
        """Otherwise both times are shown."""
        out = render(make_digest(make_problem(first_seen=NOW - 600, last_seen=NOW - 60)), CONTEXT)
        assert (
            "first seen 2026-11-18 10:56:40 UTC \u00b7 last seen 2026-11-18 11:05:40 UTC"
            in html_of(out)
        )


class TestDetails:
    @pytest.mark.parametrize(
        ("source", "key", "exc_type", "details", "label"),
        [
            (
                "log",
                None,
                "KeyError",
                "Traceback (most recent call last):\nKeyError: 'x'",
                "Traceback",
            ),
            ("alert", None, None, "Traceback (most recent call last):\nValueError", "Traceback"),
            ("job", "run:backup:exit", None, "$ backup.sh\npermission denied", "Command output"),
            ("check", "check db down #1", None, "State:   DOWN", "Check result"),
            ("alert", None, None, "order: 42\nthe context", "Details"),
            ("job", "heartbeat:x:missed", None, "heartbeat  x\nlast seen  never", "Details"),
            ("log", None, None, "Stack (most recent call last):\n  File x", "Stack"),
        ],
    )
    def test_details_are_named_for_what_they_hold(
        self, source: str, key: str | None, exc_type: str | None, details: str, label: str
    ) -> None:
        """The section is "Details"; each entry says whether it is a traceback, output, a result."""
        fingerprint = ("key", key) if key else (source, "x", 40, "boom", exc_type, None)
        alert = direct(fingerprint, source, exc_type, logger="x", message="boom", traceback=details)
        out = render(make_digest(row_of(alert, count=1)), CONTEXT)
        text, page = text_of(out), html_of(out)
        assert "TRACEBACKS" not in text
        assert "Tracebacks" not in page
        title = f"{exc_type} in x" if exc_type else "boom"
        assert f"\nDETAILS\n\n1. {label}: {title}\n" in text
        assert ">Details</h2>" in page
        assert f">{label}</span>" in page
