"""Fitting an email under its size cap: render again with tighter caps until it fits.

The loosest caps come first. When the serialised message is larger than
:attr:`RenderContext.max_bytes <.context.RenderContext.max_bytes>`, tracebacks
give way first (they are the bulk, and the logs still have them), then samples,
then timelines and rows; the tightest caps show no log text but the notices and always fit
in :data:`~.context.MIN_MAX_BYTES`.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import TYPE_CHECKING

from ..._util.printable import escape_surrogates
from ...models import EMAIL_POLICY
from .html_part import html_part
from .text_part import text_part
from .view import MAX_ROWS, SAMPLE_MAX_CHARS, TRACEBACK_MAX_CHARS, Caps, View, make_view

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ...models import Digest
    from .context import RenderContext
    from .headers import Headers

__all__ = ["fit"]

# Notices under the tightest caps, chosen so that rendering fits in MIN_MAX_BYTES
# even with 4-byte characters, base64 and both parts.
_TIGHT_NOTICES = 5
_TIGHT_NOTICE_CHARS = 200

# Tried in order until the message fits in ``max_bytes`` (see the docstring above).
_CAP_LEVELS = (
    Caps(rows=MAX_ROWS, sample_chars=SAMPLE_MAX_CHARS, traceback_chars=TRACEBACK_MAX_CHARS),
    Caps(rows=MAX_ROWS, sample_chars=1_000, traceback_chars=2_048),
    Caps(rows=MAX_ROWS, sample_chars=500, traceback_chars=0),
    Caps(rows=20, sample_chars=200, traceback_chars=0, timelines=False),
    Caps(
        rows=0,
        sample_chars=0,
        traceback_chars=0,
        timelines=False,
        notices=_TIGHT_NOTICES,
        notice_chars=_TIGHT_NOTICE_CHARS,
    ),
)


def _email(headers: Iterable[tuple[str, str]], text: str, page: str) -> EmailMessage:
    # EMAIL_POLICY: CRLF line ends, as on the wire. The transfer encoding is left to
    # the email package (7bit, 8bit for lines up to 998 octets, else quoted-printable
    # or base64), which keeps every line within SMTP's limits whatever the logs contain.
    # Every piece of log text was made safe on its way here; escaping the whole
    # again is the last guard, so no odd character can fail the digest.
    msg = EmailMessage(policy=EMAIL_POLICY)
    for name, value in headers:
        msg[name] = escape_surrogates(value)
    msg.set_content(escape_surrogates(text), subtype="plain", charset="utf-8")
    msg.add_alternative(escape_surrogates(page), subtype="html", charset="utf-8")
    for part in msg.iter_parts():
        # add_alternative builds the part as an EmailMessage, which stamps a
        # MIME-Version of its own; it belongs on the top level only.
        del part["MIME-Version"]
    return msg


def fit(digest: Digest, context: RenderContext, headers: Headers) -> tuple[EmailMessage, View]:
    """Render with the loosest caps under which the message fits in ``max_bytes``.

    Returns:
        The email, and the view it shows (the short summary is made from it).
    """
    for level, caps in enumerate(_CAP_LEVELS[:-1]):
        view = make_view(digest, context, headers.summary, caps, reduced=level > 0)
        text, page = text_part(view), html_part(view, headers.subject)
        # Encoding only adds bytes, so a body already too large as plain UTF-8 is
        # passed over without building and serialising the message.
        if len(text.encode()) + len(page.encode()) > context.max_bytes:
            continue
        msg = _email(headers.items, text, page)
        if len(msg.as_bytes()) <= context.max_bytes:
            return msg, view
    # The tightest caps show no log text but the notices, and always fit in
    # MIN_MAX_BYTES: see that constant.
    view = make_view(digest, context, headers.summary, _CAP_LEVELS[-1], reduced=True)
    return _email(headers.items, text_part(view), html_part(view, headers.subject)), view
