"""Log text made safe to show: single header-safe lines, clean bodies, clipping.

Everything that reaches an email from a log record passes through here. A
one-line value (a subject, a title, a logger name) loses its control and
line-separator characters, so it can never start a header of its own; a body
keeps its newlines and tabs but no other control character; long text is cut
and says how much was cut. Only a bounded prefix of a value is ever cleaned: a
10 MB message must not cost 10 MB of work. Lone surrogates (undecodable file
names) are escaped here too, so no text can fail the email's UTF-8 encoding.
"""

from __future__ import annotations

import re

from ..._util.printable import escape_surrogates, split_clip_note

__all__ = [
    "ELLIPSIS",
    "clip_head",
    "clip_tail",
    "ellipsize",
    "one_line",
    "one_line_pieces",
    "plural",
]

ELLIPSIS = "\u2026"

# Anything a header folder or a mail client might take for a line break or use to
# disguise text: C0 and C1 controls (CR, LF, NUL, NEL...), DEL, the Unicode line and
# paragraph separators, and the bidirectional overrides used to spoof subjects.
_HEADER_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]+"
)
_SPACE_RUN = re.compile(" {2,}")
_NEWLINE = re.compile("\r\n?")
# C0 controls except TAB and LF (CR is turned into LF first), DEL and C1 controls.
_BODY_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]+")


def ellipsize(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters, ending with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + ELLIPSIS


def one_line(value: str, limit: int) -> str:
    """Make ``value`` a single safe line of at most ``limit`` characters.

    Used for everything that may reach a header or stand for a row's title.
    """
    # Only a bounded prefix is cleaned: a 10 MB message must not cost 10 MB of work.
    head = value[: 4 * limit + 16]
    text = _SPACE_RUN.sub(" ", _HEADER_UNSAFE.sub(" ", escape_surrogates(head))).strip()
    if len(head) < len(value) and len(text) <= limit:
        text += ELLIPSIS
    return ellipsize(text, limit)


def one_line_pieces(
    pieces: tuple[tuple[str, bool], ...], limit: int
) -> tuple[tuple[str, bool], ...]:
    """Make a title given in ``(text, flag)`` pieces one safe line of at most ``limit`` characters.

    As :func:`one_line` does for a whole title, but each piece keeps its flag
    (a variable part of a template stays one) and its spaces at the ends.
    """
    out: list[tuple[str, bool]] = []
    room = limit
    for text, flag in pieces:
        clean = _SPACE_RUN.sub(" ", _HEADER_UNSAFE.sub(" ", escape_surrogates(text[: 4 * limit])))
        if not out:
            clean = clean.lstrip()
        if len(clean) >= room:
            out.append((clean[: max(0, room - 1)].rstrip() + ELLIPSIS, flag))
            break
        out.append((clean, flag))
        room -= len(clean) + (1 if flag and not clean else 0)
    return tuple(out)


def _clean_body(value: str) -> str:
    """Keep text, newlines and tabs; drop NUL and every other control character."""
    return _BODY_UNSAFE.sub("", _NEWLINE.sub("\n", escape_surrogates(value)))


def clip_head(value: str, limit: int) -> str:
    """Keep the first ``limit`` characters of ``value``, saying how much was cut.

    What capture already clipped is counted in, so the reader sees the whole cut.
    """
    value, clipped = split_clip_note(value)
    if len(value) <= limit and not clipped:
        return _clean_body(value).rstrip()
    cut = max(0, len(value) - limit) + clipped
    return f"{_clean_body(value[:limit]).rstrip()}\n[{ELLIPSIS} {cut:,} more characters cut]"


def clip_tail(value: str, limit: int) -> str:
    """Keep the last ``limit`` characters of ``value``, saying how much was cut.

    What capture already clipped is counted in, so the reader sees the whole cut.
    """
    value, clipped = split_clip_note(value, tail=True)
    if len(value) <= limit and not clipped:
        return _clean_body(value).rstrip()
    tail = value[-limit:]
    # Start on a whole line when one begins soon: half a frame line only confuses.
    newline = tail.find("\n", 0, 200) if len(value) > limit else -1
    if newline != -1:
        tail = tail[newline + 1 :]
    cut = len(value) - len(tail) + clipped
    return f"[{ELLIPSIS} {cut:,} earlier characters cut]\n{_clean_body(tail).rstrip()}"


def plural(count: int, singular: str, plural_word: str | None = None) -> str:
    """``1 event``, ``2,051 events``."""
    word = singular if count == 1 else (plural_word or singular + "s")
    return f"{count:,} {word}"
