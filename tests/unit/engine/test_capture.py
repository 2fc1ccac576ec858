"""Fingerprints and capture of log records (docs/architecture.md, "Fingerprint")."""

from __future__ import annotations

import logging
import sys

from smtp_alerts._engine.capture import capture_record, record_fingerprint, record_key


def make_record(
    msg: object,
    *args: object,
    name: str = "shop.api",
    level: int = logging.ERROR,
    line: int = 10,
    exc_info: bool = False,
) -> logging.LogRecord:
    return logging.LogRecord(
        name,
        level,
        "/app/shop/api.py",
        line,
        msg,
        args,
        sys.exc_info() if exc_info else None,
        func="handler",
    )


def raise_key_error() -> None:
    {"a": 1}["missing"]


def raise_value_error() -> None:
    raise ValueError("bad")


class TestFingerprint:
    def test_same_problem_same_key_across_arguments(self) -> None:
        """Occurrences that differ only in their arguments share key and fingerprint."""
        first, second = make_record("order %s failed", 1), make_record("order %s failed", 2)
        assert record_key(first) == record_key(second)
        assert record_fingerprint(first) == record_fingerprint(second)

    def test_call_site_level_and_logger_distinguish(self) -> None:
        """Logger name, level and line each make a different problem."""
        base = record_fingerprint(make_record("x"))[0]
        assert record_fingerprint(make_record("x", name="shop.db"))[0] != base
        assert record_fingerprint(make_record("x", level=logging.CRITICAL))[0] != base
        assert record_fingerprint(make_record("x", line=11))[0] != base

    def test_exception_type_and_innermost_frame_distinguish(self) -> None:
        """Two exception types at one log call site are two problems."""
        try:
            raise_key_error()
        except KeyError:
            key_error = make_record("failed", exc_info=True)
        try:
            raise_value_error()
        except ValueError:
            value_error = make_record("failed", exc_info=True)
        assert record_key(key_error) != record_key(value_error)
        fingerprint = record_fingerprint(key_error)[0]
        assert "KeyError" in fingerprint
        assert any(isinstance(part, tuple) and part[0] == __file__ for part in fingerprint)

    def test_fingerprint_is_stable_text(self) -> None:
        """The canonical fingerprint holds only strings, numbers and tuples (stable across runs)."""
        try:
            raise_key_error()
        except KeyError:
            record = make_record("failed %s", "x", exc_info=True)
        fingerprint, _ = record_fingerprint(record)
        assert repr(fingerprint).count("<class") == 0

    def test_preformatted_messages_infer_a_template(self) -> None:
        """Numbers and hex ids in a message without arguments are masked."""
        one = record_fingerprint(make_record("user 17 failed at 0xdeadbeef"))
        two = record_fingerprint(make_record("user 42 failed at 0xfeedface"))
        assert one[0] == two[0]
        assert one[1] is True

    def test_non_string_message(self) -> None:
        """A dict passed as the message has a key and a fingerprint, and never raises."""
        record = make_record({"event": "failed"})
        hash(record_key(record))
        assert record_fingerprint(record)[0][4] == "<dict>"


class TestCapture:
    def test_capture_formats_message_and_traceback(self) -> None:
        """Capture keeps the formatted message, the location and the traceback."""
        try:
            raise_key_error()
        except KeyError:
            record = make_record("could not price %s", "A-17", exc_info=True)
        alert = capture_record(record, record_fingerprint(record)[0])
        assert alert.message == "could not price A-17"
        assert alert.exc_type == "KeyError"
        assert alert.location == "/app/shop/api.py:10 in handler"
        assert alert.traceback is not None
        assert "raise_key_error" in alert.traceback
        assert alert.title == "KeyError in shop.api"

    def test_broken_exception_str_does_not_raise(self) -> None:
        """An exception whose __str__ raises is still captured."""

        class Broken(Exception):
            def __str__(self) -> str:
                raise RuntimeError("no")

        try:
            raise Broken
        except Broken:
            record = make_record("failed", exc_info=True)
        alert = capture_record(record, record_fingerprint(record)[0])
        assert alert.traceback is not None
        assert "Broken" in alert.traceback
