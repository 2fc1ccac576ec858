"""``smtp-alerts demo``: the real pipeline against an embedded Gmail-like server.

Everything is real except the far end: the handler, the engine, the windows,
the renderer and the SMTP transport (STARTTLS, certificate verification,
AUTH PLAIN) talk to :class:`~smtp_alerts.testing.GmailServer` on 127.0.0.1.
"""

from __future__ import annotations

import html
import logging
import sys
import time
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path

from .._delivery.channels import smtp_channel
from .._facade import Engine
from ..handler import AlertHandler
from ..models import Digest, OutgoingMessage
from ..testing import GmailServer, ReceivedMessage
from ..transports import Transport

__all__ = ["run_demo"]


class _Recording(Transport):
    """The real SMTP transport, keeping each digest it delivered for the summary."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.name = inner.name
        self.digests: list[Digest] = []

    async def send(self, message: OutgoingMessage, /) -> None:
        await self.inner.send(message)
        if message.digest is not None:
            self.digests.append(message.digest)

    async def aclose(self) -> None:
        await self.inner.aclose()


def run_demo(*, output_root: Path, quick: bool = False) -> int:
    """Run the demo scenario and show what arrived.

    Args:
        output_root: a folder under which this run's folder is created.
        quick: use shorter windows (for tests).

    Returns:
        0 when the expected emails arrived, 1 otherwise, 2 when ``output_root``
        cannot take them (said before the demo runs, not after).
    """
    try:
        folder = _output_folder(output_root)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(
            f"smtp-alerts demo: --output {output_root}: cannot write there: {reason}",
            file=sys.stderr,
        )
        return 2
    wait = 0.2 if quick else 1.0
    with GmailServer() as server:
        print(f"Gmail-like SMTP server on {server.host}:{server.port} (STARTTLS + AUTH required)")
        settings = server.settings(group_wait=f"{wait}s", group_interval="1h")
        transport = _Recording(smtp_channel(settings))
        # A host name of its own (not a subject prefix), so the subject's
        # "[demo-host]" and the footer's "Host demo-host" name the same host.
        engine = Engine(settings, transport=transport, hostname="demo-host")
        handler = AlertHandler(logging.WARNING, engine=engine)
        root = logging.getLogger("demo")
        root.addHandler(handler)
        root.propagate = False
        try:
            _scenario(wait)
            delivered = engine.close(timeout=30)
        finally:
            root.removeHandler(handler)
        received = list(server.messages)
    messages = [item.message for item in received]
    if not messages or not delivered:
        print("Not every email arrived: something is wrong; please open an issue with this output.")
        return 1
    _save(received, folder)
    for number, (message, digest) in enumerate(zip(messages, transport.digests, strict=True), 1):
        _show(number, message, digest)
    print(f"\n{len(messages)} emails arrived. Saved as .eml files with an index.html in:")
    print(f"  {folder.resolve()}")
    print(f"  open {folder.resolve() / 'index.html'}")
    return 0


def _charge(log: logging.Logger, order: int) -> None:
    log.error("payment gateway timed out for order %d", order)


def _scenario(wait: float) -> None:
    """A burst of duplicates and distinct problems, a CRITICAL, then more of the same."""
    api = logging.getLogger("demo.shop.api")
    payments = logging.getLogger("demo.shop.payments")
    db = logging.getLogger("demo.shop.db")

    print("\n1. A burst: 2,000 identical errors, an error with a traceback (twice) and three")
    print(f"   other problems, collected for GROUP_WAIT ({wait:g} s here) into one digest.")
    for order in range(2000):
        _charge(payments, order)
    payments.error("card declined by issuer for customer %s", "c-1042")
    api.warning("slow response from inventory service: %d ms", 2300)
    api.error("upstream returned HTTP %d for /v1/cart", 502)
    for sku in ("A-17", "B-2"):
        try:
            {"A-1": 3}[sku]
        except KeyError:  # noqa: PERF203 - one traceback per item is the point
            api.exception("could not price cart item %s", sku)
    time.sleep(wait + 0.8)

    print("2. A CRITICAL skips the waits (GROUP_INTERVAL is 1 h here) and goes out at once,")
    print("   threaded under the first email.")
    db.critical("database primary %s is unreachable; failing over", "db-1.internal")
    time.sleep(0.8)

    print("3. 500 more of the first problem: only counted; the exit flush sends the count.")
    for order in range(2000, 2500):
        _charge(payments, order)


def _show(number: int, message: EmailMessage, digest: Digest) -> None:
    print(f"\n--- email {number}: {message['Subject']}")
    print(f"    Date: {message['Date']}   Message-ID: {message['Message-ID']}")
    if message["In-Reply-To"]:
        print(f"    In-Reply-To: {message['In-Reply-To']} (threads under the first email)")
    for notice in digest.notices:
        print(f"    ! {notice}")
    print(f"    {'level':<9}{'events':>8}{'total':>8}  {'first seen':<12}{'last seen':<12}problem")
    for problem in digest.problems:
        first, last = (_hms(problem.first_seen), _hms(problem.last_seen))
        new = " (new)" if problem.is_new else ""
        print(
            f"    {problem.alert.level_name:<9}{problem.count:>8,}{problem.total:>8,}  "
            f"{first:<12}{last:<12}{problem.alert.title[:60]}{new}"
        )


def _hms(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%H:%M:%S")


def _output_folder(output_root: Path) -> Path:
    """This run's folder under ``output_root``, made (and proved writable) now.

    Raises:
        OSError: it cannot be made, or not written to.
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = output_root / stamp
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / "index.html"  # written again with the emails' list at the end
    probe.write_text("", encoding="utf-8")
    return folder


def _save(received: list[ReceivedMessage], folder: Path) -> None:
    links = []
    for number, item in enumerate(received, 1):
        message = item.message
        name = f"{number:02d}.eml"
        (folder / name).write_bytes(item.raw)  # exactly what arrived
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
