"""Gmail's words: every reply the Gmail-like server sends, as smtp.gmail.com words it.

Each reply is a template; ``{id}`` is the session id Gmail ends its replies
with (see :func:`session_id`), filled in by the session that sends it. The
scripted failures a test can ask for (:class:`~smtp_alerts.testing.Faults`)
are keyed by the code a test names, such as ``"534-5.7.9"``.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Literal

__all__ = [
    "ACCEPTED",
    "ALREADY_AUTHENTICATED",
    "AUTH_MECHANISMS",
    "AUTH_REPLIES",
    "AUTH_REQUIRED",
    "BAD_CREDENTIALS",
    "CANNOT_DECODE",
    "DATA_OK",
    "DATA_REPLIES",
    "EHLO_EMPTY",
    "EHLO_FIRST",
    "GMAIL_WORDING",
    "GREETING_REPLIES",
    "HELO",
    "HOSTNAME",
    "IDENT",
    "MAIL_OK",
    "MAIL_REPLIES",
    "MUST_STARTTLS",
    "NOOP",
    "QUIT",
    "RCPT_OK",
    "RSET",
    "SIZE_LIMIT",
    "TEMPORARILY_REJECTED",
    "UNRECOGNIZED_AUTH",
    "UNRECOGNIZED_COMMAND",
    "XOAUTH2_CHALLENGE",
    "AuthReply",
    "DataReply",
    "GreetingReply",
    "MailReply",
    "session_id",
]

GreetingReply = Literal["421"]
AuthReply = Literal["454", "530", "534-5.7.9", "534-5.7.14", "535"]
MailReply = Literal["550-5.4.5"]
DataReply = Literal["552"]

HOSTNAME = "smtp.gmail.com"
SIZE_LIMIT = 35_882_577  # what smtp.gmail.com advertises in EHLO
AUTH_MECHANISMS = "LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH"

# -- the conversation --------------------------------------------------------------

IDENT = "ESMTP {id} - gsmtp"  # the greeting, after "220 smtp.gmail.com"

EHLO_EMPTY = "501 5.5.4 Empty HELO/EHLO argument not allowed, please fix your client. {id} - gsmtp"
HELO = f"250 {HOSTNAME} at your service"
NOOP = "250 2.0.0 OK  {id} - gsmtp"
RSET = "250 2.1.5 Flushed {id} - gsmtp"
QUIT = "221 2.0.0 closing connection {id} - gsmtp"
MAIL_OK = "250 2.1.0 OK {id} - gsmtp"
RCPT_OK = "250 2.1.5 OK {id} - gsmtp"
DATA_OK = "250 2.0.0 OK  {time} {id} - gsmtp"
TEMPORARILY_REJECTED = "451 4.3.0 Mail server temporarily rejected message."
MUST_STARTTLS = "530 5.7.0 Must issue a STARTTLS command first. {id} - gsmtp"
UNRECOGNIZED_COMMAND = "502 5.5.1 Unrecognized command. {id} - gsmtp"
EHLO_FIRST = "503 5.5.1 EHLO/HELO first. {id} - gsmtp"
ALREADY_AUTHENTICATED = "503 5.5.1 Already authenticated. {id} - gsmtp"
UNRECOGNIZED_AUTH = "504 5.7.4 Unrecognized authentication type. {id} - gsmtp"
CANNOT_DECODE = "501 5.5.2 Cannot Decode response {id} - gsmtp"
ACCEPTED = "235 2.7.0 Accepted"
# Gmail's first answer to a refused XOAUTH2 token: a 334 with this JSON, in base64.
XOAUTH2_CHALLENGE = base64.b64encode(
    json.dumps(
        {"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"},
        separators=(",", ":"),
    ).encode()
).decode()

# -- the failures, word for word ---------------------------------------------------

AUTH_REQUIRED = (
    "530-5.7.0 Authentication Required. For more information, go to\r\n"
    "530 5.7.0  https://support.google.com/mail/?p=WantAuthError {id} - gsmtp"
)
BAD_CREDENTIALS = (
    "535-5.7.8 Username and Password not accepted. For more information, go to\r\n"
    "535 5.7.8  https://support.google.com/mail/?p=BadCredentials {id} - gsmtp"
)
GREETING_REPLIES: dict[str, str] = {
    "421": "421 4.7.0 Try again later, closing connection. {id} - gsmtp",
}
AUTH_REPLIES: dict[str, str] = {
    "454": "454 4.7.0 Too many login attempts, please try again later. {id} - gsmtp",
    "530": AUTH_REQUIRED,
    "534-5.7.9": (
        "534-5.7.9 Application-specific password required. Learn more at\r\n"
        "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor {id} - gsmtp"
    ),
    "534-5.7.14": (
        "534-5.7.14 <https://accounts.google.com/signin/continue?sarp=1&scc=1&plt=AKgnsbt"
        "NotARealContinuationToken> Please log in via your web browser and\r\n"
        "534-5.7.14 then try again.\r\n"
        "534 5.7.14  Learn more at https://support.google.com/mail/answer/78754 {id} - gsmtp"
    ),
    "535": BAD_CREDENTIALS,
}
MAIL_REPLIES: dict[str, str] = {
    "550-5.4.5": (
        "550-5.4.5 Daily user sending limit exceeded. For more information on Gmail\r\n"
        "550-5.4.5 sending limits go to\r\n"
        "550 5.4.5  https://support.google.com/a/answer/166852 {id} - gsmtp"
    ),
}
DATA_REPLIES: dict[str, str] = {
    "552": (
        "552-5.3.4 Your message exceeded Google's message size limits. Please visit\r\n"
        "552-5.3.4  https://support.google.com/mail/?p=MaxSizeError to view our size\r\n"
        "552 5.3.4 guidelines. {id} - gsmtp"
    ),
}
# aiosmtpd hard-codes a few reply texts; these are Gmail's words for the same replies.
GMAIL_WORDING = {
    "220 Ready to start TLS": "220 2.0.0 Ready to start TLS",
    "354 End data with <CR><LF>.<CR><LF>": "354  Go ahead {id} - gsmtp",
    "503 Error: need MAIL command": "503 5.5.1 RCPT first. {id} - gsmtp",
    "503 Error: need RCPT command": "503 5.5.1 RCPT first. {id} - gsmtp",
    "503 Error: nested MAIL command": "503 5.5.1 Nested MAIL command. {id} - gsmtp",
}


def session_id() -> str:
    """An id shaped like the one Gmail puts at the end of each reply."""
    return f"{secrets.token_hex(6)}-{secrets.token_hex(5)}sm{secrets.randbelow(10**7):07d}"
