"""The fallback chain: channels tried in order, each behind a circuit breaker.

The chain is itself a :class:`~smtp_alerts.transports.Transport`. For each
message it walks its channels in order (Gmail on 587, Gmail on 465, a backup
SMTP server, apprise URLs), skips a channel whose breaker is open, retries a
transient failure (a "slow down" 421/454 included) with exponential backoff
and jitter inside the attempt's deadline, and otherwise acts on the classification table of
:mod:`smtp_alerts._delivery.policy`. When no channel takes the message it raises
:class:`NoChannelTookError`, listing every channel's reason; the caller keeps
the message in the spool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from .._util.clock import SYSTEM_CLOCK, Clock
from ..errors import AuthenticationError, DeliveryError, DeliveryTimeoutError
from ..models import OutgoingMessage
from ..transports._base import Transport
from .policy import Action, BreakerState, CircuitBreaker, classify

__all__ = [
    "Channel",
    "ChannelStats",
    "CredentialGate",
    "FallbackChain",
    "NoChannelTookError",
    "Outcome",
]

log = logging.getLogger("smtp_alerts.transports.chain")

#: Tries of one channel for one message (the first and two retries), all within the deadline.
TRIES_PER_CHANNEL = 3
#: The first pause before retrying a transient failure on the same channel.
RETRY_INITIAL = 0.5
#: The longest pause between two tries on the same channel.
RETRY_MAX = 5.0
#: A channel with less time than this left before exit is not started.
_LEAST_TURN = 0.05
#: Kept back from the time left before exit: to record what was not delivered.
_EXIT_MARGIN = 0.25


class NoChannelTookError(DeliveryError):
    """Every channel failed or was resting; ``failures`` says why, channel by channel."""

    transient = True  # the spool keeps it and it is tried again later

    def __init__(self, failures: Sequence[DeliveryError]) -> None:
        reasons = "; ".join(str(failure) for failure in failures) or "no channel configured"
        super().__init__(f"no channel took the message: {reasons}", channel="chain")
        self.failures = list(failures)


class CredentialGate(Protocol):
    """Decides whether a login may be tried, from how it fared (the engine's auth watcher)."""

    def allow(self, credential: str) -> bool:
        """Whether ``credential`` may be tried now (a caller allowed must report back)."""

    def release(self, credential: str) -> None:
        """An allowed attempt did not happen after all."""

    def paused_until(self, credential: str) -> float | None:
        """While ``credential`` is not used, when it may be tried again."""

    def settled(self, credential: str, channel: str, error: DeliveryError | None) -> None:
        """The outcome of one try through a channel that uses ``credential``."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One try of one channel, reported to the chain's ``on_attempt`` callback.

    Attributes:
        message: the message tried.
        channel: the channel's name.
        error: why it failed, or None when the channel took it.
        duration: seconds the try took.
        at: when it ended, epoch seconds.
    """

    message: OutgoingMessage
    channel: str
    error: DeliveryError | None
    duration: float
    at: float


@dataclass(slots=True)
class ChannelStats:
    """What one channel has done.

    Attributes:
        sent: messages it took.
        failures: failed tries by error type.
        breaker: its circuit breaker's state.
    """

    sent: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    breaker: BreakerState | None = None


@dataclass(slots=True)
class Channel:
    """A transport in the chain, with its breaker and its counters."""

    transport: Transport
    breaker: CircuitBreaker
    stats: ChannelStats = field(default_factory=ChannelStats)

    @property
    def name(self) -> str:
        """The transport's name."""
        return self.transport.name


class FallbackChain(Transport):
    """Tries each channel in order until one takes the message.

    Args:
        transports: the channels, in the order they are tried.
        clock: the engine's clock (for the breakers).
        deadline: how long one channel may take for one message, retries included.
        shrink: makes a smaller rendering of a message after a 552, or None when
            it cannot get smaller; without it a 552 moves on to the next channel.
        on_attempt: called after every try, for the delivery log.
        retry_initial: the first pause before a retry on the same channel
            (``RETRY_INITIAL`` when omitted).
        gate: decides which logins may be tried (the auth watcher); with it,
            a refused login no longer pauses its channels' breakers: the gate
            rests the credential instead, across every channel that uses it.
    """

    name = "chain"

    def __init__(
        self,
        transports: Sequence[Transport],
        *,
        clock: Clock = SYSTEM_CLOCK,
        deadline: float = 30.0,
        shrink: Callable[[OutgoingMessage], OutgoingMessage | None] | None = None,
        on_attempt: Callable[[Outcome], None] | None = None,
        retry_initial: float | None = None,
        gate: CredentialGate | None = None,
    ) -> None:
        if not transports:
            raise ValueError("a fallback chain needs at least one channel")
        self.channels = [Channel(t, CircuitBreaker(clock=clock)) for t in transports]
        self._clock = clock
        self._deadline = deadline
        self._shrink = shrink
        self._on_attempt = on_attempt
        self._retry_initial = retry_initial
        self._gate = gate
        #: When set and returning a time (``time.monotonic()``), every send ends
        #: by then, and each channel still to be tried gets an equal share of
        #: what is left: at exit, a blackholed primary must not use up
        #: ``SHUTDOWN_TIMEOUT`` before the fallbacks get their turn.
        self.finish_by: Callable[[], float | None] = lambda: None

    async def send(self, message: OutgoingMessage, /) -> None:
        """Deliver through the first channel that takes the message.

        Raises:
            NoChannelTookError: no channel took it; each channel's reason is listed.
        """
        failures: list[DeliveryError] = []
        refused: dict[str, str] = {}  # credential -> the channel that just had it refused
        for position, channel in enumerate(self.channels):
            until = self._share(position)
            skipped = _no_time_left(channel, until) or self._skip_reason(channel, refused)
            if skipped is not None:
                failures.append(skipped)
                continue
            error = await self._through(channel, message, until)
            if error is None:
                return
            failures.append(error)
            _note_refusal(channel, error, refused)
        raise NoChannelTookError(failures)

    async def broadcast(
        self, message: OutgoingMessage, *, avoid: str | None = None
    ) -> dict[str, DeliveryError | None]:
        """Send ``message`` through every channel (not the first that takes it).

        For what everyone watching any channel must see: the meta-alert that a
        login stopped working, and the notice that it works again.

        Args:
            message: the message.
            avoid: a credential: channels that use it are not tried.

        Returns:
            Each channel tried, with its failure or None when it took the message.
        """
        results: dict[str, DeliveryError | None] = {}
        refused: dict[str, str] = {}
        for channel in self.channels:
            if avoid is not None and channel.transport.credential == avoid:
                continue
            if self._skip_reason(channel, refused) is not None:
                continue
            error = await self._through(channel, message, None)
            results[channel.name] = error
            _note_refusal(channel, error, refused)
        return results

    def credentials(self) -> dict[str, list[str]]:
        """Each login the channels use, with the channels that use it."""
        found: dict[str, list[str]] = {}
        for channel in self.channels:
            if channel.transport.credential is not None:
                found.setdefault(channel.transport.credential, []).append(channel.name)
        return found

    async def probe_login(self, credential: str) -> DeliveryError | None:
        """Probe ``credential`` with a bare login through the first channel that uses it.

        The gate is told the outcome, as for a send.

        Returns:
            The failure, or None when the login was accepted (or nothing uses it).
        """
        for channel in self.channels:
            transport = channel.transport
            if transport.credential != credential:
                continue
            if self._gate is not None and not self._gate.allow(credential):
                return DeliveryError(
                    "the login is resting", channel=channel.name, step="auth-watch"
                )
            error: DeliveryError | None = None
            try:
                await transport.check_login()
            except DeliveryError as exc:
                error = exc
            except Exception as exc:  # noqa: BLE001 - a transport bug is a failed probe, not a crash
                error = DeliveryError(
                    f"unexpected {type(exc).__name__}: {exc}", channel=channel.name
                )
            if self._gate is not None:
                self._gate.settled(credential, channel.name, error)
            return error
        return None

    def _skip_reason(self, channel: Channel, refused: dict[str, str]) -> DeliveryError | None:
        """Why ``channel`` is not tried for this message now, or None to try it."""
        credential = channel.transport.credential
        if credential is not None and credential in refused:
            # Same login, same refusal: trying it again would only add to the
            # failures Gmail counts against the account.
            return DeliveryError(
                f"not tried: its login was just refused on {refused[credential]}",
                channel=channel.name,
                step="auth",
            )
        gate = self._gate
        if credential is not None and gate is not None and not gate.allow(credential):
            until = gate.paused_until(credential)
            when = f" until {_hhmm(until)}" if until is not None else ""
            return DeliveryError(
                f"not tried: its login {credential} was refused repeatedly; resting{when}",
                channel=channel.name,
                step="auth-watch",
            )
        if not channel.breaker.allow():
            if credential is not None and gate is not None:
                gate.release(credential)  # the gate's probe (if it was one) did not happen
            return DeliveryError(
                f"resting after failures (circuit {channel.breaker.state})",
                channel=channel.name,
                step="breaker",
            )
        return None

    async def aclose(self) -> None:
        """Close every channel's connection."""
        for channel in self.channels:
            try:
                await channel.transport.aclose()
            except Exception as exc:  # noqa: BLE001, PERF203 - one channel's failure must not stop the others
                log.debug("closing %s failed: %r", channel.name, exc)

    def stats(self) -> dict[str, ChannelStats]:
        """Each channel's counters and breaker state, by name."""
        for channel in self.channels:
            channel.stats.breaker = channel.breaker.snapshot()
        return {channel.name: channel.stats for channel in self.channels}

    def _share(self, position: int) -> float | None:
        """When the channel at ``position`` must be done, or None when only its deadline counts."""
        finish_by = self.finish_by()
        if finish_by is None:
            return None
        now = time.monotonic()
        left = finish_by - now - _EXIT_MARGIN
        return now + left / (len(self.channels) - position)

    async def _through(
        self, channel: Channel, message: OutgoingMessage, until: float | None
    ) -> DeliveryError | None:
        """Send through one channel, retrying what the table says to retry; the last error.

        Args:
            channel: the channel.
            message: the message.
            until: when this channel's turn ends (``time.monotonic()``), or None.
        """
        shrunk = False
        while True:  # at most twice: once more after a smaller rendering
            try:
                await self._with_retries(channel, message, until)
            except DeliveryError as error:
                decision = classify(error)
                if decision.action is Action.SHRINK and not shrunk and self._shrink is not None:
                    smaller = self._shrink(message)
                    if smaller is not None:
                        log.info("%s: message too big; retrying a smaller rendering", channel.name)
                        message, shrunk = smaller, True
                        continue
                if decision.action is Action.BACK_OFF:
                    # Its tries were not counted one by one (see _try): the
                    # login's watcher sees one refusal per message, as before.
                    self._settle(channel, error, counted=True)
                if decision.action is Action.AUTH and self._gate is not None:
                    pass  # the gate rests the credential (on every channel using it)
                else:
                    channel.breaker.failure(pause=decision.pause)
                log.warning(
                    "%s did not take %s (%s): %s",
                    channel.name,
                    message.message_id,
                    decision.action.value,
                    error,
                )
                return error
            channel.breaker.success()
            channel.stats.sent += 1
            return None

    async def _with_retries(
        self, channel: Channel, message: OutgoingMessage, until: float | None
    ) -> None:
        initial = RETRY_INITIAL if self._retry_initial is None else self._retry_initial
        deadline = (
            self._deadline if until is None else min(self._deadline, until - time.monotonic())
        )
        retrying = AsyncRetrying(
            stop=stop_after_attempt(TRIES_PER_CHANNEL) | stop_after_delay(deadline),
            # Exponential backoff plus jitter, spelt in the API tenacity 8 and 9 share.
            wait=wait_exponential(multiplier=initial, max=RETRY_MAX) + wait_random(0, initial),
            retry=retry_if_exception(_retry_here),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._try(channel, message, until)

    async def _try(self, channel: Channel, message: OutgoingMessage, until: float | None) -> None:
        started = time.perf_counter()
        error: DeliveryError | None = None
        try:
            await _send_until(channel, message, until)
        except DeliveryError as exc:
            error = exc
            channel.stats.failures[type(exc).__name__] += 1
            raise
        except Exception as exc:
            # A transport bug is still a failed try, explained like the others.
            error = DeliveryError(f"unexpected {type(exc).__name__}: {exc}", channel=channel.name)
            channel.stats.failures[type(error).__name__] += 1
            raise error from exc
        finally:
            self._settle(channel, error, counted=error is None or not _backs_off(error))
            if self._on_attempt is not None:
                self._on_attempt(
                    Outcome(
                        message=message,
                        channel=channel.name,
                        error=error,
                        duration=time.perf_counter() - started,
                        at=self._clock(),
                    )
                )

    def _settle(self, channel: Channel, error: DeliveryError | None, *, counted: bool) -> None:
        """Tell the gate how a try through ``channel`` went; ``counted=False`` only frees it."""
        credential = channel.transport.credential
        if credential is None or self._gate is None:
            return
        if counted:
            self._gate.settled(credential, channel.name, error)
        else:
            self._gate.release(credential)


async def _send_until(channel: Channel, message: OutgoingMessage, until: float | None) -> None:
    """``channel``'s send, cut short at ``until`` (its share of the time left before exit)."""
    if until is None:
        await channel.transport.send(message)
        return
    left = until - time.monotonic()
    error = DeliveryTimeoutError(
        f"not done within its {max(left, 0.0):.1f}s share of the time left before exit "
        "(SHUTDOWN_TIMEOUT)",
        channel=channel.name,
        step="deadline",
    )
    if left <= 0:
        raise error
    task = asyncio.ensure_future(channel.transport.send(message))
    try:
        done, _ = await asyncio.wait({task}, timeout=left)
    except asyncio.CancelledError:
        task.cancel()  # asyncio.wait leaves it running; the engine is stopping
        raise
    if not done:
        # Not awaited: a cancellation of our own (the engine's exit deadline)
        # must not be swallowed while the send unwinds; its outcome is dropped.
        task.add_done_callback(lambda late: late.cancelled() or late.exception())
        task.cancel()
        raise error
    task.result()


def _no_time_left(channel: Channel, until: float | None) -> DeliveryError | None:
    """The reason ``channel`` is not tried when its share of the time before exit is gone."""
    if until is None or until - time.monotonic() > _LEAST_TURN:
        return None
    return DeliveryTimeoutError(
        "not tried: no time left before exit (SHUTDOWN_TIMEOUT)",
        channel=channel.name,
        step="deadline",
    )


def _note_refusal(channel: Channel, error: DeliveryError | None, refused: dict[str, str]) -> None:
    """Remember, for the rest of this message, that ``channel``'s login was refused."""
    credential = channel.transport.credential
    if credential is not None and isinstance(error, AuthenticationError):
        refused[credential] = channel.name


def _hhmm(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).strftime("%H:%M UTC")


def _backs_off(error: DeliveryError) -> bool:
    return classify(error).action is Action.BACK_OFF


def _retry_here(exc: BaseException) -> bool:
    # A "slow down" (421/454 4.7.0) is retried after a short backoff too:
    # Gmail means "too many connections now", not "come back in an hour".
    return isinstance(exc, DeliveryError) and classify(exc).action in (
        Action.RETRY,
        Action.BACK_OFF,
    )
