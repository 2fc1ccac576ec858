"""The ``SMTP_ALERTS_*`` environment: its names, its reading, and a cheap first check of it.

:class:`~smtp_alerts.Settings` (pydantic) is the model that validates every
setting, but pydantic with pydantic-settings costs about 150 ms and 20 MiB to
load: more than the rest of ``AlertHandler()`` together, paid by every cron
script and every gunicorn worker. So the handler's start-up reads the
environment here, with the standard library only, and checks it with rules
that are a strict subset of the model's: what :func:`quick_check` accepts, the
model accepts too, with the same values. Whatever it is not sure about (a
``SECURITY=none``, a backup server, a value in an unusual spelling, anything
wrong) it leaves to the model at once, so a wrong setting still fails at
construction with the model's own message naming the variable. The model is
then built on the engine's thread, from the same snapshot of the environment.

The helpers the model's validators use (durations, lists, addresses, URLs,
the rules between settings) live here too, so both apply the very same rules.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from .errors import ConfigurationError

__all__ = [
    "DEFAULT_GROUP_INTERVAL",
    "DEFAULT_GROUP_WAIT",
    "DEFAULT_MAX_PER_DAY",
    "DEFAULT_MAX_PER_HOUR",
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_REPEAT_INTERVAL",
    "ENV_PREFIX",
    "FIELDS",
    "QuickSettings",
    "check_address",
    "consistency_problem",
    "default_spool_path",
    "environment_values",
    "host_problem",
    "parse_duration",
    "quick_check",
    "read_environment",
    "split_list",
    "url_problem",
    "variable_name",
]

ENV_PREFIX = "SMTP_ALERTS_"

# Defaults the model and the quick check share (the engine starts with them
# before the model is built).
DEFAULT_QUEUE_SIZE = 50_000
DEFAULT_GROUP_WAIT = 10.0
DEFAULT_GROUP_INTERVAL = 300.0
DEFAULT_REPEAT_INTERVAL = 14400.0
DEFAULT_MAX_PER_HOUR = 20
DEFAULT_MAX_PER_DAY = 100

#: The fields of :class:`~smtp_alerts.Settings`, in its order; each is read
#: from ``SMTP_ALERTS_<NAME>`` (``SMTP_ALERTS_FROM`` for ``from_``).
FIELDS = (
    "host",
    "port",
    "security",
    "username",
    "password",
    "password_file",
    "from_",
    "to",
    "ca_file",
    "timeout",
    "group_wait",
    "group_interval",
    "repeat_interval",
    "fallback_urls",
    "spool_dir",
    "auth_failure_threshold",
    "auth_failure_window",
    "max_per_hour",
    "max_per_day",
    "shutdown_timeout",
    "subject_prefix",
    "queue_size",
    "alternate_port",
    "backup_host",
    "backup_port",
    "backup_security",
    "backup_username",
    "backup_password",
    "redis_url",
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Deliberately plain: an address is local@domain with no spaces, separators,
# quotes, angle brackets or control characters, so it can never smuggle a
# second recipient or a header into the envelope or the To: line.
_ADDRESS = re.compile(
    r"^[^@\s<>,;:\"'()\[\]\\\x00-\x1f\x7f]+@[^@\s<>,;:\"'()\[\]\\\x00-\x1f\x7f]+$"
)

#: Variables DESIGN.md names for features this version does not have yet: set,
#: they would be silently ignored, so they are refused with a word of why.
_NOT_YET: dict[str, str] = {}


def variable_name(field: str) -> str:
    """The environment variable of a settings field: ``SMTP_ALERTS_FROM`` for ``from_``."""
    return f"{ENV_PREFIX}{field.rstrip('_').upper()}"


_FIELD_OF = {variable_name(field): field for field in FIELDS}


def environment_values(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``SMTP_ALERTS_*`` variables of ``environ``, keyed by settings field.

    Names are case-insensitive. Anything else in ``environ`` is left alone.

    Raises:
        ConfigurationError: an ``SMTP_ALERTS_*`` variable that is no setting
            (a misspelt name would otherwise be ignored and its value silently
            replaced by the default), naming it and the closest known name.
    """
    values: dict[str, str] = {}
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX):
            continue
        field = _FIELD_OF.get(upper)
        if field is not None:
            values[field] = environ[name]
        elif upper in _NOT_YET:
            problems.append(f"{name}: {_NOT_YET[upper]}")
        else:
            problems.append(f"{name} is not a setting of smtp-alerts{_closest(upper)}")
    if problems:
        raise ConfigurationError("invalid smtp-alerts settings:\n  " + "\n  ".join(problems))
    return values


def _closest(upper: str) -> str:
    # Compared without the prefix, which every name shares and would make any
    # two look alike.
    suffixes = [name.removeprefix(ENV_PREFIX) for name in _FIELD_OF]
    guess = difflib.get_close_matches(upper.removeprefix(ENV_PREFIX), suffixes, n=1)
    return f"; did you mean {ENV_PREFIX}{guess[0]}?" if guess else ""


# -- the rules the model's validators apply too ----------------------------------------


def parse_duration(value: Any) -> float:
    """Turn ``30``, ``"500ms"``, ``"30s"``, ``"5m"``, ``"4h"`` or ``"1d"`` into seconds.

    Args:
        value: a non-negative number of seconds, or a string with an optional unit.

    Returns:
        The duration in seconds.

    Raises:
        ValueError: the value is negative, not finite, or not in one of those forms.
    """
    # ValueError, not TypeError, throughout: pydantic turns only ValueError into
    # a validation error that names the variable.
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30, 500ms, 30s, 5m, 4h or 1d")  # noqa: TRY004
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a duration: use seconds or 500ms, 30s, 5m, 4h, 1d")
        number, unit = match.groups()
        seconds = float(number) * _UNIT_SECONDS[(unit or "s").lower()]
    else:
        raise ValueError("expected a duration such as 30, 500ms, 30s, 5m, 4h or 1d")  # noqa: TRY004
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration must be a finite, non-negative number of seconds")
    return seconds


def split_list(value: Any) -> Any:
    """Split ``"a@x, b@y"`` (commas or spaces) into a list; pass lists through."""
    if isinstance(value, str):
        return [part for part in re.split(r"[\s,]+", value) if part]
    return value


def check_address(address: str) -> None:
    """Raise ValueError unless ``address`` is a plain ``local@domain``."""
    if not _ADDRESS.match(address):
        # An address is not a secret; showing it helps find the typo.
        raise ValueError(f"{address!r} is not a plain email address (local@domain)")


def url_problem(position: int, url: str) -> str | None:
    """What makes ``url`` (the ``position``-th) no apprise URL, or None when it is URL-shaped."""
    scheme, sep, rest = url.partition("://")
    if not sep or not rest or not scheme.isidentifier():
        # Only the position and scheme: the rest of a URL is often a token.
        return f"URL #{position} is not an apprise URL (scheme://...)"
    return None


def host_problem(host: str) -> str | None:
    """What makes ``host`` no host name (spaces or control characters), or None."""
    if any(ch.isspace() or ord(ch) < 32 for ch in host):
        return "a host name cannot contain spaces or control characters"
    return None


def consistency_problem(
    *,
    to: bool,
    from_: bool,
    username: bool,
    password: bool,
    password_file: bool,
) -> str | None:
    """What is wrong between the sender, recipient and password settings, or None.

    Args:
        to: whether there is a recipient.
        from_: whether ``FROM`` is set.
        username: whether ``USERNAME`` is set.
        password: whether ``PASSWORD`` is set.
        password_file: whether ``PASSWORD_FILE`` is set.
    """
    if not to:
        return f"{ENV_PREFIX}TO is required: the comma-separated addresses that receive alerts"
    if not from_ and not username:
        return f"{ENV_PREFIX}FROM or {ENV_PREFIX}USERNAME is required: the sender address"
    if password and password_file:
        return f"{ENV_PREFIX}PASSWORD and {ENV_PREFIX}PASSWORD_FILE are mutually exclusive"
    if (password or password_file) and not username:
        return f"{ENV_PREFIX}USERNAME is required with a password"
    return None


def default_spool_path() -> Path:
    """The spool's directory when ``SPOOL_DIR`` is not set: the user's state directory."""
    import platformdirs  # noqa: PLC0415 - loaded only when the spool is used

    return platformdirs.user_state_path("smtp-alerts", appauthor=False)


# -- the cheap first check ---------------------------------------------------------------


@dataclass(frozen=True)
class QuickSettings:
    """What an engine needs until its settings model is built: its intake and its store.

    From an environment :func:`quick_check` passed, or from the model itself
    (:meth:`smtp_alerts.Settings.quick`). With these the engine's thread puts
    what it was given in the store before it loads pydantic and the channels.

    Attributes:
        sender: ``FROM``, else ``USERNAME``.
        to: ``TO``.
        subject_prefix: ``SUBJECT_PREFIX``.
        queue_size: ``QUEUE_SIZE``.
        spool_dir: ``SPOOL_DIR``, or None for the default.
        fallback: whether ``FALLBACK_URLS`` names any URL.
        group_wait: ``GROUP_WAIT`` in seconds.
        group_interval: ``GROUP_INTERVAL`` in seconds.
        repeat_interval: ``REPEAT_INTERVAL`` in seconds.
        max_per_hour: ``MAX_PER_HOUR``.
        max_per_day: ``MAX_PER_DAY``.
        redis: whether ``REDIS_URL`` is set (the quick check leaves it to the
            model, so only settings built by the model say True).
    """

    sender: str
    to: tuple[str, ...]
    subject_prefix: str | None = None
    queue_size: int = DEFAULT_QUEUE_SIZE
    spool_dir: Path | None = None
    fallback: bool = False
    group_wait: float = DEFAULT_GROUP_WAIT
    group_interval: float = DEFAULT_GROUP_INTERVAL
    repeat_interval: float = DEFAULT_REPEAT_INTERVAL
    max_per_hour: int = DEFAULT_MAX_PER_HOUR
    max_per_day: int = DEFAULT_MAX_PER_DAY
    redis: bool = False

    @property
    def spool_path(self) -> Path:
        """``SPOOL_DIR``, or else the user's state directory (as ``Settings.spool_path``)."""
        return self.spool_dir if self.spool_dir is not None else default_spool_path()


class _Unsure(Exception):  # noqa: N818 - not an error: the model decides instead
    """The quick check leaves this value to the model."""


def _plain_int(low: int, high: int = 999_999_999) -> Callable[[str], object]:
    def check(text: str) -> int:
        # Digits only, no sign, space, underscore or leading zero: forms whose
        # reading by pydantic we need not guess.
        if not (text.isascii() and text.isdigit() and len(text) <= 9):
            raise _Unsure
        if (text.startswith("0") and text != "0") or not low <= int(text) <= high:
            raise _Unsure
        return int(text)

    return check


def _duration(*, positive: bool = False) -> Callable[[str], object]:
    def check(text: str) -> float:
        try:
            seconds = parse_duration(text)
        except ValueError:
            raise _Unsure from None
        if positive and seconds <= 0:
            raise _Unsure
        return seconds

    return check


def _any(text: str) -> object:
    return text


def _non_empty(text: str) -> object:
    if not text:
        raise _Unsure
    return text


def _host(text: str) -> object:
    if not text or host_problem(text) is not None:
        raise _Unsure
    return text


def _security(text: str) -> object:
    # Not "none": whether it may carry a password depends on the host (the model says).
    if text not in ("starttls", "tls"):
        raise _Unsure
    return text


def _address(text: str) -> object:
    try:
        check_address(text)
    except ValueError:
        raise _Unsure from None
    return text


def _addresses(text: str) -> object:
    addresses = split_list(text)
    for address in addresses:
        _address(address)
    return addresses


def _urls(text: str) -> object:
    urls = split_list(text)
    if any(url_problem(position, url) for position, url in enumerate(urls, 1)):
        raise _Unsure
    return urls


def _file(text: str) -> object:
    try:
        if text and Path(text).is_file():
            return text
    except (OSError, ValueError):
        pass
    raise _Unsure


#: The fields the quick check judges, each with a check that returns the value
#: or raises _Unsure. The backup server's fields are left to the model.
_QUICK: dict[str, Callable[[str], object]] = {
    "host": _host,
    "port": _plain_int(1, 65535),
    "security": _security,
    "username": _address,
    "password": _any,
    "password_file": _file,
    "from_": _address,
    "to": _addresses,
    "ca_file": _file,
    "timeout": _duration(positive=True),
    "group_wait": _duration(),
    "group_interval": _duration(),
    "repeat_interval": _duration(),
    "fallback_urls": _urls,
    "spool_dir": _non_empty,
    "auth_failure_threshold": _plain_int(1),
    "auth_failure_window": _duration(positive=True),
    "max_per_hour": _plain_int(1),
    "max_per_day": _plain_int(1),
    "shutdown_timeout": _duration(),
    "subject_prefix": _any,
    "queue_size": _plain_int(10),
    "alternate_port": _plain_int(0, 65535),
}


def quick_check(values: Mapping[str, str]) -> QuickSettings | None:
    """Check settings read from the environment without pydantic; None when unsure.

    Sound, not complete: an environment it accepts is one the model accepts
    too (a test holds it to that); one it returns None for may be fine or not,
    and the model must judge it.

    Args:
        values: from :func:`environment_values`.

    Returns:
        What the engine needs before its thread runs, or None.
    """
    try:
        checked = {field: _QUICK[field](text) for field, text in values.items() if field in _QUICK}
    except _Unsure:
        return None
    if len(checked) != len(values):
        return None  # a field left to the model (the backup server's)
    problem = consistency_problem(
        to=bool(checked.get("to")),
        from_="from_" in checked,
        username="username" in checked,
        password="password" in checked,
        password_file="password_file" in checked,
    )
    if problem is not None:
        return None
    picked: dict[str, Any] = {name: checked[name] for name in _CARRIED if name in checked}
    return QuickSettings(
        sender=cast("str", checked.get("from_", checked.get("username"))),
        to=tuple(dict.fromkeys(cast("list[str]", checked["to"]))),  # as the model: once each
        spool_dir=Path(values["spool_dir"]) if "spool_dir" in values else None,
        fallback=bool(checked.get("fallback_urls")),
        **picked,
    )


#: The checked values QuickSettings carries as they are.
_CARRIED = (
    "subject_prefix",
    "queue_size",
    "group_wait",
    "group_interval",
    "repeat_interval",
    "max_per_hour",
    "max_per_day",
)


def read_environment() -> tuple[dict[str, str], QuickSettings | None]:
    """The ``SMTP_ALERTS_*`` variables now (a snapshot) and the quick check's verdict on them.

    Raises:
        ConfigurationError: an unknown ``SMTP_ALERTS_*`` variable.
    """
    values = environment_values(os.environ)
    return values, quick_check(values)
