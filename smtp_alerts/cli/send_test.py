"""``smtp-alerts send-test``: one real message through every channel, until one takes it.

The message goes through the delivery chain the engine uses (both ports of
``HOST``, the backup server, the apprise URLs), rendered like every digest.
One line per channel says whether it took the message or why not, with the
diagnosis in Gmail's terms; the exit status is 0 when a channel took it, 1
when none did and 2 for unusable settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import TYPE_CHECKING, TextIO

from .report import Report, UnusableSettingsError, ms_since, run_checks, why

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._delivery.chain import Outcome
    from ..errors import DeliveryError
    from ..models import OutgoingMessage
    from ..settings import Settings
    from ..transports.xoauth2 import TokenProvider

__all__ = ["DEFAULT_TIMEOUT", "build_test_message", "run_send_test"]

DEFAULT_TIMEOUT = 30.0
"""Seconds send-test may take in all."""


def run_send_test(
    *,
    timeout: float = DEFAULT_TIMEOUT,
    token_provider: TokenProvider | None = None,
    stream: TextIO | None = None,
) -> int:
    """Run ``smtp-alerts send-test``.

    Args:
        timeout: seconds in all.
        token_provider: for a program that logs in with XOAUTH2 and runs the
            test itself: its token provider, used instead of a password.
        stream: where to write; standard output when omitted.

    Returns:
        The exit status: 0 a channel took the message, 1 none did, 2 unusable settings.
    """

    async def check(settings: Settings, report: Report) -> int:
        return await _send_test(settings, report, timeout, token_provider)

    return run_checks(check, timeout=timeout, token_provider=token_provider, stream=stream)


def build_test_message(settings: Settings, *, command: str = "send-test") -> OutgoingMessage:
    """A test message, rendered like every digest (headers, both parts, Auto-Submitted).

    Args:
        settings: who sends it, and to whom.
        command: the command named in it.

    Returns:
        The message, with a Message-ID of its own.
    """
    from .._engine.render import RenderContext, render  # noqa: PLC0415 - only when a message is sent
    from ..models import Digest  # noqa: PLC0415

    context = RenderContext.from_settings(settings)
    notice = (
        "smtp-alerts test message: alerts from this machine reach this address "
        f"(sent by `smtp-alerts {command}`)"
    )
    now = time.time()
    digest = Digest(
        group="smtp-alerts-test",
        incident_id=f"test-{int(now)}-{secrets.token_hex(4)}",
        sequence=1,
        problems=(),
        created=now,
        reason="test",
        notices=(notice,),
    )
    return render(digest, context)


class _ChannelLines:
    """One line per channel of the chain, written when the chain moves on from it."""

    def __init__(self, report: Report, settings: Settings) -> None:
        self._report = report
        self._settings = settings
        self._outcomes: list[Outcome] = []
        self.tried: set[str] = set()
        self.took: str | None = None

    def attempt(self, outcome: Outcome) -> None:
        if self._outcomes and self._outcomes[-1].channel != outcome.channel:
            self.flush()
        self._outcomes.append(outcome)
        self.tried.add(outcome.channel)

    def flush(self) -> None:
        outcomes, self._outcomes = self._outcomes, []
        if not outcomes:
            return
        last = outcomes[-1]
        tries = f" after {len(outcomes)} tries" if len(outcomes) > 1 else ""
        if last.error is None:
            self.took = last.channel
            self._report.ok(last.channel, f"took the test message{tries}", ms=last.duration * 1000)
            return
        self._report.fail(
            last.channel,
            f"did not take the test message{tries}",
            ms=last.duration * 1000,
            why=why(self._settings, last.error, server=last.channel),
            reply=last.error.reply,
        )


async def _send_test(
    settings: Settings, report: Report, timeout: float, token_provider: TokenProvider | None
) -> int:
    from .._delivery.chain import FallbackChain, NoChannelTookError  # noqa: PLC0415
    from .._delivery.channels import build_channels  # noqa: PLC0415 - aiosmtplib loads only here

    problems: list[str] = []
    try:
        channels = build_channels(
            settings, token_provider=token_provider, on_problem=problems.append
        )
    except ValueError as exc:
        raise UnusableSettingsError(str(exc)) from exc
    for problem in problems:
        report.warn("channels", problem)
    lines = _ChannelLines(report, settings)
    chain = FallbackChain(channels, deadline=settings.timeout, on_attempt=lines.attempt)
    message = build_test_message(settings)
    started = time.perf_counter()
    failures: Sequence[DeliveryError] = ()
    try:
        async with report.waiting("send-test", "sending through the channels in turn"):
            await asyncio.wait_for(chain.send(message), timeout)
    except NoChannelTookError as exc:
        failures = exc.failures
    except asyncio.TimeoutError:
        lines.flush()
        report.fail("send-test", f"no channel took the test message within {timeout:g}s")
        return 1
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(chain.aclose(), 2.0)
    lines.flush()
    for failure in failures:
        if failure.channel not in lines.tried:
            report.skip(failure.channel or "channel", failure.message)
    if lines.took is None:
        report.fail("send-test", "no channel took the test message", ms=ms_since(started))
        return 1
    recipients = ", ".join(message.recipients)
    report.ok("send-test", f"sent to {recipients} through {lines.took}", ms=ms_since(started))
    return 0
