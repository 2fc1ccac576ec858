"""An exception as it was: snapshot in the caller's thread, formatted on the engine's.

A traceback must be taken while the exception is fresh (its text can change,
its frames move on), but formatting it reads every source file it names, and
the standard library's :class:`traceback.TracebackException` also ``stat``-s
each of them (``linecache.checkcache``) and, from Python 3.11, walks each
frame's bytecode positions for its carets: tens of microseconds per exception
in the caller's thread. :func:`snapshot` keeps only what cannot wait, as plain
values: each exception of the chain (``__cause__`` / ``__context__``) with its
text, notes and frames' file, line and function names. :func:`format_snapshot`
turns that into the text :func:`traceback.format_exception` would give
(without carets), reading the source lines then, on the engine's thread.

Nothing here raises: an exception whose ``__str__`` fails is shown as such.
"""

from __future__ import annotations

import contextlib
import traceback
from types import TracebackType

from .._util.printable import printable

__all__ = [
    "CHAIN_MAX",
    "FRAMES_MAX",
    "Snapshot",
    "exception_type_name",
    "format_snapshot",
    "snapshot",
]

CHAIN_MAX = 10
"""Most exceptions of a chain kept (the logged one and its causes and contexts)."""

FRAMES_MAX = 300
"""Most frames kept per exception: the innermost, where it was raised."""

_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"

Frame = tuple[str, "int | None", str]
"""A frame as the snapshot keeps it: file name, line number, function name."""

Link = tuple[str, tuple[Frame, ...], int, str]
"""One exception of a chain: how it leads to the one before it (a separator,
empty for the logged one), its innermost frames, how many frames were left
out, and its own text (``Type: message`` and notes)."""

Snapshot = tuple[Link, ...]
"""An exception chain, the logged exception first."""


def snapshot(
    exc_type: type[BaseException], exc: BaseException | None, tb: TracebackType | None
) -> Snapshot:
    """The chain of an exception, as plain values, without reading any file.

    Args:
        exc_type: the exception's type (from ``exc_info``).
        exc: the exception, or None for an odd ``exc_info``.
        tb: its traceback.
    """
    links: list[Link] = []
    separator = ""
    seen: set[int] = set()
    while True:
        frames, left_out = _frames(tb)
        links.append((separator, frames, left_out, _exception_only(exc_type, exc)))
        if exc is None or len(links) >= CHAIN_MAX:
            break
        seen.add(id(exc))
        cause, context = exc.__cause__, exc.__context__
        if cause is not None and id(cause) not in seen:
            separator, exc = _CAUSE, cause
        elif context is not None and not exc.__suppress_context__ and id(context) not in seen:
            separator, exc = _CONTEXT, context
        else:
            break
        exc_type, tb = type(exc), exc.__traceback__
    return tuple(links)


def format_snapshot(chain: Snapshot) -> str:
    """The snapshot as :func:`traceback.format_exception` words it; source lines read now."""
    parts: list[str] = []
    for separator, frames, left_out, text in reversed(chain):
        if frames:
            parts.append("Traceback (most recent call last):\n")
            if left_out:
                parts.append(f"  [{left_out:,} outer frames not kept]\n")
            summary = traceback.StackSummary.from_list(
                # A line of None (3.12+) is a frame with no line; 0 reads as none.
                [(name, line or 0, function, None) for name, line, function in frames]
            )
            parts.extend(summary.format())
        parts.append(text + "\n")
        parts.append(separator)
    return "".join(parts).rstrip("\n")


def _frames(tb: TracebackType | None) -> tuple[tuple[Frame, ...], int]:
    frames: list[Frame] = []
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append((code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    if len(frames) > FRAMES_MAX:
        return tuple(frames[-FRAMES_MAX:]), len(frames) - FRAMES_MAX
    return tuple(frames), 0


def exception_type_name(exc_type: type[BaseException]) -> str:
    """``KeyError`` for builtins, ``package.module.Error`` for the rest."""
    module = exc_type.__module__
    if module in ("builtins", "__main__"):
        return exc_type.__qualname__
    return f"{module}.{exc_type.__qualname__}"


def _exception_only(exc_type: type[BaseException], exc: BaseException | None) -> str:
    """``Type: message`` and the exception's notes, as the last lines of a traceback say."""
    try:
        name = printable(exception_type_name(exc_type))
    except Exception:  # noqa: BLE001 - a metaclass may break even this
        name = "Exception"
    if exc is None:
        return name
    try:
        text = printable(str(exc))
    except Exception:  # noqa: BLE001 - worded as the traceback module words it
        text = "<exception str() failed>"
    lines = [f"{name}: {text}" if text else name]
    with contextlib.suppress(Exception):  # notes are a nicety
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, (list, tuple)):
            lines += [printable(note) for note in notes[:20]]
    return "\n".join(lines)
