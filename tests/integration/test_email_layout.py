"""The alert emails as a reader sees them: laid out by headless Chromium at 360 and 1200 px.

The demo's emails (``smtp-alerts demo``, run as a user runs it) and a digest
built to be hard to lay out (long unbroken tokens, full timelines, notices)
are loaded into one Chromium (see :mod:`smtp_alerts.testing._browser`) at a
phone's width and a desktop's. What matters: nothing wider than the screen,
nothing cut off, the headings a reader scans for. ``scripts/screenshots``
takes the pictures of the same.

Chromium is Debian's ``chromium`` (``./scripts/test`` installs it); without
it these tests are skipped, except under CI where they must run.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, replace
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from smtp_alerts._engine.render import RenderContext, render
from smtp_alerts.models import Alert, Digest, Problem
from smtp_alerts.testing._browser import Browser, find_chromium

NOW = 1_795_000_000.0


@dataclass(frozen=True)
class Email:
    subject: str
    text: str
    page: Path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the whole module (a start costs about a second)."""
    if find_chromium() is None:
        reason = "chromium is not installed (apt-get install chromium; ./scripts/test does)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; under CI the layout tests must run")
        pytest.skip(reason)
    with closing(Browser()) as chromium:
        yield chromium


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> list[Email]:
    """The emails of ``smtp-alerts demo --quick``, run as a subprocess."""
    folder = tmp_path_factory.mktemp("demo")
    _run("-m", "smtp_alerts.cli", "demo", "--quick", "--output", str(folder))
    emails = []
    for path in sorted(folder.glob("*/*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        emails.append(_email(message, path.with_suffix(".html")))
    return emails


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run our interpreter with ``args`` and no SMTP_ALERTS_* of the caller; it must succeed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTP_ALERTS_")}
    result = subprocess.run(  # noqa: S603 - our own interpreter, CLI and scripts
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _email(message: EmailMessage, page: Path) -> Email:
    parts = {}
    for kind in ("plain", "html"):
        part = message.get_body(preferencelist=(kind,))
        assert part is not None
        parts[kind] = part.get_content()
    page.write_text(parts["html"], encoding="utf-8")
    return Email(str(message["Subject"]), parts["plain"], page)


def _hard_digest() -> Digest:
    """Long unbroken tokens everywhere, a 60-bar timeline per row, notices, a traceback."""
    token = "https://example.com/" + "a" * 400
    alert = Alert(
        fingerprint=("test", 1),
        level=logging.CRITICAL,
        logger="shop." + "x" * 200,
        message=f"request to {token} failed\n{'y' * 500}",
        created=NOW,
        location="/srv/" + "deep/" * 60 + "module.py:42 in handler",
        exc_type="Error" + "z" * 150,
        traceback="Traceback (most recent call last):\n" + "w" * 2000,
        context=(("url", token), ("k" * 64, "v" * 256)),
    )
    problem = Problem(
        alert=alert,
        count=123_456_789,
        total=987_654_321,
        first_seen=NOW - 3600,
        last_seen=NOW,
        is_new=True,
        timeline=tuple(range(60)),
        last_message="q" * 900,
    )
    problems = tuple(replace(problem, alert=replace(alert, fingerprint=("t", n))) for n in range(5))
    return Digest(
        group="default",
        incident_id="i" * 64,
        sequence=12,
        problems=problems,
        created=NOW,
        notices=("n" * 500,),
        dropped=1_000_000,
        timeline_start=NOW - 3599,
        timeline_step=60,
    )


FIRST_SUBJECT = (
    "[demo-host] ERROR: payment gateway timed out for order \u2039\u2026\u203a "
    "(5 problems, 2,005 events)"
)
"""The demo's first subject: the busy row's template, not one order's text."""


class TestDemoEmails:
    def test_no_horizontal_overflow_on_a_phone(self, demo: list[Email], browser: Browser) -> None:
        """At 360 px every demo email is at most 360 px wide and nothing reaches past the edge."""
        assert len(demo) == 3
        for email in demo:
            layout = browser.layout(email.page, 360)
            assert layout.scroll_width <= 360, (email.subject, layout)
            assert layout.overflowing == (), (email.subject, layout)

    def test_desktop_width_keeps_one_readable_column(
        self, demo: list[Email], browser: Browser
    ) -> None:
        """At 1200 px nothing overflows either, and the page is not stretched into long lines."""
        for email in demo:
            layout = browser.layout(email.page, 1200)
            assert layout.scroll_width <= 1200, (email.subject, layout)
            assert layout.overflowing == ()
        page = demo[0].page.read_text(encoding="utf-8")
        assert "max-width:760px" in page

    def test_subjects_name_the_host_and_the_worst_new_problem(self, demo: list[Email]) -> None:
        """The subjects say the demo's host, the level and the problem; the footer the same host."""
        first, critical, last = (email.subject for email in demo)
        assert first == FIRST_SUBJECT
        assert critical.startswith("[demo-host] CRITICAL: database primary db-1.internal")
        assert last.startswith("Re: [demo-host] ERROR: payment gateway")
        for email in demo:
            assert "\nHost demo-host \u00b7 incident " in email.text

    def test_headings(self, demo: list[Email], browser: Browser) -> None:
        """The summary is the page's heading; the traceback is under Details, not Tracebacks."""
        first, critical, _ = demo
        layout = browser.layout(first.page, 360)
        assert layout.headings == (FIRST_SUBJECT, "Details")
        assert browser.layout(critical.page, 360).headings[1:] == ()

    def test_the_busy_row_is_titled_by_its_template(self, demo: list[Email]) -> None:
        """The 2,000 timeouts of 2,000 orders do not read as order 0's."""
        text = demo[0].text
        assert "1. [ERROR] payment gateway timed out for order \u2039\u2026\u203a  [new]" in text
        assert "   first       | payment gateway timed out for order 0" in text
        # And a later occurrence beside it, another order's.
        later = r"   later       \| payment gateway timed out for order [1-9]\d*\r\n"
        assert re.search(later, text)


class TestHardDigest:
    @pytest.mark.parametrize("width", [360, 1200])
    def test_long_tokens_wrap_and_nothing_overflows(
        self, width: int, browser: Browser, tmp_path: Path
    ) -> None:
        """Unbroken 400-character tokens, a long path, 60 bars: all inside the screen."""
        context = RenderContext(
            sender="alerts@example.com", recipients=("ops@example.com",), hostname="h" * 63
        )
        message = render(_hard_digest(), context).email
        email = _email(message, tmp_path / "hard.html")
        layout = browser.layout(email.page, width)
        assert layout.scroll_width <= width, layout
        assert layout.overflowing == (), layout
        assert layout.headings[-1] == "Details"


class TestScreenshotsScript:
    def test_demo_screenshots_at_both_widths(self, tmp_path: Path) -> None:
        """``scripts/screenshots --only demo`` writes a PNG per email and width, and an index."""
        if find_chromium() is None:
            pytest.skip("chromium is not installed")
        script = Path(__file__).resolve().parents[2] / "scripts" / "screenshots"
        result = _run(str(script), "--only", "demo", "--output", str(tmp_path))
        (folder,) = tmp_path.iterdir()
        pngs = sorted(path.name for path in folder.glob("*.png"))
        assert pngs == [f"demo-{n:02d}-{w}.png" for n in (1, 2, 3) for w in (1200, 360)]
        assert all((folder / name).read_bytes().startswith(b"\x89PNG") for name in pngs)
        assert str(folder.resolve()) in result.stdout
        assert "OVERFLOWS" not in result.stdout
