"""Delivery of rendered digests through one transport, with retry and backoff.

A message a transport refuses is kept in memory and retried with exponential
backoff and jitter; a flush retries everything at once. Authentication
failures back off at the slowest pace from the first failure: Gmail answers a
login storm with 454 and locks the account.

This is the seam where the fallback chain, the durable spool and the auth
watcher plug in: the engine only calls :meth:`Delivery.deliver`,
:meth:`Delivery.retry` and reads :attr:`Delivery.next_retry_at`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from ._clock import Clock
from .errors import AuthenticationError, DeliveryError, DeliveryTimeoutError
from .models import OutgoingMessage
from .transports import Transport

__all__ = ["Delivery"]

log = logging.getLogger("smtp_alerts.delivery")

#: First pause before retrying a message the channel did not take.
RETRY_BASE = 30.0
#: Longest pause between two attempts at one message.
RETRY_CAP = 900.0
#: Messages kept for retry; past this the oldest is given up, loudly.
MAX_PENDING = 200


@dataclass(slots=True)
class _Pending:
    message: OutgoingMessage
    attempts: int
    next_attempt: float
    last_error: DeliveryError = field(repr=False)


class Delivery:
    """Sends messages through a transport and keeps those it could not send.

    Args:
        transport: the channel.
        clock: the engine's clock.
        deadline: the overall deadline of one attempt, in seconds; a safety net
            on top of the transport's own (a transport that ignores it still
            cannot hang the engine).
    """

    def __init__(self, transport: Transport, *, clock: Clock, deadline: float) -> None:
        self.transport = transport
        self._clock = clock
        self._deadline = deadline
        self._pending: list[_Pending] = []
        self.sent = 0
        self.failures: Counter[str] = Counter()
        self.given_up = 0
        #: The message being sent right now, if any.
        self.in_flight: OutgoingMessage | None = None

    @property
    def pending(self) -> int:
        """Messages waiting for another attempt."""
        return len(self._pending)

    @property
    def next_retry_at(self) -> float | None:
        """When the next retry is due, or None when nothing waits."""
        return min((p.next_attempt for p in self._pending), default=None)

    async def deliver(self, messages: list[OutgoingMessage]) -> bool:
        """Try each message once now; keep the ones not taken for a retry.

        Returns:
            Whether every message was taken.
        """
        ok = True
        try:
            for message in messages:
                error = await self._attempt(message)
                if error is not None:
                    ok = False
                    self._keep(_Pending(message, 1, 0.0, error))
        finally:
            await self._release()
        return ok

    async def retry(self, *, force: bool = False) -> bool:
        """Retry the messages that are due (all of them with ``force``).

        Returns:
            Whether nothing is left waiting.
        """
        now = self._clock()
        due = [p for p in self._pending if force or p.next_attempt <= now]
        if not due:
            return not self._pending
        try:
            for pending in due:
                error = await self._attempt(pending.message)
                if error is None:
                    self._pending.remove(pending)
                else:
                    pending.attempts += 1
                    pending.last_error = error
                    pending.next_attempt = self._clock() + _backoff(pending.attempts, error)
        finally:
            await self._release()
        return not self._pending

    def undelivered(self) -> list[tuple[OutgoingMessage, DeliveryError]]:
        """The messages still waiting, with the last error of each."""
        return [(p.message, p.last_error) for p in self._pending]

    async def _attempt(self, message: OutgoingMessage) -> DeliveryError | None:
        started = time.perf_counter()
        self.in_flight = message
        try:
            await asyncio.wait_for(self.transport.send(message), self._deadline)
        except DeliveryError as exc:
            error: DeliveryError = exc
        except (asyncio.TimeoutError, TimeoutError):
            error = DeliveryTimeoutError(
                f"no answer within the {self._deadline:g} s deadline",
                channel=self.transport.name,
                step="deadline",
            )
        except Exception as exc:  # noqa: BLE001 - a transport bug must not stop the engine
            error = DeliveryError(
                f"unexpected {type(exc).__name__}: {exc}", channel=self.transport.name
            )
        else:
            self.in_flight = None
            self.sent += 1
            log.info(
                "delivered %s via %s in %.0f ms",
                message.message_id,
                self.transport.name,
                (time.perf_counter() - started) * 1000,
            )
            return None
        self.in_flight = None
        self.failures[type(error).__name__] += 1
        log.warning("could not deliver %s: %s", message.message_id, error)
        return error

    def _keep(self, pending: _Pending) -> None:
        pending.next_attempt = self._clock() + _backoff(pending.attempts, pending.last_error)
        self._pending.append(pending)
        if len(self._pending) > MAX_PENDING:
            lost = self._pending.pop(0)
            self.given_up += 1
            log.error(
                "gave up on %s after %d attempts (%d messages waiting): %s",
                lost.message.message_id,
                lost.attempts,
                MAX_PENDING,
                lost.last_error,
            )

    async def _release(self) -> None:
        try:
            await asyncio.wait_for(self.transport.aclose(), min(self._deadline, 5.0))
        except Exception as exc:  # noqa: BLE001 - closing a dead connection may fail; nothing to do
            log.debug("closing %s failed: %r", self.transport.name, exc)


def _backoff(attempts: int, error: DeliveryError) -> float:
    if isinstance(error, AuthenticationError):
        # No fast retries of a refused login: Gmail locks accounts that storm.
        return RETRY_CAP
    pause = min(RETRY_CAP, RETRY_BASE * 2.0 ** (attempts - 1))
    return pause * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography
