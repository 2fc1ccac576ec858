"""Composing one alert email: a digest in, an :class:`OutgoingMessage` out.

The one entry point of the renderer: the headers, the two parts fitted under
the size cap, and the short summary for other channels, put together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...models import OutgoingMessage
from .fit import fit
from .headers import make_headers
from .summary import short_summary

if TYPE_CHECKING:
    from ...models import Digest
    from .context import RenderContext

__all__ = ["render"]


def render(digest: Digest, context: RenderContext) -> OutgoingMessage:
    """Render a digest as an email with plain-text and HTML parts.

    Args:
        digest: what to report.
        context: who sends it, to whom, from which host, and the size cap.

    Returns:
        The message, with a deterministic Message-ID, ready for any channel.

    Raises:
        ValueError: ``digest.created`` is not a valid timestamp.
    """
    headers = make_headers(digest, context)
    msg, view = fit(digest, context, headers)
    return OutgoingMessage(
        message_id=headers.message_id,
        email=msg,
        sender=context.sender,
        recipients=context.recipients,
        title=headers.title,
        summary=short_summary(view, digest),
        digest=digest,
    )
