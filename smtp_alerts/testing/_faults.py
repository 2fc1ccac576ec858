"""Faults: how the Gmail-like server misbehaves, switched on and off while it runs.

A test breaks a running server by assigning an attribute
(``server.faults.greet = False``) and heals it by assigning it back; each
connection reads the faults in force when it reaches the step they affect.
The scripted replies answer with Gmail's own words (see :mod:`._replies`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._replies import (
    AUTH_REPLIES,
    DATA_REPLIES,
    GREETING_REPLIES,
    MAIL_REPLIES,
    AuthReply,
    DataReply,
    GreetingReply,
    MailReply,
)

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Faults", "watch_refusals"]

# What Faults accepts for each reply fault; checked on assignment, in the test's thread.
_REPLY_CHOICES: dict[str, dict[str, str]] = {
    "greeting_reply": GREETING_REPLIES,
    "auth_reply": AUTH_REPLIES,
    "mail_reply": MAIL_REPLIES,
    "data_reply": DATA_REPLIES,
}


@dataclass
class Faults:
    """How the server misbehaves; change the attributes at any time, even mid-test.

    Each connection reads the current values when it reaches the step they
    affect, so a test can break a running server and heal it again. Each time
    a fault changes what the server does, it *fires*: :attr:`GmailServer.fired`
    counts the firings by attribute name.

    Attributes:
        offer_starttls: whether STARTTLS is advertised and accepted. ``False``
            models a server (or an attacker stripping STARTTLS) that offers AUTH
            in clear text: a correct client must refuse to send its credentials.
        refuse_connections: nothing accepts on the port, so clients get
            ECONNREFUSED; ``False`` again makes the same port accept. The port
            stays reserved meanwhile (see :meth:`GmailServer.start`). Takes
            effect before the assignment returns; the kernel does the refusing,
            so it is neither counted in :attr:`GmailServer.fired` nor limited by
            :attr:`fail_times`.
        greet: whether the server sends its 220 greeting. ``False`` accepts the
            TCP connection (and the TLS handshake in ``tls`` mode) and then says
            nothing: a "silent" server.
        greeting_delay: seconds to wait before the greeting (on top of
            :attr:`reply_delay`): a slow server.
        greeting_reply: ``"421"`` greets with Gmail's ``421 4.7.0 Try again
            later, closing connection.`` and hangs up.
        reply_delay: seconds to wait before every reply, the greeting included.
            Not counted in :attr:`GmailServer.fired` nor limited by
            :attr:`fail_times`.
        auth_reply: Gmail's refusal to answer every AUTH with, whatever the
            credentials: ``"454"`` (4.7.0, too many login attempts), ``"530"``
            (5.7.0, authentication required), ``"534-5.7.9"`` (an app password is
            required), ``"534-5.7.14"`` (sign in with a browser first) or
            ``"535"`` (5.7.8, bad credentials).
        mail_reply: ``"550-5.4.5"`` answers MAIL FROM with Gmail's "Daily user
            sending limit exceeded".
        data_reply: ``"552"`` answers the end of every message with Gmail's
            552 5.3.4 "message exceeded Google's message size limits".
        max_message_size: when set, only messages of more than this many bytes
            (as received, after dot-unstuffing) get that 552; smaller ones pass.
        disconnect_in_data: after DATA, read the first line of the message and
            cut the connection without a reply.
        hang_after_data: read the whole message and never answer the final dot.
        fail_times: ``None``: the faults fire until changed. A number: they fire
            that many more times in all (each firing spends one), then the
            server heals itself: at ``0`` no fault fires, though the attributes
            keep their values. Set it again to re-arm.
    """

    offer_starttls: bool = True
    refuse_connections: bool = False
    greet: bool = True
    greeting_delay: float = 0.0
    greeting_reply: GreetingReply | None = None
    reply_delay: float = 0.0
    auth_reply: AuthReply | None = None
    mail_reply: MailReply | None = None
    data_reply: DataReply | None = None
    max_message_size: int | None = None
    disconnect_in_data: bool = False
    hang_after_data: bool = False
    fail_times: int | None = None

    def __setattr__(self, name: str, value: object) -> None:
        choices = _REPLY_CHOICES.get(name)
        if choices is not None and value is not None and value not in choices:
            raise ValueError(f"{name} must be one of {sorted(choices)} or None, not {value!r}")
        super().__setattr__(name, value)
        if name == "refuse_connections":
            # The server opens or closes its listening socket right now, so a
            # connection the test makes next already sees the change.
            watcher: Callable[[], None] | None = self.__dict__.get("_watcher")
            if watcher is not None:
                watcher()


def watch_refusals(faults: Faults, watcher: Callable[[], None] | None) -> None:
    """Have ``watcher`` called whenever ``faults.refuse_connections`` is assigned."""
    # Not a field: it stays out of repr, ==, asdict() and replace().
    faults.__dict__["_watcher"] = watcher
