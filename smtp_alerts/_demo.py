"""``smtp-alerts demo``: the real pipeline against an embedded Gmail-like server.

Everything is real except the far end: the handler, the engine, the windows,
the renderer and the SMTP transport (STARTTLS, certificate verification,
AUTH PLAIN) talk to :class:`~smtp_alerts.testing.GmailServer` on 127.0.0.1.
"""

from __future__ import annotations

import html
import logging
import time
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path

from ._engine import Engine
from .handler import AlertHandler
from .testing import GmailServer

__all__ = ["run_demo"]


def run_demo(*, output_root: Path, quick: bool = False) -> int:
    """Run the demo scenario and show what arrived.

    Args:
        output_root: a folder under which this run's folder is created.
        quick: use shorter windows (for tests).

    Returns:
        0 when the expected emails arrived, 1 otherwise.
    """
    wait = 0.3 if quick else 1.5
    with GmailServer() as server:
        print(f"Gmail-like SMTP server on {server.host}:{server.port} (STARTTLS + AUTH required)")
        settings = server.settings(
            group_wait=f"{wait}s", group_interval="1h", subject_prefix="[demo-host]"
        )
        engine = Engine(settings)
        handler = AlertHandler(engine=engine)
        root = logging.getLogger("demo")
        root.addHandler(handler)
        root.propagate = False
        try:
            _scenario(wait)
            engine.close(timeout=30)
        finally:
            root.removeHandler(handler)
        messages = [received.message for received in server.messages]
    if not messages:
        print("No email arrived: something is wrong; run with a debugger or open an issue.")
        return 1
    folder = _save(messages, output_root)
    for number, message in enumerate(messages, 1):
        _show(number, message)
    print(f"\n{len(messages)} emails arrived. Saved as .eml files with an index.html in:")
    print(f"  {folder.resolve()}")
    print(f"  open {folder.resolve() / 'index.html'}")
    return 0


def _scenario(wait: float) -> None:
    """A burst of duplicates and distinct errors, an exception, a CRITICAL, then repeats."""
    api = logging.getLogger("demo.shop.api")
    payments = logging.getLogger("demo.shop.payments")
    db = logging.getLogger("demo.shop.db")

    print("\n1. A burst: 2,000 identical errors, three distinct ones and an exception,")
    print(f"   collected for GROUP_WAIT ({wait:g} s here) into one digest.")
    for order in range(2000):
        payments.error("payment gateway timed out for order %d", order)
    payments.error("card declined by issuer for customer %s", "c-1042")
    api.warning("slow response from inventory service: %d ms", 2300)
    api.error("upstream returned HTTP %d for /v1/cart", 502)
    for sku in ("A-17", "B-2"):
        try:
            {"A-1": 3}[sku]
        except KeyError:  # noqa: PERF203 - one traceback per item is the point
            api.exception("could not price cart item")
    time.sleep(wait * 3)

    print("2. A CRITICAL skips the waits (GROUP_INTERVAL is 1 h here) and goes out at once,")
    print("   threaded under the first email.")
    db.critical("database primary %s is unreachable; failing over", "db-1.internal")
    time.sleep(wait * 3)

    print("3. More of the same problems: only counted; the exit flush sends the counts.")
    for order in range(50):
        payments.error("payment gateway timed out for order %d", order)


def _show(number: int, message: EmailMessage) -> None:
    print(f"\n--- email {number}: {message['Subject']}")
    print(f"    From: {message['From']}  To: {message['To']}  Date: {message['Date']}")
    if message["In-Reply-To"]:
        print(f"    In-Reply-To: {message['In-Reply-To']} (threads with the first email)")
    body = message.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else ""
    summary = text.split("\n\nTraceback", 1)[0].split("\n-- \n", 1)[0]
    lines = summary.strip().splitlines()
    for line in lines[:24]:
        print(f"    {line}")
    if len(lines) > 24:
        print(f"    ... ({len(lines) - 24} more lines in the .eml)")


def _save(messages: list[EmailMessage], output_root: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = output_root / stamp
    folder.mkdir(parents=True, exist_ok=True)
    links = []
    for number, message in enumerate(messages, 1):
        name = f"{number:02d}.eml"
        (folder / name).write_bytes(message.as_bytes())
        html_part = message.get_body(preferencelist=("html",))
        page = f"{number:02d}.html"
        content = html_part.get_content() if html_part is not None else ""
        (folder / page).write_text(content, encoding="utf-8")
        subject = html.escape(str(message["Subject"]))
        links.append(f'<li><a href="{page}">{subject}</a> (<a href="{name}">.eml</a>)</li>')
    index = (
        "<!doctype html><meta charset=utf-8><title>smtp-alerts demo</title>"
        '<body style="font-family:system-ui,sans-serif;max-width:760px;margin:2em auto">'
        "<h1>smtp-alerts demo</h1><p>The emails the embedded Gmail-like server received, "
        "in order. Each link opens the HTML part as Gmail would show it.</p>"
        f"<ol>{''.join(links)}</ol></body>"
    )
    (folder / "index.html").write_text(index, encoding="utf-8")
    return folder
