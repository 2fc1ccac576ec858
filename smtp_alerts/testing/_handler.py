"""The aiosmtpd handler of the Gmail-like server: Gmail's replies to the envelope, and the records.

aiosmtpd calls each ``handle_<COMMAND>`` hook of :class:`Recorder` with the
session, the envelope and the command's arguments; the reply it returns is
sent as is. The envelope faults (``mail_reply``, ``data_reply``,
``max_message_size``, ``hang_after_data``) act here; an accepted message is
recorded as its ``250`` goes out (see :meth:`GmailSession.push
<smtp_alerts.testing._session.GmailSession.push>`).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import time
from typing import TYPE_CHECKING, Protocol

from aiosmtpd.smtp import Envelope, Session, TLSSetupException

from . import _replies as replies
from ._state import ReceivedMessage

if TYPE_CHECKING:
    from ._state import SharedState

__all__ = ["Recorder"]

_log = logging.getLogger("smtp_alerts.testing.server")


class Speaker(Protocol):
    """What the handler uses of the session that calls it (a ``GmailSession``)."""

    loop: asyncio.AbstractEventLoop
    auth_identity: tuple[str, str | None] | None

    def say(self, template: str, **fields: object) -> str:
        """A reply of :mod:`._replies`, in this session's words."""

    def accept_on_reply(self, message: ReceivedMessage) -> None:
        """Record ``message`` as the next reply goes out."""


class Recorder:
    """Gmail's replies for the envelope steps, and the recording of what was accepted.

    Args:
        shared: the server's account, faults and records.
    """

    def __init__(self, shared: SharedState) -> None:
        self._shared = shared

    async def handle_HELO(  # noqa: N802 - aiosmtpd's hook name
        self, _smtp: Speaker, session: Session, _envelope: Envelope, hostname: str
    ) -> str:
        session.host_name = hostname
        return replies.HELO

    async def handle_NOOP(  # noqa: N802 - aiosmtpd's hook name
        self, smtp: Speaker, _session: Session, _envelope: Envelope, _arg: str | None
    ) -> str:
        return smtp.say(replies.NOOP)

    async def handle_RSET(  # noqa: N802 - aiosmtpd's hook name
        self, smtp: Speaker, _session: Session, _envelope: Envelope
    ) -> str:
        return smtp.say(replies.RSET)

    async def handle_QUIT(  # noqa: N802 - aiosmtpd's hook name
        self, smtp: Speaker, _session: Session, _envelope: Envelope
    ) -> str:
        return smtp.say(replies.QUIT)

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook name
        self,
        smtp: Speaker,
        _session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        refusal = self._shared.faults.mail_reply
        if refusal is not None and self._shared.fire("mail_reply"):
            return smtp.say(replies.MAIL_REPLIES[refusal])
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return smtp.say(replies.MAIL_OK)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self,
        smtp: Speaker,
        _session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return smtp.say(replies.RCPT_OK)

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, smtp: Speaker, _session: Session, envelope: Envelope
    ) -> str:
        shared = self._shared
        faults = shared.faults
        raw = envelope.original_content or b""
        if faults.hang_after_data and shared.fire("hang_after_data"):
            # Never answer the final dot; connection_lost() cancels this wait.
            await smtp.loop.create_future()
        refusal = faults.data_reply
        if refusal is not None and shared.fire("data_reply"):
            return smtp.say(replies.DATA_REPLIES[refusal])
        limit = faults.max_message_size
        if limit is not None and len(raw) > limit and shared.fire("max_message_size"):
            return smtp.say(replies.DATA_REPLIES["552"])
        mechanism, username = smtp.auth_identity or (None, None)
        smtp.accept_on_reply(
            ReceivedMessage(
                sender=envelope.mail_from or "",
                recipients=tuple(envelope.rcpt_tos),
                # Parsed with \n line ends, so get_content() reads like a Python string.
                message=email.message_from_bytes(
                    raw.replace(b"\r\n", b"\n"), policy=email.policy.default
                ),
                raw=raw,
                auth_mechanism=mechanism,
                auth_username=username,
            )
        )
        return smtp.say(replies.DATA_OK, time=int(time.time()))

    async def handle_exception(self, error: Exception) -> str:
        if not isinstance(error, TLSSetupException):  # a client refusing our certificate
            _log.error("GmailServer failed on a command", exc_info=error)
        return replies.TEMPORARILY_REJECTED
