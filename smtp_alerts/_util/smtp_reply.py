"""SMTP reply text: the enhanced status code it carries, and the text fit to show on one line.

Everything that reads a server's reply goes through here, so that the
transport's classification, the delivery policy, the diagnosis and the
doctor agree on what a reply says:

- :func:`enhanced_status`: the RFC 3463 code (``5.7.8`` in Gmail's
  ``535-5.7.8 Username and Password not accepted``);
- :func:`one_line`: a multi-line reply as one line of text a person reads,
  without the code repeated on each line and without anything that could
  steer a terminal (a reply is the server's text, not ours).

No I/O: plain functions of a string.
"""

from __future__ import annotations

import re

__all__ = ["ENHANCED_STATUS", "enhanced_status", "one_line"]

_CODE = r"[245]\.[0-9]{1,3}\.[0-9]{1,3}"

ENHANCED_STATUS = re.compile(rf"(?<!\w)(?<!\w\.)({_CODE})(?!\w)(?!\.\w)", re.ASCII)
"""An RFC 3463 enhanced status code: ``class.subject.detail``.

The class is 2, 4 or 5; subject and detail are one to three digits. The code
stands alone: ``5.7.8.1`` (a version, an address) and ``v5.7.8`` hold none,
while a sentence may end right after one (``rejected: 5.7.1.``).
"""

# A reply line starts with the code again after the first (aiosmtplib strips
# only the three-digit code of each line).
_LEADING_STATUS = re.compile(rf"^\s*{_CODE}\s+", re.ASCII)
# What a terminal acts on rather than shows (ECMA-48): control sequences
# (colours, cursor moves, screen clearing), control strings (window titles,
# hyperlinks) up to their terminator, and the other escapes; each in its
# 7-bit (ESC ...) and 8-bit (C1) form.
_ESCAPE_SEQUENCE = re.compile(
    r"""
      (?:\x1b\[|\x9b) [0-?]* [ -/]* [@-~]
    | (?:\x1b[]PX^_]|[\x90\x98\x9d\x9e\x9f]) .*? (?:\x07|\x1b\\|\x9c|\Z)
    | \x1b [ -/]* [0-~]?
    """,
    re.VERBOSE | re.DOTALL,
)
# The control characters left once the sequences are gone, and the bidi
# controls, which reorder what a terminal shows (a reply could make a fix
# read backwards); a tab is only a space.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def enhanced_status(text: str) -> str:
    """The first RFC 3463 enhanced status code in ``text``.

    Args:
        text: a reply, or any text quoting one (an error message).

    Returns:
        The code, such as ``5.7.8``; ``""`` when ``text`` holds none.
    """
    match = ENHANCED_STATUS.search(text)
    return match.group(1) if match else ""


def one_line(reply: str) -> str:
    """A reply as one line of plain text, safe to print.

    The lines are joined with one space, each without the enhanced status
    code it starts with (Gmail repeats it on every line), and without
    terminal escape sequences and control characters.

    Args:
        reply: the reply text, possibly several lines.

    Returns:
        The text, stripped; ``""`` when nothing printable is left.
    """
    text = _ESCAPE_SEQUENCE.sub("", reply)
    lines = (_clean(line) for line in text.splitlines())
    return " ".join(line for line in lines if line)


def _clean(line: str) -> str:
    line = _CONTROL.sub("", line.replace("\t", " "))
    return _LEADING_STATUS.sub("", line).strip()
