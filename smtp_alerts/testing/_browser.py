"""Alert emails as a reader sees them: their HTML laid out by headless Chromium.

One Chromium process, driven over the DevTools protocol through a pipe
(``--remote-debugging-pipe``: JSON messages ended by a NUL byte on file
descriptors 3 and 4), lays out any number of pages at any width: the layout
tests measure (no horizontal overflow at 360 pixels, the headings) and
``scripts/screenshots`` takes PNGs. Only the standard library is used: no
Node, no Playwright, no websocket client.

Chromium never reaches the network: it only loads the files it is given, and
its background services (updates, sync, safe browsing) are turned off.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Browser", "BrowserError", "Layout", "find_chromium"]

_FLAGS = (
    "--headless",
    "--no-sandbox",  # runs as root in containers and CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves: nothing to reach anyway
    "--remote-debugging-pipe",
)

# Measured in the page once it has loaded: the document's width against the
# viewport's, the elements that reach past the viewport's right edge (cut off
# or scrolled to), and the headings.
_MEASURE = """(() => {
  const root = document.documentElement;
  const over = [];
  for (const element of document.body.querySelectorAll('*')) {
    const box = element.getBoundingClientRect();
    if (box.width > 0 && box.right > window.innerWidth + 0.5) {
      over.push(element.tagName.toLowerCase() + ': ' + (element.textContent || '').slice(0, 60));
    }
  }
  return {
    viewport: window.innerWidth,
    scrollWidth: root.scrollWidth,
    scrollHeight: root.scrollHeight,
    overflowing: over.slice(0, 20),
    headings: Array.from(document.querySelectorAll('h1, h2'), (h) => h.textContent.trim()),
  };
})()"""


class BrowserError(RuntimeError):
    """Chromium is missing, did not start, or did not answer in time."""


@dataclass(frozen=True)
class Layout:
    """What a page looks like at one width.

    Attributes:
        viewport: the viewport's width, CSS pixels.
        scroll_width: the document's width; more than ``viewport`` means a
            horizontal scroll bar on a phone.
        scroll_height: the document's height.
        overflowing: elements whose right edge is past the viewport's (tag: text).
        headings: the text of the ``h1`` and ``h2`` headings, in order.
    """

    viewport: int
    scroll_width: int
    scroll_height: int
    overflowing: tuple[str, ...]
    headings: tuple[str, ...]


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable on PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """A headless Chromium with one tab, laid out at the width asked for each page.

    :meth:`close` stops Chromium and removes its profile: use it in
    ``with contextlib.closing(Browser()) as browser:``.

    Raises:
        BrowserError: no Chromium on PATH, or it does not start.
    """

    def __init__(self, executable: str | None = None, *, timeout: float = 30.0) -> None:
        executable = executable or find_chromium()
        if executable is None:
            raise BrowserError("no chromium on PATH (Debian: apt-get install chromium)")
        self._timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="smtp-alerts-chromium-")
        to_chromium, self._commands = os.pipe()
        self._events, from_chromium = os.pipe()
        # Chromium reads commands on fd 3 and writes answers on fd 4; subprocess
        # keeps fds but does not renumber them, so a small Python trampoline
        # does. Its ends are moved above 9 first: were one of them 3 or 4, the
        # first dup2 would overwrite it before the second used it.
        to_chromium, from_chromium = (_above_nine(to_chromium), _above_nine(from_chromium))
        trampoline = (
            f"import os, sys; os.dup2({to_chromium}, 3); os.dup2({from_chromium}, 4); "
            "os.execv(sys.argv[1], sys.argv[1:])"
        )
        self._process = subprocess.Popen(  # noqa: S603 - Chromium from PATH, fixed flags
            [
                sys.executable,
                "-c",
                trampoline,
                executable,
                *_FLAGS,
                f"--user-data-dir={self._profile.name}",
            ],
            pass_fds=(to_chromium, from_chromium),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chromium)
        os.close(from_chromium)
        self._buffer = b""
        self._next_id = 0
        self._seen: list[str] = []  # events that came while a call waited for its answer
        try:
            target = self._call("Target.createTarget", url="about:blank")["targetId"]
            attached = self._call("Target.attachToTarget", targetId=target, flatten=True)
            self._session: str = attached["sessionId"]
            self._call("Page.enable", session=True)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop Chromium and remove its profile; safe to call twice."""
        if self._process.poll() is None:
            # Asked to close, Chromium stops its helper processes and finishes
            # writing its profile; a plain SIGTERM can leave them writing into
            # it while it is removed.
            with contextlib.suppress(BrowserError, OSError):
                self._send("Browser.close")
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        for fd in (self._commands, self._events):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._commands = self._events = -1
        self._remove_profile()

    def _remove_profile(self) -> None:
        """Remove the profile; a helper still exiting may write a file more: try again."""
        deadline = time.monotonic() + 5
        while not _removed(self._profile) and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(self._profile.name, ignore_errors=True)

    def layout(self, page: Path, width: int) -> Layout:
        """Load ``page`` (a local HTML file) at ``width`` CSS pixels and measure it."""
        self._load(page, width)
        facts = self._evaluate(_MEASURE)
        return Layout(
            viewport=int(facts["viewport"]),
            scroll_width=int(facts["scrollWidth"]),
            scroll_height=int(facts["scrollHeight"]),
            overflowing=tuple(facts["overflowing"]),
            headings=tuple(facts["headings"]),
        )

    def screenshot(self, page: Path, width: int, png: Path) -> Layout:
        """Save ``page`` at ``width`` pixels as a PNG of its whole height; returns its layout."""
        layout = self.layout(page, width)
        height = max(1, layout.scroll_height)
        shot = self._call(
            "Page.captureScreenshot",
            session=True,
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        )
        png.write_bytes(base64.b64decode(shot["data"]))
        return layout

    def _load(self, page: Path, width: int) -> None:
        self._call(
            "Emulation.setDeviceMetricsOverride",
            session=True,
            width=width,
            height=800,
            deviceScaleFactor=1,
            mobile=width < 600,  # a phone: the page's viewport meta applies
        )
        self._seen.clear()
        self._call("Page.navigate", session=True, url=page.resolve().as_uri())
        self._wait_for("Page.loadEventFired")

    def _evaluate(self, expression: str) -> dict[str, Any]:
        answer = self._call(
            "Runtime.evaluate", session=True, expression=expression, returnByValue=True
        )
        if "exceptionDetails" in answer:
            raise BrowserError(f"the page's script failed: {answer['exceptionDetails']}")
        value: dict[str, Any] = answer["result"]["value"]
        return value

    def _send(self, method: str, *, session: bool = False, **params: Any) -> None:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")

    def _call(self, method: str, *, session: bool = False, **params: Any) -> dict[str, Any]:
        self._send(method, session=session, **params)
        while True:
            reply = self._receive()
            if "method" in reply:
                self._seen.append(reply["method"])
            elif reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def _wait_for(self, event: str) -> None:
        while event not in self._seen:
            self._seen.append(self._receive().get("method", ""))
        self._seen.clear()

    def _receive(self) -> dict[str, Any]:
        """The next message from Chromium, within the timeout."""
        deadline = time.monotonic() + self._timeout
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise BrowserError("chromium did not answer (it stopped, or is too slow)")
            chunk = _read(self._events, deadline)
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message


def _removed(folder: tempfile.TemporaryDirectory[str]) -> bool:
    try:
        folder.cleanup()
    except OSError:
        return False
    return True


def _above_nine(fd: int) -> int:
    """``fd`` moved to a number of 10 or more (the old one is closed)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


def _read(fd: int, deadline: float) -> bytes:
    """What is available on ``fd``, waiting until ``deadline`` at most."""
    ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
    if not ready:
        return b""
    chunk = os.read(fd, 1 << 16)
    if not chunk:
        raise BrowserError("chromium closed its DevTools pipe")
    return chunk
