"""Tests for smtp_alerts._delivery.serialize: digests and messages to JSON-able data and back."""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
from typing import Any

import pytest

from smtp_alerts._delivery.serialize import (
    DIGEST_TEXT_MAX_CHARS,
    FORMAT_VERSION,
    digest_from_dict,
    digest_to_dict,
    message_from_row,
    message_to_row,
)
from smtp_alerts._engine.render import RenderContext, render
from smtp_alerts.models import Alert, Digest, Fingerprint, OutgoingMessage, Problem

NOW = 1_795_000_000.0
CONTEXT = RenderContext(
    sender="alerts@example.com", recipients=("ops@example.com", "dev@example.org"), hostname="web-1"
)
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/shop/api.py", line 42, in get_cart\n'
    "    return carts[user_id]\n"
    "KeyError: 'ünïcødé 🛒'\n"
)


def make_digest(
    fingerprint: Fingerprint = ("shop.api", 40, "/srv/shop/api.py", 42, "Failed to load %s"),
    *,
    message: str = "Failed to load cart",
    traceback: str | None = None,
    **fields: Any,
) -> Digest:
    alert = Alert(
        fingerprint=fingerprint,
        level=logging.ERROR,
        logger="shop.api",
        message=message,
        created=NOW - 600.125,
        location="/srv/shop/api.py:42 in get_cart",
        exc_type="KeyError" if traceback else None,
        traceback=traceback,
    )
    problem = Problem(
        alert=alert, count=3, total=7, first_seen=NOW - 600.125, last_seen=NOW - 1, is_new=True
    )
    values: dict[str, Any] = {
        "group": "default",
        "incident_id": "3f2a9c",
        "sequence": 2,
        "problems": (problem,),
        "created": NOW,
        "reason": "update",
        "dropped": 4,
        "notices": ("Hourly quota reached",),
        "thread_subject": "[web-1] 1 problem in shop.api",
    }
    values.update(fields)
    return Digest(**values)


def through_json(data: object) -> Any:
    """What a store gives back: the data written as JSON text and parsed again."""
    return json.loads(json.dumps(data))


def assert_same_message(copy: OutgoingMessage, original: OutgoingMessage) -> None:
    # OutgoingMessage equality compares the EmailMessage by identity: compare its bytes.
    assert copy.email.as_bytes() == original.email.as_bytes()
    assert copy.message_id == original.message_id
    assert copy.sender == original.sender
    assert copy.recipients == original.recipients
    assert copy.title == original.title
    assert copy.summary == original.summary
    assert copy.digest == original.digest


class TestDigest:
    def test_round_trip_is_equal(self) -> None:
        """A digest comes back from JSON equal to the original, every field included."""
        digest = make_digest()
        assert digest_from_dict(through_json(digest_to_dict(digest))) == digest

    def test_version_is_written(self) -> None:
        """The converted digest carries the format version."""
        assert digest_to_dict(make_digest())["v"] == FORMAT_VERSION

    def test_unicode_and_traceback(self) -> None:
        """Non-ASCII text, control characters and a traceback survive unchanged."""
        digest = make_digest(
            message="Zahlung fehlgeschlagen: ß ✓ 日本語 \x00\x1b[31m", traceback=TRACEBACK
        )
        copy = digest_from_dict(through_json(digest_to_dict(digest)))
        assert copy == digest
        assert copy.problems[0].alert.traceback == TRACEBACK

    def test_lone_surrogate_survives_ascii_json(self) -> None:
        """A lone surrogate from undecodable log bytes survives JSON with ensure_ascii."""
        digest = make_digest(message="bad byte: \udcff")
        text = json.dumps(digest_to_dict(digest))
        text.encode("utf-8")  # storable as UTF-8 text
        assert digest_from_dict(json.loads(text)) == digest

    def test_nested_fingerprint_types(self) -> None:
        """Nested tuples come back as tuples, and bool, int, float, None keep their types."""
        fingerprint = ("alert", "shop", 40, "tmpl", None, ("a.py", 7), (True, 1, 1.0, ((),)))
        copy = digest_from_dict(through_json(digest_to_dict(make_digest(fingerprint))))
        copied = copy.problems[0].alert.fingerprint
        assert copied == fingerprint
        assert repr(copied) == repr(fingerprint)  # hence the same fingerprint_id
        assert copy.problems[0].id == make_digest(fingerprint).problems[0].id

    @pytest.mark.parametrize("bad", [["list"], {"a": 1}, b"bytes", logging.Logger])
    def test_unserialisable_fingerprint_part_degrades(self, bad: Any) -> None:
        """A fingerprint part JSON cannot keep is stored as a string naming it: no loss."""
        data = through_json(digest_to_dict(make_digest(("x", bad))))
        part = digest_from_dict(data).problems[0].alert.fingerprint[1]
        assert isinstance(part, str)
        assert type(bad).__qualname__ in part

    def test_scalar_subclasses_in_fingerprint_become_their_base(self) -> None:
        """An IntEnum level or a str subclass is stored as its plain value, never raising."""

        class Level(enum.IntEnum):
            BAD = 45

        class Text(str):
            def __str__(self) -> str:
                raise ValueError("no")

        data = through_json(digest_to_dict(make_digest(("x", Level.BAD, Text("t"), 1.5))))
        fingerprint = digest_from_dict(data).problems[0].alert.fingerprint
        assert fingerprint == ("x", 45, "t", 1.5)
        assert [type(part) for part in fingerprint] == [str, int, str, float]

    def test_a_huge_digest_is_bounded_and_keeps_every_count(self) -> None:
        """Past DIGEST_TEXT_MAX_CHARS of text, problems keep short messages and every count."""
        base = make_digest().problems[0]
        problems = tuple(
            dataclasses.replace(
                base,
                count=n + 1,
                alert=dataclasses.replace(
                    base.alert, fingerprint=("p", n), message="m" * 4_000, traceback="t" * 16_000
                ),
            )
            for n in range(500)  # 10 MB of text
        )
        digest = dataclasses.replace(make_digest(), problems=problems)
        text = json.dumps(digest_to_dict(digest))
        assert len(text) < 2 * DIGEST_TEXT_MAX_CHARS
        copy = digest_from_dict(json.loads(text))
        assert [p.count for p in copy.problems] == [p.count for p in problems]
        assert copy.problems[0] == problems[0]  # the first ones in full
        last = copy.problems[-1].alert
        assert last.message.endswith("[clipped 3,800 characters]")
        assert last.traceback == "[clipped 16,000 characters]\n"

    def test_context_round_trips_and_old_rows_read(self) -> None:
        """An alert's context survives; a row written before contexts reads as empty."""
        digest = make_digest()
        problem = digest.problems[0]
        alert = dataclasses.replace(problem.alert, context=(("order", "42"),))
        digest = dataclasses.replace(digest, problems=(dataclasses.replace(problem, alert=alert),))
        data = through_json(digest_to_dict(digest))
        assert digest_from_dict(data) == digest
        del data["problems"][0]["alert"]["context"]
        assert digest_from_dict(data).problems[0].alert.context == ()

    def test_timeline_and_second_sample_round_trip_and_old_rows_read(self) -> None:
        """A problem's timeline and later message, and the digest's start and step, survive;
        a row written before timelines existed reads as "no timeline"."""
        digest = make_digest(timeline_start=NOW - 3600.0, timeline_step=300.0)
        problem = dataclasses.replace(
            digest.problems[0], timeline=(0, 3, 0, 4), last_message="Failed to load cart 99"
        )
        digest = dataclasses.replace(digest, problems=(problem,))
        data = through_json(digest_to_dict(digest))
        assert digest_from_dict(data) == digest
        for key in ("timeline_start", "timeline_step"):
            del data[key]
        for key in ("timeline", "last_message"):
            del data["problems"][0][key]
        old = digest_from_dict(data)
        assert (old.timeline_start, old.timeline_step) == (0.0, 0.0)
        assert (old.problems[0].timeline, old.problems[0].last_message) == ((), "")

    def test_damaged_timeline_raises_value_error(self) -> None:
        data = through_json(digest_to_dict(make_digest()))
        data["problems"][0]["timeline"] = ["many"]
        with pytest.raises(ValueError, match="serialised digest"):
            digest_from_dict(data)

    def test_empty_digest(self) -> None:
        """A digest without problems, notices or thread subject round-trips."""
        digest = Digest(group="g", incident_id="i", sequence=1, problems=(), created=0.0)
        assert digest_from_dict(through_json(digest_to_dict(digest))) == digest

    def test_newer_version_is_refused(self) -> None:
        """A digest written by a newer format raises ValueError naming the version."""
        data = digest_to_dict(make_digest()) | {"v": FORMAT_VERSION + 1}
        with pytest.raises(ValueError, match="newer"):
            digest_from_dict(data)

    @pytest.mark.parametrize("data", [{}, {"v": True}, {"v": 1}, {"v": 1, "group": "g"}])
    def test_damaged_data_raises_value_error(self, data: dict[str, Any]) -> None:
        """Missing versions or fields raise ValueError, not KeyError."""
        with pytest.raises(ValueError, match="serialised digest"):
            digest_from_dict(data)


class TestMessage:
    def test_round_trip(self) -> None:
        """A rendered message comes back with the same bytes, fields and digest."""
        original = render(make_digest(traceback=TRACEBACK), CONTEXT)
        row = message_to_row(original)
        copy = message_from_row(through_json(row.meta), row.email)
        assert_same_message(copy, original)

    def test_email_keeps_its_policy_and_headers(self) -> None:
        """The parsed email is an EmailMessage with the original's headers and CRLF ends."""
        original = render(make_digest(sequence=3), CONTEXT)
        row = message_to_row(original)
        assert row.email == original.email.as_bytes()
        assert b"\r\n" in row.email
        copy = message_from_row(through_json(row.meta), row.email)
        assert copy.email.items() == original.email.items()
        assert copy.email["In-Reply-To"] == original.email["In-Reply-To"]
        assert copy.email.get_body(("plain",)) is not None

    def test_unicode_body(self) -> None:
        """Non-ASCII log text in the body survives the round trip."""
        original = render(make_digest(message="Ошибка ✗ 🚨", traceback=TRACEBACK), CONTEXT)
        row = message_to_row(original)
        copy = message_from_row(through_json(row.meta), row.email)
        assert_same_message(copy, original)
        plain = copy.email.get_body(("plain",))
        assert plain is not None
        assert "Ошибка ✗ 🚨" in plain.get_content()

    def test_message_without_digest(self) -> None:
        """A message that renders no digest (a summary) comes back with digest None."""
        rendered = render(make_digest(), CONTEXT)
        original = OutgoingMessage(
            message_id=rendered.message_id,
            email=rendered.email,
            sender=rendered.sender,
            recipients=rendered.recipients,
            title="3 undelivered alert digests merged",
            summary="- one\n- two\n- three\n",
        )
        row = message_to_row(original)
        assert row.meta["digest"] is None
        copy = message_from_row(through_json(row.meta), row.email)
        assert copy.digest is None
        assert_same_message(copy, original)

    def test_newer_version_is_refused(self) -> None:
        """A message written by a newer format raises ValueError."""
        row = message_to_row(render(make_digest(), CONTEXT))
        with pytest.raises(ValueError, match="newer"):
            message_from_row(row.meta | {"v": FORMAT_VERSION + 1}, row.email)

    def test_damaged_meta_raises_value_error(self) -> None:
        """A row missing a field raises ValueError."""
        row = message_to_row(render(make_digest(), CONTEXT))
        meta = dict(row.meta)
        del meta["sender"]
        with pytest.raises(ValueError, match="serialised message"):
            message_from_row(meta, row.email)
