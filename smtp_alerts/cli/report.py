"""The report of ``doctor`` and ``send-test``: one line per step, its mark, and what to do.

A :class:`Step` is what one check found: it passed, failed, is worth a
warning, is a plain fact, or was skipped; a failure carries the server's
reply and the :class:`~smtp_alerts._delivery.diagnosis.Diagnosis`. The
:class:`Report` keeps the steps, writes each as soon as it is added (a slow
step shows the ones before it at once) and counts failures and warnings for
the exit status; :func:`render` turns a step into its lines. :func:`run_checks`
is the frame both commands run in: the settings line first, exit status 2
for unusable settings.

The secret is never printed: errors carry none (the transport scrubs them),
the settings line says only where the password comes from, and every line is
scrubbed once more before it is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import sys
import textwrap
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from .._delivery.diagnosis import diagnose
from .._util.smtp_reply import one_line
from ..errors import ConfigurationError
from ..settings import Settings

if TYPE_CHECKING:
    from collections.abc import (
        AsyncIterator,
        Callable,
        Coroutine,
        Iterator,
        Mapping,
        Sequence,
    )

    from .._delivery.diagnosis import Diagnosis
    from ..errors import DeliveryError
    from ..transports.xoauth2 import TokenProvider

__all__ = [
    "Report",
    "Status",
    "Step",
    "UnusableSettingsError",
    "ms_since",
    "render",
    "report_failure",
    "run_checks",
    "why",
]

_LABEL_WIDTH = 12
# A step quiet for this long says it is still waiting, then again at this interval:
# plain lines, no spinner, so a pipe or a log file reads as well as a terminal.
_WAIT_NOTICE = 2.0
_WAIT_REPEAT = 10.0
_WRAP = 100
# Secrets shorter than this are not scrubbed from output by substitution:
# replacing a two-letter "password" would garble every line (and such a
# password never appears anyway; the scrubbing is a second line of defence).
_MIN_SCRUB = 6


class Status(enum.Enum):
    """What a step found."""

    OK = "ok"
    FAIL = "fail"
    WARN = "warn"
    INFO = "info"
    SKIP = "skip"


_UNICODE_MARKS = {
    Status.OK: "✔",
    Status.FAIL: "✘",
    Status.WARN: "!",
    Status.INFO: "·",
    Status.SKIP: "-",
}
_ASCII_MARKS = {
    Status.OK: "[ok]  ",
    Status.FAIL: "[FAIL]",
    Status.WARN: "[warn]",
    Status.INFO: "[info]",
    Status.SKIP: "[skip]",
}


@dataclass(frozen=True, slots=True)
class Step:
    """One line of the report, with what is shown under it.

    Attributes:
        status: what the step found.
        label: the step's name (``connect``, ``login``...) or a channel's.
        text: what it found, in one sentence.
        ms: how long it took, in milliseconds, when that is worth showing.
        why: for a failure or a warning, what is wrong and how to fix it.
        reply: for a failure, what the server said.
    """

    status: Status
    label: str
    text: str
    ms: float | None = None
    why: Diagnosis | None = None
    reply: str = ""


class UnusableSettingsError(Exception):
    """The settings load, but a transport cannot be built from them (a bad CA file...)."""


class Report:
    """Keeps the steps, writes each with its mark, and counts failures and warnings.

    Args:
        stream: where to write; its encoding decides between ``✔``/``✘`` and ASCII.
        secrets: strings never to write (replaced by ``********``).
    """

    def __init__(self, stream: TextIO, secrets: Sequence[str] = ()) -> None:
        self._stream = stream
        self._secrets = tuple(
            dict.fromkeys(
                form
                for secret in secrets
                for form in (secret, secret.replace(" ", ""))
                if len(form) >= _MIN_SCRUB
            )
        )
        unicode = _can_encode(stream, "✔✘·…")
        self.marks = _UNICODE_MARKS if unicode else _ASCII_MARKS
        self._wait_mark = "…" if unicode else "[wait]"
        self.steps: list[Step] = []

    @property
    def failed(self) -> int:
        """How many steps failed."""
        return sum(step.status is Status.FAIL for step in self.steps)

    @property
    def warned(self) -> int:
        """How many steps ended with a warning."""
        return sum(step.status is Status.WARN for step in self.steps)

    def add(self, step: Step) -> None:
        """Keep ``step`` and write it now."""
        self.steps.append(step)
        for line in render(step, self.marks):
            self._write(line)

    @contextlib.asynccontextmanager
    async def waiting(self, label: str, text: str) -> AsyncIterator[None]:
        """Say that the step ``label`` is still waiting, if it goes quiet for a while.

        Args:
            label: the step, as its own line will name it.
            text: what it waits for (``greeting from smtp.gmail.com:587``).
        """
        started = time.perf_counter()

        async def notices() -> None:
            await asyncio.sleep(_WAIT_NOTICE)
            while True:
                elapsed = time.perf_counter() - started
                self._write(
                    f"{self._wait_mark} {label:<{_LABEL_WIDTH}} {text}: "
                    f"still waiting after {elapsed:.0f} s"
                )
                await asyncio.sleep(_WAIT_REPEAT)

        task = asyncio.create_task(notices())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _write(self, line: str) -> None:
        print(self._scrub(line), file=self._stream, flush=True)

    def ok(self, label: str, text: str, *, ms: float | None = None) -> None:
        """A step that passed."""
        self.add(Step(Status.OK, label, text, ms))

    def fail(
        self,
        label: str,
        text: str,
        *,
        ms: float | None = None,
        why: Diagnosis | None = None,
        reply: str = "",
    ) -> None:
        """A step that failed, with the server's reply and the diagnosis under it."""
        self.add(Step(Status.FAIL, label, text, ms, why, reply))

    def warn(
        self, label: str, text: str, *, ms: float | None = None, why: Diagnosis | None = None
    ) -> None:
        """Something worth knowing that does not stop alerts from being sent."""
        self.add(Step(Status.WARN, label, text, ms, why))

    def info(self, label: str, text: str) -> None:
        """A fact, not a check."""
        self.add(Step(Status.INFO, label, text))

    def skip(self, label: str, text: str) -> None:
        """A step not taken because one it depends on failed."""
        self.add(Step(Status.SKIP, label, text))

    def _scrub(self, line: str) -> str:
        for secret in self._secrets:
            line = line.replace(secret, "********")
        return line


def render(step: Step, marks: Mapping[Status, str]) -> list[str]:
    """The lines of one step: its own, then the server's reply and the diagnosis, indented.

    Args:
        step: the step.
        marks: the mark of each status (``✔``... or ``[ok]``...).

    Returns:
        The lines, without line ends.
    """
    timing = f"  ({step.ms:.0f} ms)" if step.ms is not None else ""
    lines = [f"{marks[step.status]} {step.label:<{_LABEL_WIDTH}} {step.text}{timing}"]
    indent = " " * (len(marks[Status.OK]) + 1 + _LABEL_WIDTH + 1)
    if step.reply:
        lines.append(_indented(indent, "server said: ", one_line(step.reply)))
    if step.why is not None:
        lines.append(_indented(indent, f"{step.why.code}: ", step.why.problem))
        lines.append(_indented(indent, "fix: ", step.why.fix))
    return lines


def run_checks(
    check: Callable[[Settings, Report], Coroutine[Any, Any, int]],
    *,
    timeout: float,
    token_provider: TokenProvider | None,
    stream: TextIO | None,
) -> int:
    """Load the settings, report them, then run ``check``: the frame of doctor and send-test.

    Args:
        check: the command's own steps; returns the exit status.
        timeout: the command's ``--timeout``, checked here.
        token_provider: the program's XOAUTH2 token provider, if any (named in
            the settings line).
        stream: where to write; standard output when omitted.

    Returns:
        The exit status: ``check``'s, or 2 for an unusable ``--timeout`` or settings.
    """
    out = stream if stream is not None else sys.stdout
    if not timeout > 0:
        Report(out).fail("settings", "--timeout must be a positive number of seconds")
        return 2
    try:
        settings = Settings()
    except ConfigurationError as exc:
        report = Report(out)
        lines = [line.strip() for line in str(exc).splitlines()[1:]] or [str(exc)]
        for line in lines:
            report.fail("settings", line)
        return 2
    report = Report(out, _secrets_of(settings))
    report.ok("settings", _describe(settings, oauth=token_provider is not None))
    try:
        with _library_logs_silenced():
            return asyncio.run(check(settings, report))
    except UnusableSettingsError as exc:
        report.fail("settings", str(exc))
        return 2


def report_failure(
    report: Report,
    settings: Settings,
    label: str,
    text: str,
    *,
    started: float,
    error: DeliveryError,
) -> None:
    """A failed step: what failed, the server's reply if any, the diagnosis."""
    report.fail(label, text, ms=ms_since(started), why=why(settings, error), reply=error.reply)


def why(settings: Settings, error: DeliveryError, *, server: str | None = None) -> Diagnosis:
    """The diagnosis of ``error``, naming the account of the channel that failed."""
    account = settings.username
    if settings.backup_host is not None and (server or error.channel) == (
        f"{settings.backup_host}:{settings.backup_port}"
    ):
        account = settings.backup_username
    return diagnose(error, account=account, server=server or error.channel or None)


def ms_since(started: float) -> float:
    """Milliseconds since ``started`` (a :func:`time.perf_counter` reading)."""
    return (time.perf_counter() - started) * 1000


def _indented(indent: str, head: str, text: str) -> str:
    return textwrap.fill(
        text,
        width=_WRAP,
        initial_indent=indent + head,
        subsequent_indent=indent + " " * len(head),
        break_long_words=False,
        break_on_hyphens=False,
    )


def _describe(settings: Settings, *, oauth: bool) -> str:
    where = f"{settings.host}:{settings.port} {settings.effective_security}"
    if settings.username is None:
        login = "no login"
    elif oauth:
        login = f"login {settings.username} with OAuth2 (XOAUTH2)"
    elif settings.password is not None:
        login = f"login {settings.username} with the password in SMTP_ALERTS_PASSWORD"
    elif settings.password_file is not None:
        login = f"login {settings.username} with the password in {settings.password_file}"
    else:
        login = f"login {settings.username} without a password (SMTP_ALERTS_PASSWORD unset)"
    return f"{where}, {login}, alerts to {', '.join(settings.to)}"


def _secrets_of(settings: Settings) -> list[str]:
    found = [url.get_secret_value() for url in settings.fallback_urls]
    if settings.backup_password is not None:
        found.append(settings.backup_password.get_secret_value())
    with contextlib.suppress(OSError, UnicodeDecodeError):
        password = settings.read_password()
        if password:
            found.append(password)
    return found


@contextlib.contextmanager
def _library_logs_silenced() -> Iterator[None]:
    """Keep the library's own warnings (each failed try) off stderr: the report says it all.

    A handler on the ``smtp_alerts`` logger keeps :data:`logging.lastResort`
    from printing them when the program has configured no logging; a
    program that has still gets them.
    """
    logger = logging.getLogger("smtp_alerts")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _can_encode(stream: TextIO, text: str) -> bool:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True
