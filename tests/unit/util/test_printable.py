"""Text from any object, never raising (smtp_alerts._util.printable)."""

from __future__ import annotations

import pytest

from smtp_alerts._util.printable import (
    clip_head,
    clip_tail,
    escape_surrogates,
    printable,
    printable_repr,
    split_clip_note,
)


class NoStr:
    def __str__(self) -> str:
        raise ValueError("no")


class Neither(NoStr):
    def __repr__(self) -> str:
        raise KeyError("no")


class OddStr(str):
    def __str__(self) -> str:
        raise ValueError("no")


class TestPrintable:
    def test_plain_text_unchanged(self) -> None:
        assert printable("plain") == "plain"
        assert printable(42) == "42"

    def test_failing_str_falls_back_to_repr(self) -> None:
        text = printable(NoStr())
        assert text.startswith("<unprintable NoStr: ValueError in __str__, repr <")

    def test_failing_str_and_repr(self) -> None:
        assert printable(Neither()) == "<unprintable Neither: ValueError in __str__>"
        assert printable_repr(Neither()) == "<unprintable Neither: KeyError in __repr__>"

    def test_str_subclass_is_not_trusted(self) -> None:
        assert printable(OddStr("kept")) == "kept"

    def test_surrogates_escaped_and_encodable(self) -> None:
        text = printable("report-\udcff.csv")
        assert text == "report-\\udcff.csv"
        text.encode("utf-8")
        assert escape_surrogates("caf\u00e9") == "caf\u00e9"

    def test_limit_clips_and_says_so(self) -> None:
        assert printable("x" * 10, 4) == "xxxx\n[clipped 6 characters]"


class TestClip:
    def test_head_and_tail(self) -> None:
        assert clip_head("abcdef", 3) == "abc\n[clipped 3 characters]"
        assert clip_tail("abcdef", 3) == "[clipped 3 characters]\ndef"
        assert clip_head("abc", 3) == "abc"
        assert clip_tail("abcdef", 0) == "[clipped 6 characters]\n"

    @pytest.mark.parametrize("tail", [False, True])
    def test_note_splits_back(self, tail: bool) -> None:
        clipped = (clip_tail if tail else clip_head)("a" * 5_000, 100)
        assert split_clip_note(clipped, tail=tail) == ("a" * 100, 4_900)
        assert split_clip_note("no note", tail=tail) == ("no note", 0)
