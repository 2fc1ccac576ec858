"""Fingerprints and capture of log records (docs/architecture.md, "Fingerprint")."""

from __future__ import annotations

import enum
import logging
import sys

from smtp_alerts._engine.capture import (
    CONTEXT_MAX_ITEMS,
    MESSAGE_MAX_CHARS,
    capture_record,
    record_fingerprint,
    record_key,
    scrub_context,
)


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


class TestOddInput:
    def test_intenum_level_is_a_plain_int(self) -> None:
        class Level(enum.IntEnum):
            BAD = 45

        record = make_record("boom", level=Level.BAD)
        fingerprint, _ = record_fingerprint(record)
        alert = capture_record(record, fingerprint)
        assert type(alert.level) is int
        assert all(type(part) is not Level for part in fingerprint)

    def test_failing_argument_degrades_the_message(self) -> None:
        class Bad:
            def __str__(self) -> str:
                raise ValueError("no")

            def __repr__(self) -> str:
                raise ValueError("no")

        record = make_record("value %s", Bad())
        alert = capture_record(record, record_fingerprint(record)[0])
        assert alert.message.startswith("value %s (message formatting failed: ValueError")
        assert "<unprintable Bad: ValueError in __repr__>" in alert.message

    def test_message_and_traceback_clipped(self) -> None:
        record = make_record("m" * (MESSAGE_MAX_CHARS + 10))
        alert = capture_record(record, record_fingerprint(record)[0])
        assert alert.message.endswith("\n[clipped 10 characters]")


class TestGroupsAndKeys:
    def test_group_is_part_of_the_keys_only_when_set(self) -> None:
        plain, billing = make_record("x"), make_record("x")
        billing.alert_group = "billing"
        assert record_key(plain) != record_key(billing)
        assert record_fingerprint(plain)[0] != record_fingerprint(billing)[0]
        assert "billing" not in repr(record_fingerprint(plain)[0])

    def test_key_replaces_the_fingerprint(self) -> None:
        first, second = make_record("a", line=1), make_record("b", line=2)
        first.alert_key = second.alert_key = "charge"
        assert record_fingerprint(first)[0] == record_fingerprint(second)[0] == ("key", "charge")
        assert record_key(first) != record_key(second)  # call sites still apart, same problem

    def test_unhashable_extras_do_not_raise(self) -> None:
        record = make_record("x")
        record.alert_group = ["not", "hashable"]
        hash(record_key(record))


class TestScrubContext:
    def test_secrets_masked_nested_flattened_bounded(self) -> None:
        context = {
            "order": 42,
            "Password": "p",
            "x-api-key": "k",
            "request": {"cookie": "c", "path": "/a"},
            "note": "Bearer abc",
        }
        assert scrub_context(context) == (
            ("order", "42"),
            ("Password", "[masked]"),
            ("x-api-key", "[masked]"),
            ("request.cookie", "[masked]"),
            ("request.path", "/a"),
            ("note", "[masked]"),
        )
        assert len(scrub_context({str(i): i for i in range(100)})) == CONTEXT_MAX_ITEMS

    def test_odd_context_never_raises(self) -> None:
        class Exploding(dict):  # type: ignore[type-arg]
            def items(self):  # type: ignore[no-untyped-def]
                raise RuntimeError("no")

        assert scrub_context(Exploding())[0][0] == "<context>"
        assert scrub_context("just text") == (("context", "just text"),)
        assert scrub_context(None) == ()
