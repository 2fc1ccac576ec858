"""A row's title as its message template, with the parts that vary marked.

One row stands for every occurrence of a problem, and those often differ in a
few parts (``payment gateway timed out for order 17``, ``... order 2499``).
Titling the row with one occurrence's text misleads: it reads as 2,000 timeouts
of order 17. The fingerprint keeps the template the occurrences share
(:func:`~smtp_alerts._engine.capture.record_fingerprint`): ``record.msg`` when
the record had arguments (``%s``, ``%d``, ``%(name)s`` placeholders), or for
text formatted before the call, the text with its numbers and hex ids masked
to ``#`` (:func:`~smtp_alerts._engine.capture.mask_variable_parts`). This
module turns it back into a title whose variable parts are marked, and checks
it against the sample, so that a title is never made up: when the template
and the sample do not agree, there is no template title.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..capture import TEMPLATE_MAX_CHARS, mask_variable_parts, shape_matches

if TYPE_CHECKING:
    from ...models import Alert

__all__ = ["VARIABLE_MARK", "Segments", "marked_text", "template_segments"]

VARIABLE_MARK = "\u2039\u2026\u203a"
"""How a variable part reads in plain text: an ellipsis in single angle quotes."""

Segments = tuple[tuple[str, bool], ...]
"""A title as ``(text, variable)`` pieces: a variable piece is a placeholder's name
(empty when it has none), a fixed piece is text as it appears in every occurrence."""

# A %-style placeholder as logging's "%" formatting reads it: an optional
# (name), flags, width, precision, length modifier and conversion; "%%" is a
# literal percent sign.
_PLACEHOLDER = re.compile(
    r"%(?:\((?P<name>[^)]*)\))?[#0+ -]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?"
    r"(?P<conversion>[diouxXeEfFgGcrsa%])"
)
# Characters that stand in for a literal "#" while the sample is masked again:
# private-use characters, which are neither word characters (the masking's \b
# sees them as it sees "#") nor hex digits.
_STAND_INS = ("\ue000", "\ue001", "\ue002")
# Where log records keep their template, and direct alerts (engine.alert) theirs:
# see record_fingerprint and the intake's direct fingerprints.
_LOG_TEMPLATE_INDEX = 4
_DIRECT_TEMPLATE_INDEX = 3


def template_segments(alert: Alert) -> Segments | None:
    """The title of ``alert``'s row as its template, when the template has variable parts.

    Returns:
        The first line of the template, split into fixed and variable pieces;
        None when the alert has no template (a key, a crash, a check, a job,
        an other-problems row), when the template has no variable part, or
        when the template does not agree with the sample message.
    """
    template = _template_of(alert)
    if template is None:
        return None
    message = alert.message
    if message[:1].isspace():
        return None  # the title is the stripped first line: keep the sample's title
    segments = _masked_segments(message, template)
    if segments is None:
        segments = _placeholder_segments(message, template)
    if segments is None or not any(variable for _, variable in segments):
        return None
    segments = _first_line(segments)
    if not any(text.strip() for text, variable in segments if not variable):
        return None  # "%s" alone: the template says nothing, the sample says more
    return segments


def marked_text(segments: Segments) -> str:
    """The segments as plain text: a variable part as :data:`VARIABLE_MARK`, or its name."""
    return "".join(
        (f"\u2039{text}\u203a" if text else VARIABLE_MARK) if variable else text
        for text, variable in segments
    )


def _template_of(alert: Alert) -> str | None:
    fingerprint = alert.fingerprint
    if alert.source == "log":
        index = _LOG_TEMPLATE_INDEX
    elif alert.source == "alert" and fingerprint[:1] == ("alert",):
        index = _DIRECT_TEMPLATE_INDEX
    else:
        return None
    if len(fingerprint) <= index:
        return None
    template = fingerprint[index]
    return template if isinstance(template, str) and template else None


def _masked_segments(message: str, template: str) -> Segments | None:
    """The sample with its masked parts marked, when masking the sample gives the template.

    A literal ``#`` in the sample is put aside before masking, so only the
    masks read as variable parts.
    """
    if mask_variable_parts(message) != template:
        return None
    stand_in = next((char for char in _STAND_INS if char not in message), None)
    if stand_in is None:
        return None
    masked = mask_variable_parts(message.replace("#", stand_in))
    pieces = masked.split("#")
    segments: list[tuple[str, bool]] = []
    for index, piece in enumerate(pieces):
        if index:
            segments.append(("", True))
        if piece:
            segments.append((piece.replace(stand_in, "#"), False))
    if len(message) > TEMPLATE_MAX_CHARS:
        # The template covers the sample's start only; the rest is shown as is.
        segments.append((message[TEMPLATE_MAX_CHARS:], False))
    return tuple(segments)


def _placeholder_segments(message: str, template: str) -> Segments | None:
    """The template with its %-placeholders marked, when the sample has its fixed parts."""
    segments: list[tuple[str, bool]] = []
    fixed: list[str] = []  # the literal text between placeholders, "%%" read as "%"
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        fixed.append(template[position : match.start()])
        position = match.end()
        if match.group("conversion") == "%":
            fixed.append("%")
            continue
        pieces = "".join(fixed)
        if pieces:
            segments.append((pieces, False))
        segments.append((match.group("name") or "", True))
        fixed = []
    fixed.append(template[position:])
    if "".join(fixed):
        segments.append(("".join(fixed), False))
    shape = _shape(segments)
    if len(shape) < 2 or not shape_matches(message, shape):
        return None
    return tuple(segments)


def _shape(segments: list[tuple[str, bool]]) -> tuple[str, ...]:
    """The fixed pieces around the variable parts, as :func:`shape_matches` takes them."""
    pieces = [""]
    for text, variable in segments:
        if variable:
            pieces.append("")
        else:
            pieces[-1] += text
    return tuple(pieces)


def _first_line(segments: Segments) -> Segments:
    """The segments up to the first line break (a title is one line)."""
    kept: list[tuple[str, bool]] = []
    for text, variable in segments:
        if not variable and "\n" in text:
            head = text.split("\n", 1)[0]
            if head:
                kept.append((head, False))
            break
        kept.append((text, variable))
    return tuple(kept)
