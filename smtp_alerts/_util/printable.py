"""Text from any object, never raising: the one way log input becomes a ``str`` we keep.

Log records and alerts carry objects we do not control: arguments whose
``__str__`` or ``__repr__`` raises, file names from :func:`os.listdir` with
lone surrogates (undecodable bytes), ``str`` subclasses with odd methods.
Anything kept from them must be a plain ``str`` that encodes as UTF-8, or it
fails much later (rendering, the spool, the wire) and takes a whole digest
down with it. Here such a value degrades to a placeholder that says why
(``<unprintable Bad: ValueError in __str__>``), and surrogates are escaped
(``report-\\udcff.csv``), so the text still says what was there.
"""

from __future__ import annotations

import re

__all__ = [
    "clip_head",
    "clip_tail",
    "escape_surrogates",
    "printable",
    "printable_repr",
    "split_clip_note",
]

_HEAD_NOTE = re.compile(r"\n\[clipped ([0-9,]+) characters\]\Z")
_TAIL_NOTE = re.compile(r"\A\[clipped ([0-9,]+) characters\]\n")

# A repr is only a stand-in for text that could not be had: a short one will do.
_REPR_MAX_CHARS = 1_000


def escape_surrogates(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udcff`` escapes; valid UTF-8 after."""
    if text.isascii():
        return text  # the common case, and a fast check
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _type_name(value: object) -> str:
    try:
        return type(value).__name__
    except Exception:  # noqa: BLE001 - a metaclass may break even this
        return "object"


def _unprintable(value: object, error: BaseException, method: str) -> str:
    return f"<unprintable {_type_name(value)}: {_type_name(error)} in {method}>"


def printable(value: object, limit: int | None = None) -> str:
    """``str(value)``, never raising, clipped to ``limit`` characters, valid UTF-8.

    A ``str`` (or a subclass) is taken as it is; anything else goes through
    its ``__str__``, then its ``__repr__`` when that raises, then a
    placeholder naming the failure.

    Args:
        value: anything.
        limit: keep at most this many characters (see :func:`clip_head`).
    """
    if type(value) is str:
        # The common case, first: a plain, short, ASCII string is kept as it is.
        text = value
        if (limit is None or len(text) <= limit) and text.isascii():
            return text
    elif isinstance(value, str):
        text = str.__str__(value)  # a subclass's own __str__ is not trusted
    else:
        try:
            text = str(value)
        except Exception as error:  # noqa: BLE001 - odd text degrades, never fails
            return printable_repr(value, _unprintable(value, error, "__str__"))
    if limit is not None:
        text = clip_head(text, limit)
    return escape_surrogates(text)


def printable_repr(value: object, fallback: str | None = None) -> str:
    """``repr(value)``, never raising: ``fallback`` or a placeholder when it does."""
    try:
        text = clip_head(repr(value), _REPR_MAX_CHARS)
    except Exception as error:  # noqa: BLE001 - odd text degrades, never fails
        return fallback if fallback is not None else _unprintable(value, error, "__repr__")
    if fallback is not None:
        text = f"{fallback[:-1]}, repr {text}>"
    return escape_surrogates(text)


def clip_head(text: str, limit: int) -> str:
    """The first ``limit`` characters of ``text``, saying how many were clipped."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[clipped {len(text) - limit:,} characters]"


def clip_tail(text: str, limit: int) -> str:
    """The last ``limit`` characters of ``text`` (a traceback's end), saying how many were cut."""
    if len(text) <= limit:
        return text
    kept = text[-limit:] if limit > 0 else ""  # text[-0:] would be all of it
    return f"[clipped {len(text) - len(kept):,} characters]\n{kept}"


def split_clip_note(text: str, *, tail: bool = False) -> tuple[str, int]:
    """``text`` without the note :func:`clip_head` (or :func:`clip_tail`) added, and its count.

    So that a later, shorter cut can say how much was cut in all.
    """
    match = (
        (_TAIL_NOTE.match(text[:64]) if tail else _HEAD_NOTE.search(text[-64:])) if text else None
    )
    if match is None:
        return text, 0
    clipped = int(match.group(1).replace(",", ""))
    if tail:
        return text[match.end() :], clipped
    return text[: len(text) - (match.end() - match.start())], clipped
