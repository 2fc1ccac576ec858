"""The classification table and the circuit breaker."""

from __future__ import annotations

import pytest

from smtp_alerts._delivery.policy import (
    AUTH_PAUSE,
    BACK_OFF_PAUSE,
    QUOTA_PARK,
    Action,
    CircuitBreaker,
    classify,
    enhanced_code,
)
from smtp_alerts.errors import (
    AuthenticationError,
    CertificateVerifyError,
    ConnectError,
    DeliveryError,
    DeliveryTimeoutError,
    MessageTooLargeError,
    PermanentReplyError,
    QuotaExceededError,
    RecipientsRefusedError,
    StartTLSNotOfferedError,
    TemporaryReplyError,
)
from smtp_alerts.testing import ManualClock


class TestClassify:
    @pytest.mark.parametrize(
        ("error", "action", "pause"),
        [
            (DeliveryTimeoutError("slow", step="data"), Action.RETRY, None),
            (ConnectError("refused", step="connect"), Action.RETRY, None),
            (TemporaryReplyError("busy", code=451, reply="4.3.0 try later"), Action.RETRY, None),
            (TemporaryReplyError("bye", code=421, reply="4.3.2 shutting down"), Action.RETRY, None),
            (
                TemporaryReplyError("bye", code=421, reply="4.7.0 Try again later"),
                Action.BACK_OFF,
                BACK_OFF_PAUSE,
            ),
            (
                AuthenticationError("storm", code=454, reply="4.7.0 Too many login attempts"),
                Action.BACK_OFF,
                BACK_OFF_PAUSE,
            ),
            (
                AuthenticationError(
                    "bad", code=535, reply="5.7.8 Username and Password not accepted"
                ),
                Action.AUTH,
                AUTH_PAUSE,
            ),
            (
                AuthenticationError("2sv", code=534, reply="5.7.9 Application-specific password"),
                Action.AUTH,
                AUTH_PAUSE,
            ),
            (
                AuthenticationError("tls", code=530, reply="5.7.0 Must issue a STARTTLS"),
                Action.AUTH,
                AUTH_PAUSE,
            ),
            (
                QuotaExceededError("quota", code=550, reply="5.4.5 Daily user sending limit"),
                Action.PARK,
                QUOTA_PARK,
            ),
            (MessageTooLargeError("big", code=552, reply="5.3.4 exceeded"), Action.SHRINK, None),
            (PermanentReplyError("no", code=554, reply="5.7.1 rejected"), Action.NEXT, None),
            (RecipientsRefusedError("nobody", code=550, reply="5.1.1"), Action.NEXT, None),
            (CertificateVerifyError("impostor", step="starttls"), Action.NEXT, None),
            (StartTLSNotOfferedError("clear", step="starttls"), Action.NEXT, None),
            (DeliveryError("odd"), Action.NEXT, None),
        ],
    )
    def test_table(self, error: DeliveryError, action: Action, pause: float | None) -> None:
        """Each kind of failure falls into its row of the table."""
        decision = classify(error)
        assert (decision.action, decision.pause) == (action, pause)

    def test_enhanced_code(self) -> None:
        """The enhanced status code is read from the reply text."""
        error = AuthenticationError("x", code=535, reply="535-5.7.8 Username and Password")
        assert enhanced_code(error) == "5.7.8"
        assert enhanced_code(DeliveryError("no code here")) == ""


class TestCircuitBreaker:
    def test_opens_after_threshold_and_probes_once(self) -> None:
        """Closed until three failures, then open; after the cool-down exactly one probe."""
        clock = ManualClock()
        breaker = CircuitBreaker(clock=clock, failure_threshold=3, cool_down=60)
        for _ in range(2):
            breaker.failure()
            assert breaker.allow()
        breaker.failure()
        assert breaker.state == "open"
        assert not breaker.allow()
        clock.advance(60)
        assert breaker.state == "half-open"
        assert breaker.allow()
        assert not breaker.allow()  # one probe at a time
        breaker.success()
        assert breaker.state == "closed"
        assert breaker.allow()

    def test_failed_probe_doubles_cool_down(self) -> None:
        """A failed probe reopens the breaker for twice as long, up to the cap."""
        clock = ManualClock()
        breaker = CircuitBreaker(clock=clock, failure_threshold=1, cool_down=10, max_cool_down=25)
        breaker.failure()
        for expected in (20, 25, 25):
            clock.advance(breaker.snapshot().open_until - clock())  # type: ignore[operator]
            assert breaker.allow()
            breaker.failure()
            assert breaker.snapshot().open_until == clock() + expected

    def test_pause_opens_at_once(self) -> None:
        """A failure with a pause (quota, back-off) opens the breaker for that long."""
        clock = ManualClock()
        breaker = CircuitBreaker(clock=clock)
        breaker.failure(pause=QUOTA_PARK)
        assert not breaker.allow()
        clock.advance(QUOTA_PARK - 1)
        assert not breaker.allow()
        clock.advance(1)
        assert breaker.allow()

    def test_success_resets_cool_down(self) -> None:
        """After a success the next opening starts from the base cool-down again."""
        clock = ManualClock()
        breaker = CircuitBreaker(clock=clock, failure_threshold=1, cool_down=10)
        breaker.failure()
        clock.advance(10)
        assert breaker.allow()
        breaker.failure()  # cool-down now 20
        clock.advance(20)
        assert breaker.allow()
        breaker.success()
        breaker.failure()
        assert breaker.snapshot().open_until == clock() + 10

    def test_rejects_nonsense(self) -> None:
        """Impossible settings fail at construction."""
        with pytest.raises(ValueError, match="failure_threshold"):
            CircuitBreaker(clock=ManualClock(), failure_threshold=0)
