"""The "other problems" row: where an incident counts problems past its cap.

Memory and email size must not grow with the number of distinct problems (a
dependency that dies can make every call site fail at once; ids and user names
in pre-formatted text make every message distinct). An incident keeps at most
:data:`PROBLEMS_PER_INCIDENT` problems one by one, and an engine at most
:data:`PROBLEMS_IN_ALL` across its open incidents; past that, each further
problem's occurrences are counted in one row per logger and level, with its
first and last time and a few example messages, and the digest says plainly
that these problems were not kept one by one. The engine's aggregator and the
store fold the same way, so the bound holds in what is pushed to a shared store.

Problems of a crash, a check, a job or the meta-alert about a broken login are
never folded: they are few, and each must be seen.
"""

from __future__ import annotations

from dataclasses import replace

from smtp_alerts.models import Alert, Fingerprint

__all__ = [
    "EXAMPLES",
    "EXAMPLE_MAX_CHARS",
    "NEVER_FOLDED",
    "OTHER_SOURCE",
    "OTHER_TAG",
    "PROBLEMS_IN_ALL",
    "PROBLEMS_PER_INCIDENT",
    "example_of",
    "is_other",
    "other_fingerprint",
    "other_row",
    "with_examples",
]

PROBLEMS_PER_INCIDENT = 1_000
"""Problems an incident keeps one by one; an email shows 50 rows, the rest are counted."""

PROBLEMS_IN_ALL = 5_000
"""Problems an engine keeps one by one across all its open incidents."""

EXAMPLES = 3
"""Example messages an other-problems row keeps."""

EXAMPLE_MAX_CHARS = 200
"""Longest example message kept."""

OTHER_SOURCE = "other"
"""The ``source`` of an other-problems row's sample."""

NEVER_FOLDED = frozenset({"crash", "check", "job", "meta"})
"""Sources whose problems are always kept one by one."""

OTHER_TAG = "other-problems"
"""The first part of an other-problems row's fingerprint."""


def other_fingerprint(alert: Alert) -> Fingerprint:
    """The fingerprint of the row that counts ``alert``'s problem past the cap.

    The same on every process and host: group, logger and level.
    """
    return (OTHER_TAG, alert.group, alert.logger, alert.level)


def is_other(fingerprint: Fingerprint) -> bool:
    """Whether ``fingerprint`` is an other-problems row's."""
    return len(fingerprint) == 4 and fingerprint[0] == OTHER_TAG


def other_row(alert: Alert, *, cap: int = PROBLEMS_PER_INCIDENT) -> Alert:
    """The sample of the other-problems row that ``alert``'s problem is folded into."""
    return Alert(
        fingerprint=other_fingerprint(alert),
        level=alert.level,
        logger=alert.logger,
        message=_title(alert.logger, None, cap),
        created=alert.created,
        source=OTHER_SOURCE,
        group=alert.group,
        context=(("example", example_of(alert)),),
    )


def with_examples(row: Alert, examples: list[str], distinct: int, cap: int) -> Alert:
    """The row's sample saying how many distinct problems it holds, with a few examples."""
    return replace(
        row,
        message=_title(row.logger, distinct, cap),
        context=tuple(("example", example) for example in examples[:EXAMPLES]),
    )


def _title(logger: str, distinct: int | None, cap: int) -> str:
    what = "More problems" if distinct is None else f"{distinct:,} more problems"
    return (
        f"{what} from {logger}, counted together: this incident keeps {cap:,} problems one by one"
    )


def example_of(alert: Alert) -> str:
    """An example line for an other-problems row: the message's first line, clipped."""
    first = alert.message.partition("\n")[0]
    if len(first) > EXAMPLE_MAX_CHARS:
        first = first[: EXAMPLE_MAX_CHARS - 1] + "\u2026"
    return first
