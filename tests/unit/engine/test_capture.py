"""Fingerprints and capture of log records (docs/architecture.md, "Fingerprint")."""

from __future__ import annotations

import enum
import importlib.util
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from smtp_alerts import Engine, Settings
from smtp_alerts._engine import capture as capture_module
from smtp_alerts._engine.capture import (
    CONTEXT_MAX_ITEMS,
    MESSAGE_MAX_CHARS,
    PendingAlert,
    capture_record,
    mask_variable_parts,
    record_fingerprint,
    record_key,
    scrub_context,
    shape_matches,
    template_shape,
)
from smtp_alerts._util.source_paths import portable_path
from smtp_alerts.models import Alert
from smtp_alerts.transports import MemoryTransport


def captured(record: logging.LogRecord) -> Alert:
    """The record's capture as the engine's thread finishes it."""
    result = capture_record(record, record_fingerprint(record)[0])
    return result.finish() if isinstance(result, PendingAlert) else result


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
        inner = portable_path(__file__)
        assert not inner.startswith("/")  # relative to the import root, not this checkout
        assert any(isinstance(part, tuple) and part[0] == inner for part in fingerprint)

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
        alert = captured(record)
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
        alert = captured(record)
        assert alert.traceback is not None
        assert "Broken" in alert.traceback

    def test_location_is_relative_to_the_import_root(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """The email names ``shop/api.py:10``, not the checkout's absolute path."""
        monkeypatch.syspath_prepend(str(tmp_path))
        record = make_record("could not price %s", "A-17")
        record.pathname = str(tmp_path / "shop" / "api.py")
        assert captured(record).location == "shop/api.py:10 in handler"


class TestOddInput:
    def test_intenum_level_is_a_plain_int(self) -> None:
        class Level(enum.IntEnum):
            BAD = 45

        record = make_record("boom", level=Level.BAD)
        fingerprint, _ = record_fingerprint(record)
        alert = captured(record)
        assert type(alert.level) is int
        assert all(type(part) is not Level for part in fingerprint)

    def test_failing_argument_degrades_the_message(self) -> None:
        class Bad:
            def __str__(self) -> str:
                raise ValueError("no")

            def __repr__(self) -> str:
                raise ValueError("no")

        record = make_record("value %s", Bad())
        alert = captured(record)
        assert alert.message.startswith("value %s (message formatting failed: ValueError")
        assert "<unprintable Bad: ValueError in __repr__>" in alert.message

    def test_message_and_traceback_clipped(self) -> None:
        record = make_record("m" * (MESSAGE_MAX_CHARS + 10))
        alert = captured(record)
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


class TestDeferredTraceback:
    def test_source_lines_are_read_on_the_engine_thread_not_at_capture(
        self, tmp_path: Path
    ) -> None:
        """Capture snapshots the frames; the source line is read when the engine formats it."""
        source = tmp_path / "deferred_mod.py"
        source.write_text("def fail():\n    raise KeyError('first version of the line')\n")
        spec = importlib.util.spec_from_file_location("deferred_mod", source)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        try:
            module.fail()
        except KeyError:
            record = make_record("pricing failed", exc_info=True)
        pending = capture_record(record, record_fingerprint(record)[0])
        assert isinstance(pending, PendingAlert)
        assert pending.alert.traceback is None
        assert pending.alert.exc_type == "KeyError"
        # Had the capture read the line, the traceback would show the first version.
        source.write_text("def fail():\n    raise KeyError('line as the engine reads it')\n")
        alert = pending.finish()
        assert alert.traceback is not None
        assert "line as the engine reads it" in alert.traceback
        assert "KeyError: 'first version of the line'" in alert.traceback  # text as it was

    def test_exception_text_is_taken_at_capture(self) -> None:
        """An exception changed after logging still shows its text as it was."""
        error = ValueError("as logged")
        try:
            raise error
        except ValueError:
            record = make_record("failed", exc_info=True)
        pending = capture_record(record, record_fingerprint(record)[0])
        error.args = ("changed later",)
        assert isinstance(pending, PendingAlert)
        text = pending.finish().traceback
        assert text is not None
        assert "ValueError: as logged" in text
        assert "changed later" not in text

    def test_chained_exceptions_and_stack_info_are_kept(self) -> None:
        try:
            try:
                raise_value_error()
            except ValueError as cause:
                raise KeyError("wrapped") from cause
        except KeyError:
            record = make_record("failed", exc_info=True)
        record.stack_info = "Stack (most recent call last):\n  here"
        alert = captured(record)
        assert alert.traceback is not None
        assert "direct cause" in alert.traceback
        assert alert.traceback.index("ValueError: bad") < alert.traceback.index("KeyError")
        assert alert.traceback.endswith("Stack (most recent call last):\n  here")


class TestShapes:
    @pytest.mark.parametrize(
        ("template", "text", "matches"),
        [
            ("order # failed", "order 17 failed", True),
            ("order # failed", "order 123456 failed", True),
            ("order # failed", "order  failed", False),  # a variable part is never empty
            ("order # failed", "order 17 failed twice", False),
            ("user # failed at step #", "user 3 failed at step 9", True),
            ("user # failed at step #", "user 3 failed at step ", False),
            ("user # failed at step #", "user 3 logged out at step 9", False),
            ("#: done", "42: done", True),
            ("no numbers at all", "no numbers at all", True),
            ("no numbers at all", "no numbers at all!", False),
            ("a # b # c", "a 1 b c", False),
        ],
    )
    def test_shape_matches_fixed_pieces_in_order(
        self, template: str, text: str, matches: bool
    ) -> None:
        assert shape_matches(text, template_shape(template)) is matches

    def test_texts_of_a_matching_shape_mask_to_its_template(self) -> None:
        """What a shape accepts from the masking regex's own output is what it masks to."""
        for text in ("order 17 failed", "order 0x1f failed", "order deadbeef01 failed"):
            assert mask_variable_parts(text) == "order # failed"
            assert shape_matches(text, template_shape("order # failed"))


def count_masking(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts the masking regex runs on from now on, as it runs."""
    calls: list[str] = []
    real = capture_module.mask_variable_parts

    def counting(text: str) -> str:
        calls.append(text)
        return real(text)

    monkeypatch.setattr(capture_module, "mask_variable_parts", counting)
    return calls


def memory_engine() -> tuple[Engine, MemoryTransport]:
    """An engine that sends into memory, its first digest 10 s after the first alert."""
    transport = MemoryTransport()
    settings = Settings(to=["oncall@example.com"], from_="a@example.com", group_wait="10s")
    return Engine(settings, transport=transport), transport


class TestMaskingCost:
    def test_fstring_repeats_mask_once_per_shape(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A repeat of pre-formatted text from a known call site runs no masking regex."""
        calls = count_masking(monkeypatch)
        engine, transport = memory_engine()
        log = logging.getLogger("tests.capture.shapes")
        for order in range(1_000):
            record = log.makeRecord(
                log.name, logging.ERROR, "/app/x.py", 7, f"order {order} failed", (), None
            )
            engine.submit_record(record)
        for order in range(5):  # a second shape at the same call site
            record = log.makeRecord(
                log.name, logging.ERROR, "/app/x.py", 7, f"refund {order} late", (), None
            )
            engine.submit_record(record)
        assert len(calls) == 2
        assert engine.flush(timeout=10)
        (message,) = transport.sent
        assert message.digest is not None
        assert sorted(p.count for p in message.digest.problems) == [5, 1_000]
        engine.close()

    @pytest.mark.parametrize(
        ("texts", "exception"),
        [
            pytest.param(lambda i: f"payment {i} failed for user {i * 7}", False, id="two-parts"),
            pytest.param(
                lambda i: f"user {i}: step {i % 9} of {i} failed", False, id="three-parts"
            ),
            pytest.param(lambda i: f"lookup {i} failed", True, id="with-an-exception"),
        ],
    )
    def test_more_shapes_of_fstrings_mask_once(
        self,
        monkeypatch: pytest.MonkeyPatch,
        texts: Callable[[int], str],
        exception: bool,
    ) -> None:
        """Two variable parts, more, or an exception with the text: still masked once."""
        calls = count_masking(monkeypatch)
        engine, transport = memory_engine()
        log = logging.getLogger("tests.capture.shapes2")
        try:
            raise KeyError("x")
        except KeyError:
            exc_info = sys.exc_info() if exception else None
        for i in range(500):
            record = log.makeRecord(log.name, logging.ERROR, "/app/y.py", 9, texts(i), (), exc_info)
            engine.submit_record(record)
        assert len(calls) == 1
        assert engine.flush(timeout=10)
        (message,) = transport.sent
        assert message.digest is not None
        assert [p.count for p in message.digest.problems] == [500]
        engine.close()
