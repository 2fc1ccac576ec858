"""Exceptions snapshot in the caller's thread read as the traceback module words them."""

from __future__ import annotations

import re
import sys
import traceback

from smtp_alerts._engine.snapshot import CHAIN_MAX, FRAMES_MAX, format_snapshot, snapshot

# Python 3.11+ underlines the failing expression; the snapshot keeps no positions.
_CARETS = re.compile(r"^\s*[\^~]+\s*$")


def stdlib_text(error: BaseException) -> str:
    lines = traceback.format_exception(type(error), error, error.__traceback__)
    text = "".join(lines).rstrip("\n")
    return "\n".join(line for line in text.split("\n") if not _CARETS.match(line))


def ours(error: BaseException) -> str:
    return format_snapshot(snapshot(type(error), error, error.__traceback__))


def nested(depth: int) -> None:
    if depth == 0:
        {"a": 1}["missing"]
    nested(depth - 1)


def caught(function: object, *args: object) -> BaseException:
    try:
        function(*args)  # type: ignore[operator]
    except BaseException as error:  # noqa: BLE001 - the point of the helper
        return error
    raise AssertionError("no exception")


def test_plain_exception_reads_as_the_stdlib_words_it() -> None:
    error = caught(nested, 3)
    assert ours(error) == stdlib_text(error)


def test_cause_and_context_chains_read_as_the_stdlib_words_them() -> None:
    def caused() -> None:
        try:
            nested(1)
        except KeyError as cause:
            raise ValueError("wrapped") from cause

    def during() -> None:
        try:
            caused()
        except ValueError:
            raise RuntimeError("while handling")  # noqa: B904 - a context chain, on purpose

    for error in (caught(caused), caught(during)):
        assert ours(error) == stdlib_text(error)


def test_odd_exceptions_degrade_one_line() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    error = caught(lambda: (_ for _ in ()).throw(Broken()))
    text = ours(error)
    assert text.endswith("Broken: <exception str() failed>")
    assert ours(caught(lambda: 1 / 0)).endswith("ZeroDivisionError: division by zero")


def test_notes_are_kept() -> None:
    error = ValueError("bad")
    if sys.version_info >= (3, 11):
        error.add_note("while pricing order 7")
        assert ours(error).endswith("ValueError: bad\nwhile pricing order 7")


def test_deep_recursion_and_long_chains_are_bounded() -> None:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, FRAMES_MAX + 500))
    try:
        error = caught(nested, FRAMES_MAX + 100)
    finally:
        sys.setrecursionlimit(limit)
    chain = snapshot(type(error), error, error.__traceback__)
    assert len(chain[0][1]) == FRAMES_MAX
    assert "outer frames not kept" in format_snapshot(chain)

    error = ValueError(0)
    for n in range(1, CHAIN_MAX * 3):
        wrapper = ValueError(n)
        wrapper.__cause__ = error
        error = wrapper
    assert len(snapshot(type(error), error, None)) == CHAIN_MAX

    loop = ValueError("a")
    other = ValueError("b")
    loop.__context__, other.__context__ = other, loop  # a cycle ends, never loops
    assert len(snapshot(ValueError, loop, None)) == 2
