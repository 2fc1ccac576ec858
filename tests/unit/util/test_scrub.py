"""The one scrubber: secrets in keys, values and URLs never reach an email."""

from __future__ import annotations

import pytest

from smtp_alerts._util.scrub import MASKED, is_secret_key, mask_url_credentials, scrub_context


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWD",
        "Authorization",
        "Cookie",
        "Set-Cookie",
        "X-Api-Key",
        "api_key",
        "SECRET_KEY",
        "access_token",
        "sessionid",
        "SENTRY_DSN",
        "auth",
    ],
)
def test_keys_that_name_a_secret(key: str) -> None:
    assert is_secret_key(key)
    assert scrub_context({key: "hunter2"}) == ((key, MASKED),)


@pytest.mark.parametrize("key", ["user_id", "route", "method", "order", "author"])
def test_keys_that_do_not(key: str) -> None:
    assert not is_secret_key(key)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("redis://:hunter2@cache:6379/0", f"redis://:{MASKED}@cache:6379/0"),
        ("https://bob:pw@example.com/x", f"https://bob:{MASKED}@example.com/x"),
        (
            "db at postgres://app:s3cr3t@db/app failed",
            f"db at postgres://app:{MASKED}@db/app failed",
        ),
        ("https://example.com/a:b@c", "https://example.com/a:b@c"),  # no credentials there
        ("plain text", "plain text"),
    ],
)
def test_url_passwords_are_masked_and_nothing_else(text: str, shown: str) -> None:
    assert mask_url_credentials(text) == shown
    assert scrub_context({"broker": text}) == (("broker", shown),)


def test_values_that_carry_a_credential_are_masked_whatever_the_key() -> None:
    assert scrub_context({"header": "Bearer abc.def"}) == (("header", MASKED),)
    assert scrub_context({"request": {"user": 7, "cookie": "x"}}) == (
        ("request.user", "7"),
        ("request.cookie", MASKED),
    )
