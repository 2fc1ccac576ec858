"""Notification windows as pure functions: when an incident's next digest is due, and why.

The rules of Alertmanager that both the per-process
:class:`~smtp_alerts._engine.aggregator.Aggregator` and the shared store apply,
written once: a new incident waits ``group_wait``; a notified one sends again
``group_interval`` after its last digest when something new joined, or
``repeat_interval`` after it when only repeats are pending; a new critical
problem is due at once; a notified incident quiet for ``repeat_interval`` closes.
"""

from __future__ import annotations

from dataclasses import dataclass

from smtp_alerts.models import Problem

from .others import OTHER_SOURCE

__all__ = [
    "REASON_CRITICAL",
    "REASON_FLUSH",
    "REASON_NEW",
    "REASON_REPEAT",
    "REASON_UPDATE",
    "Windows",
    "reason",
    "severity_order",
]

# The values of Digest.reason: why a digest was sent when it was.
REASON_NEW = "new"
REASON_UPDATE = "update"
REASON_REPEAT = "repeat"
REASON_CRITICAL = "critical"
REASON_FLUSH = "flush"


def severity_order(problem: Problem) -> tuple[bool, int, bool, int, float]:
    """The sort key of a digest's rows: most severe, then new, then noisiest first.

    Other-problems rows come after every problem kept one by one: they are
    what did not fit, never the headline.
    """
    alert = problem.alert
    return (
        alert.source == OTHER_SOURCE,
        -alert.level,
        not problem.is_new,
        -problem.count,
        problem.first_seen,
    )


@dataclass(frozen=True, slots=True)
class Windows:
    """The three durations, and the decisions made from an incident's few numbers.

    Attributes:
        group_wait: seconds a new incident waits to collect its burst.
        group_interval: least seconds between two digests when something new joined.
        repeat_interval: seconds before an unchanged incident is notified again,
            and how long a notified one must stay quiet to close.
    """

    group_wait: float
    group_interval: float
    repeat_interval: float

    def due_at(
        self,
        *,
        opened_at: float,
        last_notified: float | None,
        news: bool,
        critical_at: float | None,
    ) -> float:
        """When an incident with something pending is due (epoch seconds, maybe past).

        Args:
            opened_at: its first occurrence.
            last_notified: its last digest, or None before the first.
            news: a problem never shown in it (or dropped records) is pending.
            critical_at: the earliest pending new critical problem or crash, or None.
        """
        if last_notified is None:
            at = opened_at + self.group_wait
        elif news:
            at = last_notified + self.group_interval
        else:
            at = last_notified + self.repeat_interval
        return at if critical_at is None else min(at, critical_at)

    def closable(self, *, last_notified: float | None, pending: bool, at: float) -> bool:
        """Whether an incident is over at ``at``: notified, nothing pending, quiet long enough."""
        return (
            last_notified is not None and not pending and at >= last_notified + self.repeat_interval
        )


def reason(*, critical: bool, sequence: int, news: bool) -> str:
    """Why a digest goes out: a new critical names it even when it opens the incident."""
    if critical:
        return REASON_CRITICAL
    if sequence == 1:
        return REASON_NEW
    return REASON_UPDATE if news else REASON_REPEAT
