"""Tests for smtp_alerts._engine.render: digest to email."""

from __future__ import annotations

import email
import email.policy
import logging
import os
import re
import socket
import time
from datetime import datetime, timezone
from email.message import EmailMessage
from html.parser import HTMLParser
from typing import Any

import pytest

from smtp_alerts._engine.render import RenderContext, render
from smtp_alerts._version import VERSION
from smtp_alerts.models import Alert, Digest, OutgoingMessage, Problem
from smtp_alerts.settings import Settings

NOW = 1_795_000_000.0  # 2026-11-18 11:06:40 UTC
CONTEXT = RenderContext(
    sender="alerts@example.com",
    recipients=("ops@example.com", "dev@example.org"),
    hostname="web-1",
)
BASE_HEADERS = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Auto-Submitted",
    "X-Auto-Response-Suppress",
    "X-Mailer",
    "X-Smtp-Alerts-Incident",
    "MIME-Version",
    "Content-Type",
]


def make_problem(
    key: object = 0,
    *,
    level: int = logging.ERROR,
    logger: str = "shop.api",
    message: str = "Failed to load cart",
    exc_type: str | None = None,
    traceback: str | None = None,
    location: str = "shop/api.py:42 in get_cart",
    count: int = 1,
    total: int | None = None,
    first_seen: float = NOW - 600,
    last_seen: float = NOW - 60,
    is_new: bool = True,
) -> Problem:
    alert = Alert(
        fingerprint=("test", key),
        level=level,
        logger=logger,
        message=message,
        created=first_seen,
        location=location,
        exc_type=exc_type,
        traceback=traceback,
    )
    return Problem(
        alert=alert,
        count=count,
        total=count if total is None else total,
        first_seen=first_seen,
        last_seen=last_seen,
        is_new=is_new,
    )


def make_digest(*problems: Problem, **fields: Any) -> Digest:
    values: dict[str, Any] = {
        "group": "default",
        "incident_id": "3f2a9c",
        "sequence": 1,
        "problems": problems or (make_problem(),),
        "created": NOW,
    }
    values.update(fields)
    return Digest(**values)


def parse(out: OutgoingMessage) -> EmailMessage:
    """The message as a receiver sees it: serialised, then parsed back."""
    parsed = email.message_from_bytes(out.email.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def body(msg: EmailMessage, subtype: str) -> str:
    part = msg.get_body(preferencelist=(subtype,))
    assert part is not None
    assert part.get_content_type() == f"text/{subtype}"
    content = part.get_content()
    assert isinstance(content, str)
    # A 7bit or 8bit part comes back with its CRLF line ends; compare with LF.
    return content.replace("\r\n", "\n")


def text_of(out: OutgoingMessage) -> str:
    return body(parse(out), "plain")


def html_of(out: OutgoingMessage) -> str:
    return body(parse(out), "html")


class _BarParser(HTMLParser):
    """Collects the widths of the occurrence bars (elements with role="img")."""

    def __init__(self) -> None:
        super().__init__()
        self.widths: list[float] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "div" and found.get("role") == "img":
            match = re.search(r"width:([\d.]+)%", found.get("style") or "")
            assert match is not None
            self.widths.append(float(match.group(1)))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read SMTP_ALERTS_* variables: remove any the test runner has set."""
    for name in list(os.environ):
        if name.upper().startswith("SMTP_ALERTS_"):
            monkeypatch.delenv(name)


class TestRenderContext:
    @pytest.mark.usefixtures("clean_env")
    def test_from_settings_takes_sender_recipients_and_prefix(self) -> None:
        """from_settings copies the sender, the recipients and the subject prefix."""
        settings = Settings(
            username="me@gmail.com", to="a@example.com, b@example.com", subject_prefix="[prod]"
        )
        context = RenderContext.from_settings(settings, hostname="db-2")
        assert context == RenderContext(
            sender="me@gmail.com",
            recipients=("a@example.com", "b@example.com"),
            hostname="db-2",
            subject_prefix="[prod]",
        )

    @pytest.mark.usefixtures("clean_env")
    def test_from_settings_defaults_to_short_hostname(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without a hostname the short form of socket.gethostname() is used."""
        monkeypatch.setattr(socket, "gethostname", lambda: "web-1.prod.example.com")
        settings = Settings(username="me@gmail.com", to="a@example.com")
        assert RenderContext.from_settings(settings).hostname == "web-1"

    @pytest.mark.parametrize(
        "recipients",
        [(), ("ops@example.com\r\nBcc: evil@attacker.example",), ("a@x.com, b@y.com",)],
    )
    def test_rejects_bad_recipients(self, recipients: tuple[str, ...]) -> None:
        """No recipient, or an address that smuggles a header or a second address, is refused."""
        with pytest.raises(ValueError, match=r"recipient|address"):
            RenderContext(sender="alerts@example.com", recipients=recipients, hostname="h")

    def test_rejects_tiny_max_bytes(self) -> None:
        """A max_bytes below the smallest possible message is refused up front."""
        with pytest.raises(ValueError, match="max_bytes"):
            RenderContext(
                sender="a@example.com", recipients=("b@example.com",), hostname="h", max_bytes=1000
            )


class TestHeaders:
    def test_serialises_as_multipart_alternative_with_crlf(self) -> None:
        """The message serialises with bytes() to CRLF lines and holds a plain and an HTML part."""
        out = render(make_digest(), CONTEXT)
        raw = bytes(out.email)
        assert raw == out.email.as_bytes()
        assert b"\n" not in raw.replace(b"\r\n", b"")
        msg = parse(out)
        assert msg.get_content_type() == "multipart/alternative"
        types = [part.get_content_type() for part in msg.iter_parts()]
        assert types == ["text/plain", "text/html"]

    def test_first_digest_has_exactly_the_expected_headers(self) -> None:
        """A first digest carries the standard headers and no threading or Precedence header."""
        msg = parse(render(make_digest(), CONTEXT))
        assert list(msg.keys()) == BASE_HEADERS

    def test_header_values(self) -> None:
        """From, To, Auto-Submitted, X-Auto-Response-Suppress, X-Mailer and the incident are set."""
        msg = parse(render(make_digest(), CONTEXT))
        assert msg["From"] == "alerts@example.com"
        assert [a.addr_spec for a in msg["To"].addresses] == ["ops@example.com", "dev@example.org"]
        assert msg["Auto-Submitted"] == "auto-generated"
        assert msg["X-Auto-Response-Suppress"] == "All"
        assert msg["X-Mailer"] == f"smtp-alerts/{VERSION}"
        assert msg["X-Smtp-Alerts-Incident"] == "3f2a9c"

    def test_date_is_the_digest_time_in_utc(self) -> None:
        """Date is the digest's creation time, timezone-aware UTC."""
        msg = parse(render(make_digest(created=NOW + 0.75), CONTEXT))
        assert msg["Date"].datetime == datetime.fromtimestamp(NOW, tz=timezone.utc)

    def test_message_id_is_deterministic_from_incident_and_sequence(self) -> None:
        """The Message-ID is <incident.sequence@sender-domain> and equal across renderings."""
        digest = make_digest(sequence=4)
        first, second = render(digest, CONTEXT), render(digest, CONTEXT)
        assert first.message_id == second.message_id == "<3f2a9c.4@example.com>"
        assert parse(first)["Message-ID"] == "<3f2a9c.4@example.com>"

    def test_unsafe_incident_id_is_reduced_in_message_id(self) -> None:
        """Characters an id may not hold are replaced, so the Message-ID stays well-formed."""
        out = render(make_digest(incident_id="a b>c@d\r\nX-Evil: 1"), CONTEXT)
        assert re.fullmatch(r"<[A-Za-z0-9_-]+\.1@example\.com>", out.message_id)
        assert parse(out)["X-Evil"] is None

    def test_outgoing_message_fields(self) -> None:
        """The envelope comes from the context, and the message keeps the digest it renders."""
        digest = make_digest()
        out = render(digest, CONTEXT)
        assert out.sender == "alerts@example.com"
        assert out.recipients == ("ops@example.com", "dev@example.org")
        assert out.digest is digest


class TestSubject:
    def test_summarises_counts_with_thousands_separators(self) -> None:
        """The subject gives the problem and event counts, with separators, and the headline."""
        digest = make_digest(
            make_problem(1, exc_type="KeyError", count=2000),
            make_problem(2, message="disk almost full", level=logging.WARNING, count=50),
            make_problem(3, message="retrying", count=1),
        )
        out = render(digest, CONTEXT)
        expected = "[web-1] ERROR: KeyError in shop.api (3 problems, 2,051 events)"
        assert parse(out)["Subject"] == expected
        assert out.title == expected

    def test_singular_forms(self) -> None:
        """One problem with one event reads "(1 event)": the level and title say the rest."""
        out = render(make_digest(make_problem(message="db down")), CONTEXT)
        assert parse(out)["Subject"] == "[web-1] ERROR: db down (1 event)"

    def test_headline_is_most_severe_then_most_frequent(self) -> None:
        """A rare CRITICAL beats a frequent ERROR; among equals the most frequent wins."""
        digest = make_digest(
            make_problem(1, message="frequent error", count=1000),
            make_problem(2, message="rare critical", level=logging.CRITICAL),
            make_problem(3, message="busier critical", level=logging.CRITICAL, count=3),
        )
        subject = parse(render(digest, CONTEXT))["Subject"]
        assert subject == "[web-1] CRITICAL: busier critical (3 problems, 1,004 events)"

    def test_custom_and_empty_prefix(self) -> None:
        """A configured prefix replaces [hostname]; an empty one removes it."""
        custom = RenderContext(
            sender="a@example.com",
            recipients=("b@example.com",),
            hostname="h",
            subject_prefix="[p]",
        )
        bare = RenderContext(
            sender="a@example.com", recipients=("b@example.com",), hostname="h", subject_prefix=""
        )
        digest = make_digest(make_problem(message="x"))
        assert parse(render(digest, custom))["Subject"] == "[p] ERROR: x (1 event)"
        assert parse(render(digest, bare))["Subject"] == "ERROR: x (1 event)"

    def test_long_subject_is_truncated_with_ellipsis(self) -> None:
        """A long headline is cut, the counts after it stay in view, within 150 characters."""
        out = render(make_digest(make_problem(message="word " * 200)), CONTEXT)
        subject = parse(out)["Subject"]
        assert len(subject) <= 150
        assert subject.endswith("word\u2026 (1 event)")

    def test_digest_without_problems_uses_its_notice(self) -> None:
        """A digest carrying only a notice names the notice in the subject."""
        digest = make_digest(problems=(), notices=("Hourly email quota reached",))
        assert parse(render(digest, CONTEXT))["Subject"] == "[web-1] Hourly email quota reached"


class TestThreading:
    def test_follow_up_replies_to_the_first_digest(self) -> None:
        """A third digest has In-Reply-To the first and References the first and second."""
        msg = parse(render(make_digest(sequence=3, thread_subject="[web-1] first"), CONTEXT))
        assert msg["In-Reply-To"] == "<3f2a9c.1@example.com>"
        assert msg["References"] == "<3f2a9c.1@example.com> <3f2a9c.2@example.com>"
        assert list(msg.keys()) == [
            *BASE_HEADERS[:5],
            "In-Reply-To",
            "References",
            *BASE_HEADERS[5:],
        ]

    def test_references_are_capped_to_first_and_latest(self) -> None:
        """A long thread references the first digest and the 19 latest, 20 in all."""
        msg = parse(render(make_digest(sequence=50, thread_subject="s"), CONTEXT))
        ids = msg["References"].split()
        assert len(ids) == 20
        assert ids[0] == "<3f2a9c.1@example.com>"
        assert ids[1] == "<3f2a9c.31@example.com>"
        assert ids[-1] == "<3f2a9c.49@example.com>"

    def test_follow_up_subject_is_re_thread_subject(self) -> None:
        """A follow-up's subject is "Re: " and the first subject, which Gmail needs to thread."""
        digest = make_digest(
            make_problem(1, count=7, is_new=False),
            sequence=2,
            thread_subject="[web-1] ERROR: x (3 events)",
        )
        out = render(digest, CONTEXT)
        assert parse(out)["Subject"] == "Re: [web-1] ERROR: x (3 events)"
        assert out.title == "[web-1] ERROR: x (3 events)"

    def test_something_new_gets_a_subject_that_names_it(self) -> None:
        """A CRITICAL that joined an incident is never hidden behind its first subject."""
        digest = make_digest(
            make_problem(1, message="payment gateway timed out", count=2000, is_new=False),
            make_problem(2, message="database primary is down", level=logging.CRITICAL),
            make_problem(3, message="backup failed", level=logging.ERROR),
            sequence=2,
            thread_subject="[web-1] ERROR: payment gateway timed out (2,000 events)",
        )
        msg = parse(render(digest, CONTEXT))
        assert (
            msg["Subject"]
            == "[web-1] CRITICAL: database primary is down (3 problems, 2,002 events)"
        )
        assert msg["In-Reply-To"] == "<3f2a9c.1@example.com>"  # still threaded by headers

    def test_the_subject_names_a_template_not_one_of_its_samples(self) -> None:
        """2,500 timeouts of different orders are not "timed out for order 0" in the subject."""
        alert = Alert(
            fingerprint=("shop.pay", logging.ERROR, "shop/pay.py", 9, "timed out for order %s"),
            level=logging.ERROR,
            logger="shop.pay",
            message="timed out for order 0",
            created=NOW,
        )
        problem = Problem(alert, 2_500, 2_500, NOW - 60, NOW, is_new=True)
        subject = parse(render(make_digest(problem), CONTEXT))["Subject"]
        assert subject == "[web-1] ERROR: timed out for order \u2039\u2026\u203a (2,500 events)"

    def test_a_new_problem_is_named_before_a_busier_old_one(self) -> None:
        digest = make_digest(
            make_problem(1, message="old and noisy", count=500, is_new=False),
            make_problem(2, message="new and quiet"),
            sequence=3,
            thread_subject="s",
        )
        assert parse(render(digest, CONTEXT))["Subject"].startswith("[web-1] ERROR: new and quiet")

    def test_follow_up_puts_current_summary_at_top_of_body(self) -> None:
        """The current summary line, no longer in the subject, opens both parts."""
        digest = make_digest(
            make_problem(1, message="boom", count=7, is_new=False), sequence=2, thread_subject="s"
        )
        out = render(digest, CONTEXT)
        summary = "[web-1] ERROR: boom (7 events)"
        assert text_of(out).startswith(summary + "\n")
        assert re.search(r"<h1[^>]*>" + re.escape(summary) + "</h1>", html_of(out))
        assert out.summary.startswith(summary)

    def test_re_is_not_doubled(self) -> None:
        """A thread subject that already starts with Re: gets no second one."""
        digest = make_digest(make_problem(is_new=False), sequence=2, thread_subject="RE: re: old")
        out = render(digest, CONTEXT)
        assert parse(out)["Subject"] == "Re: old"


INJECTIONS = [
    "boom\r\nBcc: evil@attacker.example\r\nX-Evil: 1",
    "boom\rBcc: evil@attacker.example",
    "boom\nTo: evil@attacker.example",
    "boom\u2028Bcc: evil@attacker.example\u2029X-Evil: 1",
    "boom\x85Bcc: evil@attacker.example\x0bX-Evil: 1\x0cX-Evil: 2",
    "boom\x00\r\n\r\n<html>evil body</html>",
]


class TestHeaderInjection:
    def _assert_clean(self, out: OutgoingMessage) -> None:
        msg = parse(out)
        assert [name for name in msg if name not in ("In-Reply-To", "References")] == BASE_HEADERS
        assert msg["Bcc"] is None
        assert msg["X-Evil"] is None
        assert [a.addr_spec for a in msg["To"].addresses] == list(CONTEXT.recipients)
        assert out.recipients == CONTEXT.recipients
        for name, value in msg.items():
            if name != "Subject":
                assert "evil" not in value
        assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", msg["Subject"])
        assert "\n" not in out.title

    @pytest.mark.parametrize("payload", INJECTIONS)
    def test_message(self, payload: str) -> None:
        """Line breaks in a message that becomes the subject add no header and no recipient."""
        self._assert_clean(render(make_digest(make_problem(message=payload.lstrip())), CONTEXT))

    @pytest.mark.parametrize("payload", INJECTIONS)
    def test_logger_name(self, payload: str) -> None:
        """Line breaks in a logger name add no header and no recipient."""
        problem = make_problem(exc_type="KeyError", logger=payload)
        self._assert_clean(render(make_digest(problem), CONTEXT))

    @pytest.mark.parametrize("payload", INJECTIONS)
    def test_exception_type(self, payload: str) -> None:
        """Line breaks in an exception type add no header and no recipient."""
        self._assert_clean(render(make_digest(make_problem(exc_type=payload)), CONTEXT))

    @pytest.mark.parametrize("payload", INJECTIONS)
    def test_thread_subject_notice_and_hostname(self, payload: str) -> None:
        """Line breaks in a thread subject, a notice or the host name add no header either."""
        context = RenderContext(
            sender="alerts@example.com", recipients=CONTEXT.recipients, hostname=payload
        )
        self._assert_clean(
            render(make_digest(sequence=2, thread_subject=payload, notices=(payload,)), context)
        )
        self._assert_clean(render(make_digest(problems=(), notices=(payload,)), context))

    def test_bidi_overrides_are_removed_from_subject(self) -> None:
        """Right-to-left overrides, used to disguise text, do not reach the subject."""
        out = render(make_digest(make_problem(message="invoice\u202egpj.exe")), CONTEXT)
        assert parse(out)["Subject"] == "[web-1] ERROR: invoice gpj.exe (1 event)"

    def test_subject_keeps_the_text_on_one_line(self) -> None:
        """The injected text stays visible in the subject, with spaces for the line breaks."""
        out = render(make_digest(make_problem(exc_type="Err\r\nBcc: x@y.z")), CONTEXT)
        assert parse(out)["Subject"] == "[web-1] ERROR: Err Bcc: x@y.z in shop.api (1 event)"


class TestBodyText:
    def test_control_characters_are_removed(self) -> None:
        """NUL and other C0 controls are dropped from the text part; tabs and newlines stay."""
        out = render(make_digest(make_problem(message="a\x00b\x1bc\x07d\te\r\nf")), CONTEXT)
        text = text_of(out)
        assert "abcd\te" in text
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text)

    def test_log_lines_cannot_pose_as_email_structure(self) -> None:
        """Every line of a multi-line message is indented under its row."""
        message = "first\n!! 0 problems: all is fine\n-- \nHost fake"
        text = text_of(render(make_digest(make_problem(message=message)), CONTEXT))
        assert "\n!! 0 problems" not in text
        assert "\nHost fake" not in text
        assert "   message     | first\n               | !! 0 problems: all is fine" in text

    def test_row_shows_every_field(self) -> None:
        """A row shows level, count and total, first and last seen, logger, location and new."""
        problem = make_problem(
            count=12,
            total=57,
            first_seen=datetime(2026, 11, 21, 11, 32, 5, tzinfo=timezone.utc).timestamp(),
            last_seen=datetime(2026, 11, 21, 11, 40, 0, tzinfo=timezone.utc).timestamp(),
            level=logging.CRITICAL,
        )
        for part in (text_of(out := render(make_digest(problem), CONTEXT)), html_of(out)):
            assert "CRITICAL" in part
            assert "12" in part
            assert "57 since the incident began" in part
            assert "2026-11-21 11:32:05 UTC" in part
            assert "2026-11-21 11:40:00 UTC" in part
            assert "shop.api" in part
            assert "shop/api.py:42 in get_cart" in part
            assert problem.id in part
        assert "[new]" in text_of(out)
        assert ">NEW</span>" in html_of(out)

    def test_total_hidden_when_equal_to_count(self) -> None:
        """The since-the-incident-began total only appears when it differs from the count."""
        out = render(make_digest(make_problem(count=5, total=5, is_new=False)), CONTEXT)
        assert "since the incident began" not in text_of(out)
        assert "[new]" not in text_of(out)

    def test_traceback_has_its_own_section(self) -> None:
        """Each traceback appears once, after the rows, under Details, labelled Traceback."""
        traceback = "Traceback (most recent call last):\n  File \"x.py\"\nKeyError: 'cart'"
        out = render(make_digest(make_problem(exc_type="KeyError", traceback=traceback)), CONTEXT)
        text = text_of(out)
        assert text.index("DETAILS") > text.index("PROBLEMS")
        assert "\n1. Traceback: KeyError in shop.api (shop/api.py:42 in get_cart)\n" in text
        assert '    Traceback (most recent call last):\n      File "x.py"\n' in text
        page = html_of(out)
        assert re.search(r"<pre style=\"[^\"]*white-space:pre-wrap[^\"]*\">Traceback", page)
        assert "KeyError: &#x27;cart&#x27;</pre>" in page

    def test_footer_names_host_incident_and_sender(self) -> None:
        """Both parts end with the host, the incident id and "sent by smtp-alerts"."""
        out = render(make_digest(), CONTEXT)
        for part in (text_of(out), html_of(out)):
            assert "Host web-1" in part
            assert "incident 3f2a9c" in part
            assert f"sent by smtp-alerts {VERSION}" in part

    def test_level_colours(self) -> None:
        """CRITICAL is dark red, ERROR red and WARNING amber in the HTML part."""
        digest = make_digest(
            make_problem(1, level=logging.CRITICAL),
            make_problem(2, level=logging.ERROR),
            make_problem(3, level=logging.WARNING),
        )
        page = html_of(render(digest, CONTEXT))
        for colour, name in (("#8b0000", "CRITICAL"), ("#d1242f", "ERROR"), ("#e3a008", "WARNING")):
            assert re.search(f"background-color:{colour};[^>]*>{name}</span>", page)

    def test_html_has_no_style_block(self) -> None:
        """The HTML part uses inline styles only, since Gmail drops <style> blocks."""
        assert "<style" not in html_of(render(make_digest(), CONTEXT))


class TestHtmlEscaping:
    def test_script_in_log_text_is_escaped(self) -> None:
        """Markup in message, logger, location, traceback and notices appears escaped."""
        evil = "<script>alert('x')</script>"
        problem = make_problem(
            message=evil, logger=evil, location=evil, exc_type=evil, traceback=evil
        )
        page = html_of(render(make_digest(problem, notices=(evil,)), CONTEXT))
        assert "<script" not in page
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page

    def test_quotes_cannot_break_out_of_attributes(self) -> None:
        """Double quotes from log text are escaped, so no attribute can be opened."""
        page = html_of(render(make_digest(make_problem(message='" onmouseover="x')), CONTEXT))
        assert 'onmouseover="' not in page
        assert "&quot; onmouseover=&quot;x" in page


class TestNoticesAndDropped:
    def test_notices_come_first_in_both_parts(self) -> None:
        """Notices appear before the first problem row in the text and HTML parts."""
        digest = make_digest(make_problem(message="row"), notices=("Hourly email quota reached",))
        out = render(digest, CONTEXT)
        for part in (text_of(out), html_of(out)):
            assert part.index("Hourly email quota reached") < part.index("1. ")
        assert "!! Hourly email quota reached" in text_of(out)
        assert "Hourly email quota reached" in out.summary

    def test_dropped_count_shown_in_both_parts(self) -> None:
        """A digest with dropped records says how many were dropped at intake."""
        out = render(make_digest(dropped=1234), CONTEXT)
        line = "1,234 log records were dropped at intake because the queue was full"
        assert line in text_of(out)
        assert line in html_of(out)
        assert line in out.summary

    def test_dropped_singular(self) -> None:
        """One dropped record reads "1 log record was dropped"."""
        assert "1 log record was dropped at intake" in text_of(
            render(make_digest(dropped=1), CONTEXT)
        )

    def test_no_dropped_line_when_nothing_dropped(self) -> None:
        """Nothing is said about dropping when nothing was dropped."""
        out = render(make_digest(), CONTEXT)
        assert "dropped" not in text_of(out)
        assert "dropped" not in html_of(out)


class TestOccurrenceBar:
    def test_widths_are_proportional_to_counts(self) -> None:
        """Each bar's width is the problem's count relative to the largest count."""
        counts = (200, 100, 50, 1)
        digest = make_digest(*(make_problem(n, count=c) for n, c in enumerate(counts)))
        parser = _BarParser()
        parser.feed(html_of(render(digest, CONTEXT)))
        assert parser.widths == [100.0, 50.0, 25.0, 1.0]

    def test_zero_count_has_empty_bar(self) -> None:
        """A problem with no new occurrence gets an empty bar and no division by zero."""
        parser = _BarParser()
        parser.feed(html_of(render(make_digest(make_problem(count=0, total=9)), CONTEXT)))
        assert parser.widths == [0.0]


class TestSize:
    def test_huge_digest_fits_and_is_fast(self) -> None:
        """10,000 problems with 100 KB tracebacks render under 1 MB in well under a second."""
        traceback = ('  File "/srv/app/module.py", line 10, in handler\n    call()\n' * 2000)[
            :100_000
        ]
        problems = tuple(
            make_problem(n, exc_type="RuntimeError", traceback=traceback, count=n + 1)
            for n in range(10_000)
        )
        digest = make_digest(*problems)
        started = time.perf_counter()
        out = render(digest, CONTEXT)
        elapsed = time.perf_counter() - started
        assert len(out.email.as_bytes()) <= 1_000_000
        assert elapsed < 1.0
        text = text_of(out)
        hidden_events = sum(range(51, 10_001))
        assert f"and 9,950 more problems, {hidden_events:,} events not shown" in text
        assert "\n50. " in text
        assert "\n51. " not in text
        assert len(out.summary) <= 1_000

    def test_long_traceback_keeps_its_end(self) -> None:
        """A traceback longer than the cap keeps its last part, after a marker of what was cut."""
        traceback = "Traceback (most recent call last):\n" + "  frame\n" * 20_000 + "KeyError: 'x'"
        text = text_of(render(make_digest(make_problem(traceback=traceback)), CONTEXT))
        assert re.search(r"\[\u2026 [\d,]+ earlier characters cut\]", text)
        assert "KeyError: 'x'" in text
        assert "Traceback (most recent call last)" not in text

    def test_long_message_keeps_its_start(self) -> None:
        """A sample message longer than the cap keeps its start, with a marker of what was cut."""
        message = "start " + "x" * 50_000
        text = text_of(render(make_digest(make_problem(message=message)), CONTEXT))
        assert "| start xxx" in text
        assert re.search(r"\[\u2026 [\d,]+ more characters cut\]", text)
        assert len(text) < 10_000

    def test_tight_limit_drops_tracebacks_first(self) -> None:
        """Under a small max_bytes tracebacks go, rows stay, and the email says so."""
        context = RenderContext(
            sender="alerts@example.com",
            recipients=("ops@example.com",),
            hostname="h",
            max_bytes=65_536,
        )
        traceback = "Traceback (most recent call last):\n" + "  frame line\n" * 2000
        digest = make_digest(*(make_problem(n, traceback=traceback) for n in range(20)))
        out = render(digest, context)
        assert len(out.email.as_bytes()) <= 65_536
        text = text_of(out)
        assert "DETAILS" not in text
        assert "\n20. " in text
        assert "left out to keep this email under 65,536 bytes" in text

    def test_worst_case_fits_the_smallest_limit(self) -> None:
        """Even huge notices, messages and 100 long recipients fit in the smallest max_bytes."""
        recipients = tuple(f"{'r' * 60}{n}@{'d' * 60}.example.com" for n in range(100))
        context = RenderContext(
            sender="alerts@example.com", recipients=recipients, hostname="h" * 500, max_bytes=65_536
        )
        notices = tuple("\U0001f4a5" * 10_000 for _ in range(100))
        problems = tuple(
            make_problem(n, message="\u00fc" * 100_000, logger="l" * 10_000) for n in range(500)
        )
        out = render(
            make_digest(*problems, notices=notices, sequence=99, thread_subject="s"), context
        )
        assert len(out.email.as_bytes()) <= 65_536


class TestRecipients:
    def test_up_to_100_recipients_are_listed(self) -> None:
        """With 100 recipients, all are listed in To."""
        recipients = tuple(f"r{n}@example.com" for n in range(100))
        context = RenderContext(sender="a@example.com", recipients=recipients, hostname="h")
        msg = parse(render(make_digest(), context))
        assert [a.addr_spec for a in msg["To"].addresses] == list(recipients)

    def test_more_than_100_recipients_are_undisclosed(self) -> None:
        """With 101 recipients To is undisclosed-recipients and only the envelope lists them."""
        recipients = tuple(f"r{n}@example.com" for n in range(101))
        context = RenderContext(sender="a@example.com", recipients=recipients, hostname="h")
        out = render(make_digest(), context)
        msg = parse(out)
        assert msg["To"] == "undisclosed-recipients:;"
        assert msg["To"].addresses == ()
        assert msg["Bcc"] is None
        assert out.recipients == recipients


class TestUnicode:
    def test_round_trip(self) -> None:
        """Non-ASCII text survives serialisation and parsing in subject and both parts."""
        message = "\u00dcn\u00efc\u00f6d\u00e9 \U0001f4a5"
        out = render(make_digest(make_problem(message=message, logger="caf\u00e9")), CONTEXT)
        msg = parse(out)
        assert msg["Subject"] == f"[web-1] ERROR: {message} (1 event)"
        assert f"| {message}" in body(msg, "plain")
        assert message in body(msg, "html")
        assert "caf\u00e9" in body(msg, "html")

    def test_long_non_ascii_lines_round_trip(self) -> None:
        """Long lines of non-ASCII text are encoded within SMTP's line limits and come back."""
        message = "\u65e5\u672c\u8a9e " * 2000
        out = render(make_digest(make_problem(message=message)), CONTEXT)
        raw = out.email.as_bytes()
        assert max(len(line) for line in raw.split(b"\r\n")) <= 998
        assert message[:1000] in text_of(out)


class TestShortSummary:
    def test_summary_is_short_and_lists_up_to_ten_problems(self) -> None:
        """The summary has the summary line, ten problem lines and a count of the rest."""
        digest = make_digest(*(make_problem(n, message=f"problem {n}") for n in range(25)))
        out = render(digest, CONTEXT)
        lines = out.summary.split("\n")
        assert lines[0] == "[web-1] ERROR: problem 0 (25 problems, 25 events)"
        assert len([line for line in lines if line.startswith("- ERROR")]) == 10
        assert lines[-1] == "- and 15 more problems, 15 events"
        assert len(out.summary) <= 1_000

    def test_summary_is_capped(self) -> None:
        """Long notices and titles still give a summary of at most 1,000 characters."""
        digest = make_digest(
            *(make_problem(n, message="m" * 5000) for n in range(10)), notices=("n" * 5000,) * 5
        )
        summary = render(digest, CONTEXT).summary
        assert len(summary) <= 1_000
        assert summary.endswith("\u2026")
