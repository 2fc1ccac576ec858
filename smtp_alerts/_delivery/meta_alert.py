"""Meta-alerts: the engine telling a person that its own delivery is broken, or works again.

A :class:`MetaAlert` is built from an auth-watcher event (see
:mod:`smtp_alerts._delivery.auth_watch`) and says, in Gmail's terms, what is wrong and
what to do (see :mod:`smtp_alerts._delivery.diagnosis`): the account, the server, how
many failures in what window, until when the login rests, and where alerts go
meanwhile. It never holds a secret: the account name is the login, not the
password, and the server's reply is scrubbed by the transport.

It becomes a :class:`~smtp_alerts.models.Digest` made of notices only (the
subject is the first one), so it renders, spools and threads like any digest:
the recovery notice is a follow-up in the same thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .._util.humanize import format_duration, format_time
from .._util.smtp_reply import one_line
from ..models import Digest, fingerprint_id
from .auth_watch import AuthEvent, AuthRecovered, AuthTripped
from .diagnosis import Diagnosis, diagnose

__all__ = ["MetaAlert", "meta_alert", "meta_digest"]

#: The notification group of meta-alerts: apart from the user's alerts.
META_GROUP = "smtp-alerts"


@dataclass(frozen=True, slots=True)
class MetaAlert:
    """What the engine says about its own delivery; given to ``on_meta_alert`` hooks.

    Attributes:
        kind: ``auth-failure`` (a login stopped working) or ``recovered``.
        level: a :mod:`logging` level: CRITICAL for a failure, INFO for a recovery.
        credential: the login, ``user@host:port``.
        account: the account (the username), or None.
        server: the channel whose login failed or recovered, ``host:port``.
        subject: one line saying what happened.
        text: the whole explanation, several lines.
        diagnosis: for a failure, what is wrong and what to do.
        failures: failures within the window (a failure), or refused probes (a recovery).
        window: the window the failures were counted in, in seconds.
        paused_until: for a failure, when the login is tried again (epoch seconds).
        at: when it happened (epoch seconds).
    """

    kind: str
    level: int
    credential: str
    account: str | None
    server: str
    subject: str
    text: str
    diagnosis: Diagnosis | None
    failures: int
    window: float
    paused_until: float | None
    at: float

    @property
    def lines(self) -> tuple[str, ...]:
        """The text, line by line."""
        return tuple(self.text.splitlines())


def meta_alert(event: AuthEvent, *, delivery_now: str) -> MetaAlert:
    """The meta-alert for an auth-watcher event.

    Args:
        event: a credential tripped or recovered.
        delivery_now: where alerts go meanwhile (failure) or what happens to
            the ones kept (recovery), in one sentence.
    """
    account = event.credential.rpartition("@")[0] or None
    if account == "anonymous":
        account = None
    who = account or "(no login)"
    if isinstance(event, AuthRecovered):
        down = format_duration(max(0.0, event.at - event.tripped_at))
        subject = f"smtp-alerts: {event.channel} accepts the login of {who} again"
        lines = [
            subject,
            (
                f"The login had been refused since {format_time(event.tripped_at)} ({down}); "
                f"{event.failed_probes} probe(s) were refused in between."
            ),
            delivery_now,
        ]
        return MetaAlert(
            kind="recovered",
            level=logging.INFO,
            credential=event.credential,
            account=account,
            server=event.channel,
            subject=subject,
            text="\n".join(lines),
            diagnosis=None,
            failures=event.failed_probes,
            window=0.0,
            paused_until=None,
            at=event.at,
        )
    return _tripped(event, account=account, who=who, delivery_now=delivery_now)


def _tripped(event: AuthTripped, *, account: str | None, who: str, delivery_now: str) -> MetaAlert:
    diagnosis = diagnose(
        event.error, account=account, server=event.channel, paused_until=event.paused_until
    )
    subject = f"smtp-alerts cannot log in to {event.channel} as {who} ({diagnosis.code})"
    reply = one_line(event.error.reply) or event.error.message
    lines = [
        subject,
        f"What is wrong: {diagnosis.problem}",
        f"What to do: {diagnosis.fix}",
        (
            f"{event.failures} authentication failures within "
            f"{format_duration(event.window)} (from {format_time(event.first_failure)} to "
            f"{format_time(event.at)}); the server's last reply: {reply}"
        ),
        (
            "Until it works again this login is not used, so that Google does not lock the "
            f"account: it is tried once at {format_time(event.paused_until)}, then less and "
            "less often."
        ),
        delivery_now,
    ]
    return MetaAlert(
        kind="auth-failure",
        level=logging.CRITICAL,
        credential=event.credential,
        account=account,
        server=event.channel,
        subject=subject,
        text="\n".join(lines),
        diagnosis=diagnosis,
        failures=event.failures,
        window=event.window,
        paused_until=event.paused_until,
        at=event.at,
    )


def meta_digest(meta: MetaAlert, *, since: float, thread_subject: str | None = None) -> Digest:
    """The digest that carries ``meta``: notices only, threaded per outage.

    Args:
        meta: the meta-alert.
        since: when the outage began (the failure's time, also for its recovery):
            the recovery notice threads with the failure it ends.
        thread_subject: for the recovery, the failure's subject.
    """
    incident = f"auth-{fingerprint_id((meta.credential, round(since, 3)))}"
    return Digest(
        group=META_GROUP,
        incident_id=incident,
        sequence=2 if meta.kind == "recovered" else 1,
        problems=(),
        created=meta.at,
        reason="critical" if meta.kind != "recovered" else "recovered",
        notices=meta.lines,
        thread_subject=thread_subject,
    )
