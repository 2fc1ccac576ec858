"""The SMTP_ALERTS_* environment read without pydantic, and the quick check's promise.

The quick check (smtp_alerts._environment.quick_check) lets ``AlertHandler()``
start without loading pydantic. Its promise: what it accepts, the Settings
model accepts too, with the same values; what it is unsure of is left to the
model. These tests hold it to that on the forms a user may write.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from smtp_alerts import Settings
from smtp_alerts._environment import (
    FIELDS,
    environment_values,
    quick_check,
    variable_name,
)
from smtp_alerts.errors import ConfigurationError

BASE = {"TO": "oncall@example.com", "USERNAME": "me@gmail.com", "PASSWORD": "app pw"}

# Each entry: SMTP_ALERTS_<NAME> -> value, added to BASE (None removes it).
CASES: list[dict[str, str | None]] = [
    {},
    {"PORT": "465"},
    {"PORT": "0587"},
    {"PORT": " 587"},
    {"PORT": "+587"},
    {"PORT": "5_87"},
    {"PORT": "587.0"},
    {"PORT": "0"},
    {"PORT": "65536"},
    {"PORT": ""},
    {"PORT": "٥٨٧"},  # Arabic-Indic digits: str.isdigit() says yes
    {"ALTERNATE_PORT": "0"},
    {"ALTERNATE_PORT": "00"},
    {"SECURITY": "tls"},
    {"SECURITY": "TLS"},
    {"SECURITY": "none"},
    {"SECURITY": "none", "HOST": "127.0.0.1"},
    {"HOST": ""},
    {"HOST": "smtp.example.com "},
    {"HOST": "mail.example.com"},
    {"TO": ""},
    {"TO": " , "},
    {"TO": "a@example.com,, b@example.com a@example.com"},
    {"TO": "not-an-address"},
    {"TO": '["a@example.com"]'},
    {"USERNAME": None},
    {"USERNAME": None, "PASSWORD": None, "FROM": "alerts@example.com"},
    {"USERNAME": None, "PASSWORD": None},
    {"FROM": "a@b.com\r\nBcc: x@evil.com"},
    {"PASSWORD": ""},
    {"PASSWORD_FILE": "/nonexistent/pw"},
    {"PASSWORD": None, "PASSWORD_FILE": "{pw}"},
    {"PASSWORD_FILE": "{pw}"},
    {"CA_FILE": "{pw}"},
    {"CA_FILE": ""},
    {"TIMEOUT": "0"},
    {"TIMEOUT": "20s"},
    {"TIMEOUT": "1e3"},
    {"TIMEOUT": "inf"},
    {"GROUP_WAIT": "0"},
    {"GROUP_WAIT": " 10S "},
    {"GROUP_INTERVAL": "-1"},
    {"REPEAT_INTERVAL": "1.5h"},
    {"AUTH_FAILURE_WINDOW": "0"},
    {"SHUTDOWN_TIMEOUT": "500ms"},
    {"FALLBACK_URLS": "json://127.0.0.1:9/ ntfy://topic"},
    {"FALLBACK_URLS": "not a url"},
    {"FALLBACK_URLS": ""},
    {"SPOOL_DIR": ""},
    {"SPOOL_DIR": "{tmp}"},
    {"MAX_PER_HOUR": "0"},
    {"MAX_PER_DAY": "1000000000"},
    {"QUEUE_SIZE": "9"},
    {"QUEUE_SIZE": "10"},
    {"AUTH_FAILURE_THRESHOLD": "1"},
    {"SUBJECT_PREFIX": ""},
    {"SUBJECT_PREFIX": "[web\x01]"},
    {"BACKUP_HOST": "backup.example.com"},
    {"BACKUP_PASSWORD": "pw"},
]


def _environment(case: dict[str, str | None], tmp_path: Path) -> dict[str, str]:
    secret = tmp_path / "pw"
    secret.write_text("pw\n")
    merged = {**BASE, **case}
    return {
        f"SMTP_ALERTS_{name}": value.format(pw=secret, tmp=tmp_path)
        for name, value in merged.items()
        if value is not None
    }


def test_fields_are_the_models() -> None:
    """The names read from the environment are exactly the model's fields, in order."""
    assert tuple(Settings.model_fields) == FIELDS
    assert variable_name("from_") == "SMTP_ALERTS_FROM"


@pytest.mark.parametrize("case", CASES, ids=[repr(case) for case in CASES])
def test_quick_check_accepts_only_what_the_model_accepts(
    case: dict[str, str | None], tmp_path: Path
) -> None:
    """Sound: a quick pass means the model passes with the values the engine uses."""
    values = environment_values(_environment(case, tmp_path))
    quick = quick_check(values)
    if quick is None:
        return  # left to the model: nothing promised
    settings = Settings.from_environment(values)
    assert quick == settings.quick()
    assert quick.spool_path == settings.spool_path


def test_quick_check_passes_the_usual_environment(tmp_path: Path) -> None:
    """The usual environment (TO, USERNAME, PASSWORD or a file, a spool) needs no pydantic."""
    for case in ({}, {"PASSWORD": None, "PASSWORD_FILE": "{pw}", "SPOOL_DIR": "{tmp}"}):
        assert quick_check(environment_values(_environment(case, tmp_path))) is not None


@pytest.mark.parametrize(
    "case",
    [
        {"PORT": "70000"},
        {"TO": "not-an-address"},
        {"USERNAME": None},
        {"CA_FILE": "/nonexistent/ca.pem"},
        {"TIMEOUT": "soon"},
    ],
)
def test_quick_check_never_passes_a_wrong_setting(
    case: dict[str, str | None], tmp_path: Path
) -> None:
    """What the model refuses, the quick check leaves to it (which then says why)."""
    values = environment_values(_environment(case, tmp_path))
    assert quick_check(values) is None
    with pytest.raises(ConfigurationError, match="SMTP_ALERTS_"):
        Settings.from_environment(values)


def test_snapshot_not_live_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings built from a snapshot ignore what changed in os.environ since."""
    for name, value in _environment({}, tmp_path).items():
        monkeypatch.setenv(name, value)
    import os

    values = environment_values(os.environ)
    monkeypatch.delenv("SMTP_ALERTS_PASSWORD")  # a program may drop a secret after start-up
    monkeypatch.setenv("SMTP_ALERTS_PORT", "nope")
    settings = Settings.from_environment(values)
    assert (settings.read_password(), settings.port) == ("app pw", 587)


def test_unknown_variable_refused_without_pydantic() -> None:
    """A misspelt name fails while reading, naming it and the closest setting."""
    with pytest.raises(ConfigurationError, match="did you mean SMTP_ALERTS_GROUP_WAIT"):
        environment_values({"SMTP_ALERTS_GROUP_WAT": "5s", "smtp_alerts_to": "a@example.com"})
    assert environment_values({"smtp_alerts_to": "a@example.com", "HOME": "/"}) == {
        "to": "a@example.com"
    }
