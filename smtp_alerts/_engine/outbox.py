"""The engine's way out: the delivery it builds, and the messages delivery asks it for.

:func:`open_spool` opens the spool (SQLite in ``SPOOL_DIR``, or memory when
there is none) and :func:`build_delivery` assembles what the engine delivers
through: the channels from the settings (or the one transport given) and the
fallback chain. Both run on a worker thread at the engine's start, the spool
first: the channels import aiosmtplib and load the CA store.

Delivery sometimes needs a digest rendered again (:class:`Rerender`): smaller
after a 552, marked as delayed when an earlier process formed it, or many
merged into one when the spool overflows. Every attempt is written to the
spool's history (:class:`AttemptLog`) for ``smtp-alerts spool history``.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from .._delivery.chain import FallbackChain, Outcome
from .._delivery.channels import build_channels
from .._delivery.rounds import Delivery, MemorySpool, SpoolLike
from .._delivery.spool import Attempt, Spool
from .._util.clock import Clock
from .._util.humanize import format_time
from .._util.stderr import warn
from ..models import Digest, OutgoingMessage
from .render import MIN_MAX_BYTES, RenderContext, render

if TYPE_CHECKING:
    from .._delivery.auth_watch import AuthWatch
    from ..settings import Settings
    from ..transports import Transport
    from ..transports.xoauth2 import TokenProvider

__all__ = ["AttemptLog", "Rerender", "build_delivery", "open_spool"]

log = logging.getLogger("smtp_alerts.engine")


def open_spool(path: Path, *, clock: Clock, rerender: Rerender, use: bool) -> SpoolLike:
    """The spool in ``path`` (SQLite), or one in memory when it cannot be used or ``use`` is False.

    Args:
        path: the spool's directory (``SPOOL_DIR``).
        clock: the engine's clock.
        rerender: merges the oldest digests when the spool is full.
        use: keep undelivered digests on disk; False keeps them in memory.
    """
    if not use:
        return MemorySpool(clock=clock)
    try:
        return Spool(path, clock=clock, summarize=rerender.merged)
    except (OSError, sqlite3.Error) as exc:
        warn(
            f"smtp-alerts: cannot use the spool at {path} ({exc}); undelivered alerts "
            "are kept in memory only. Set SMTP_ALERTS_SPOOL_DIR to a writable folder."
        )
        return MemorySpool(clock=clock)


def build_delivery(
    settings: Settings,
    spool: SpoolLike,
    *,
    transport: Transport | None,
    token_provider: TokenProvider | None,
    clock: Clock,
    started: float,
    gate: AuthWatch,
    rerender: Rerender,
) -> Delivery:
    """The chain through the channels, delivering from ``spool``; blocking (on a worker thread).

    Args:
        settings: the engine's settings.
        spool: from :func:`open_spool`, opened first (the store beside it too).
        transport: the one channel to send through; the channels of the settings when None.
        token_provider: for XOAUTH2, the access tokens.
        clock: the engine's clock.
        started: when the engine started: older spooled digests are an earlier process's.
        gate: the auth watcher, which decides which logins may be tried.
        rerender: renders digests again when delivery needs it.
    """
    transports = (
        [transport]
        if transport is not None
        else build_channels(settings, token_provider=token_provider, on_problem=warn)
    )
    attempts = AttemptLog()
    chain = FallbackChain(
        transports,
        clock=clock,
        deadline=settings.timeout,
        shrink=rerender.smaller,
        on_attempt=attempts,
        gate=gate,
    )
    attempts.spool = spool
    return Delivery(
        chain,
        spool=spool,
        clock=clock,
        started=started,
        mark_delayed=rerender.delayed,
        on_problem=warn,
    )


class AttemptLog:
    """Writes every attempt of the chain to the spool's history.

    Attributes:
        spool: where to write; set once the spool is open (the chain is made first).
    """

    def __init__(self) -> None:
        self.spool: SpoolLike | None = None

    def __call__(self, outcome: Outcome) -> None:
        """Record ``outcome`` (the chain's ``on_attempt``); never raises."""
        error = outcome.error
        attempt = Attempt(
            at=outcome.at,
            message_id=outcome.message.message_id,
            title=outcome.message.title,
            channel=outcome.channel,
            step=error.step if error is not None else "done",
            code=error.code if error is not None else None,
            reply=(error.reply or error.message) if error is not None else "",
            duration=outcome.duration,
            ok=error is None,
        )
        if self.spool is not None:
            try:
                self.spool.record_attempt(attempt)
            except Exception:
                log.debug("could not record the attempt", exc_info=True)
        if error is None:
            log.info(
                "%s took %s in %.0f ms",
                outcome.channel,
                attempt.message_id,
                attempt.duration * 1000,
            )


class Rerender:
    """Renders a digest again when delivery needs a different message for it.

    Args:
        context: what the engine renders with.
        clock: the engine's clock (the time of a merged digest with no other).
    """

    def __init__(self, context: RenderContext, clock: Clock) -> None:
        self._context = context
        self._clock = clock

    def smaller(self, message: OutgoingMessage) -> OutgoingMessage | None:
        """A smaller rendering after a 552, or None when it cannot get smaller."""
        digest = message.digest
        smallest = MIN_MAX_BYTES
        if digest is None or len(message.email.as_bytes()) <= smallest:
            return None
        return render(digest, replace(self._context, max_bytes=smallest))

    def delayed(self, message: OutgoingMessage, created: float) -> OutgoingMessage:
        """The message re-rendered with a notice that it is late, under the same Message-ID."""
        digest = message.digest
        if digest is None:
            return message
        when = format_time(created)
        notice = (
            f"Delayed: this digest was formed at {when} and could not be sent before the "
            "process that formed it stopped; it was kept on disk and is sent now."
        )
        return render(replace(digest, notices=(notice, *digest.notices)), self._context)

    def merged(self, messages: list[OutgoingMessage]) -> OutgoingMessage:
        """One digest standing for many that overflowed the spool, problems merged."""
        digests = [m.digest for m in messages if m.digest is not None]
        problems = [problem for digest in digests for problem in digest.problems]
        titles = ", ".join(m.title for m in messages[:10])
        more = f" and {len(messages) - 10} more" if len(messages) > 10 else ""
        notice = (
            f"The spool was full: {len(messages)} undelivered digests were merged into this "
            f"one ({titles}{more})."
        )
        merged = Digest(
            group="spool",
            incident_id=f"merged-{secrets.token_hex(6)}",
            sequence=1,
            # Timelines of different incidents share no start: none is shown.
            problems=tuple(replace(problem, timeline=()) for problem in problems[:200]),
            created=min((d.created for d in digests), default=self._clock()),
            reason="merged",
            dropped=sum(d.dropped for d in digests),
            notices=(notice,),
        )
        return render(merged, self._context)
