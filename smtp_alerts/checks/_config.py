"""The checks file of ``smtp-alerts watch``: TOML, validated by pydantic.

The format (``examples/checks.toml`` has a complete example)::

    # Optional: what every check gets unless it says otherwise.
    [defaults]
    interval = "60s"          # between two runs (a number of seconds, or 500ms, 30s, 5m, 4h, 1d)
    timeout = "10s"           # a run that takes longer fails
    retries = 2               # failures in a row tolerated: DOWN on the third
    recovery = 2              # successes in a row a DOWN check needs to be UP
    resend_interval = "1h"    # remind while DOWN this often ("0s": never)
    max_reminders = 3         # reminders per outage at most
    flap_threshold = 6        # this many up/down changes within flap_window ...
    flap_window = "30m"       # ... is flapping: one alert, then quiet until calm (0: off)

    [[checks]]                # one table per check; `name` and `type` are required
    name = "website"
    type = "http"
    url = "https://example.com/health"
    expect_status = [200, "3xx"]  # codes or classes; default: any 2xx
    max_latency = "2s"
    body_contains = "ok"          # or body_regex = "..."
    method = "GET"                # or "HEAD"
    headers = { Authorization = "Bearer ..." }
    follow_redirects = true
    ca_file = "internal-ca.pem"   # relative to this file; besides the system's CAs

    [[checks]]
    name = "database"
    type = "tcp"
    host = "db.internal"
    port = 5432

    [[checks]]
    name = "certificate"
    type = "tls"
    host = "example.com"
    port = 443
    min_days = 14             # fewer days of validity left fails
    server_name = "example.com"   # optional; ca_file as for http

    [[checks]]
    name = "backups"
    type = "command"
    command = "test -n \\"$(find /backups -mtime -1)\\""   # a string runs in sh -c
    # command = ["/usr/lib/nagios/plugins/check_disk", "-w", "10%"]   # a list runs as is
    ok_codes = [0]
    cwd = "/var/backups"

Every check also takes the keys of ``[defaults]`` for itself. A mistake is
reported with the file, the line and the field, one line per problem::

    checks.toml:12: checks[2].timeout: Input should be greater than 0

(``checks[2]`` is the third ``[[checks]]`` table: indexes count from 0.)
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..errors import ConfigurationError
from ..settings import Duration
from ._builtin import CommandCheck, HttpCheck, TcpCheck, TlsExpiryCheck
from ._check import DEFAULT_INTERVAL, DEFAULT_TIMEOUT, Check
from ._state import CheckPolicy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = ["CheckConfigError", "WatchConfig", "load_config", "parse_config"]

_KINDS = ("http", "tcp", "tls", "command")
_STATUS_CLASS = re.compile(r"^([1-5])xx$", re.IGNORECASE)
_AT_LINE = re.compile(r"\s*\(at line (\d+), column \d+\)$")
_AT_END = re.compile(r"\s*\(at end of document\)$")
_ANY_HEADER = re.compile(r"^\s*\[")


class CheckConfigError(ConfigurationError):
    """The checks file is wrong; one line per problem, each with its place.

    Attributes:
        problems: ``file:line: field: message`` lines.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """A validated checks file.

    Attributes:
        path: where it was read from.
        checks: the checks it describes, in its order.
    """

    path: Path
    checks: tuple[Check, ...]


# -- the models ---------------------------------------------------------------------------

PositiveDuration = Annotated[Duration, Field(gt=0)]


class _Policy(BaseModel):
    """The keys of ``[defaults]``, which every check also takes for itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval: PositiveDuration | None = None
    timeout: PositiveDuration | None = None
    retries: int | None = Field(default=None, ge=0)
    recovery: int | None = Field(default=None, ge=1)
    resend_interval: Duration | None = None
    max_reminders: int | None = Field(default=None, ge=0)
    flap_threshold: int | None = Field(default=None, ge=0)
    flap_window: PositiveDuration | None = None

    @field_validator("flap_threshold")
    @classmethod
    def _not_one(cls, value: int | None) -> int | None:
        if value == 1:
            raise ValueError("must be 0 (flap detection off) or at least 2")
        return value

    def policy_values(self) -> dict[str, Any]:
        """The policy keys that are set."""
        names = (
            "retries",
            "recovery",
            "resend_interval",
            "max_reminders",
            "flap_threshold",
            "flap_window",
        )
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


class _CheckModel(_Policy):
    name: str = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _visible(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a name needs more than spaces")
        return value.strip()


def _resolve(value: Path | None, info: ValidationInfo) -> Path | None:
    """A relative path is relative to the checks file; it must be a readable file."""
    if value is None:
        return None
    base = (info.context or {}).get("base")
    path = value.expanduser()
    if not path.is_absolute() and isinstance(base, Path):
        path = base / path
    if not path.is_file():
        raise ValueError(f"no such file: {str(path)!r}")
    return path


class _HttpModel(_CheckModel):
    type: Literal["http"]
    url: str
    method: Literal["GET", "HEAD"] = "GET"
    expect_status: list[int | str] | None = Field(default=None, min_length=1)
    max_latency: PositiveDuration | None = None
    body_contains: str | None = None
    body_regex: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    follow_redirects: bool = True
    ca_file: Path | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from ._http import parse_url  # noqa: PLC0415 - light: h11 itself loads only to fetch

        parse_url(value)
        return value

    @field_validator("expect_status")
    @classmethod
    def _statuses(cls, value: list[int | str] | None) -> list[int | str] | None:
        if value is None:
            return None
        for item in value:
            if isinstance(item, str):
                if not _STATUS_CLASS.match(item):
                    raise ValueError(f"{item!r} is neither a status code nor a class like '2xx'")
            elif not 100 <= item <= 599:
                raise ValueError(f"{item} is not a status code (100 to 599)")
        return value

    @field_validator("body_regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve(value, info)

    @model_validator(mode="after")
    def _body_needs_get(self) -> _HttpModel:
        if self.method == "HEAD" and (self.body_contains or self.body_regex):
            raise ValueError("body_contains and body_regex need method GET: HEAD has no body")
        return self

    def expanded_statuses(self) -> tuple[int, ...] | None:
        """The expected statuses as codes, classes expanded."""
        if self.expect_status is None:
            return None
        codes: list[int] = []
        for item in self.expect_status:
            if isinstance(item, int):
                codes.append(item)
            else:
                first = int(item[0]) * 100
                codes.extend(range(first, first + 100))
        return tuple(sorted(set(codes)))


class _TcpModel(_CheckModel):
    type: Literal["tcp"]
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)


class _TlsModel(_CheckModel):
    type: Literal["tls"]
    host: str = Field(min_length=1)
    port: int = Field(default=443, ge=1, le=65535)
    min_days: float = Field(default=14.0, ge=0)
    ca_file: Path | None = None
    server_name: str | None = None

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve(value, info)


class _CommandModel(_CheckModel):
    type: Literal["command"]
    command: str | list[str]
    ok_codes: list[int] = Field(default_factory=lambda: [0], min_length=1)
    cwd: Path | None = None

    @field_validator("command")
    @classmethod
    def _not_empty(cls, value: str | list[str]) -> str | list[str]:
        if not value or (isinstance(value, str) and not value.strip()):
            raise ValueError("the command is empty")
        return value


_AnyCheck = Annotated[
    _HttpModel | _TcpModel | _TlsModel | _CommandModel, Field(discriminator="type")
]


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    defaults: _Policy = Field(default_factory=_Policy)
    checks: list[_AnyCheck] = Field(min_length=1)


# -- loading ------------------------------------------------------------------------------


def load_config(path: Path) -> WatchConfig:
    """Read and validate a checks file.

    Args:
        path: the TOML file.

    Returns:
        The checks it describes.

    Raises:
        CheckConfigError: the file cannot be read, is not TOML, or describes
            checks wrongly; every problem is named with its line and field.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckConfigError([f"{path}: cannot read it: {exc}"]) from None
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> WatchConfig:
    """Validate the text of a checks file (see :func:`load_config`).

    Args:
        text: the TOML text.
        path: the file's path: shown in errors, and the base of relative paths.

    Returns:
        The checks it describes.

    Raises:
        CheckConfigError: what is wrong, with lines and fields.
    """
    lines = text.splitlines()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CheckConfigError([_toml_problem(str(exc), path, len(lines))]) from None
    try:
        model = _FileModel.model_validate(data, context={"base": path.parent})
    except ValidationError as exc:
        raise CheckConfigError(_problems(exc, path, lines)) from None
    problems = []
    seen: set[str] = set()
    for index, check in enumerate(model.checks):
        if check.name in seen:
            loc = ("checks", index, "name")
            problems.append(
                _place(path, lines, loc, f"{check.name!r} is the name of another check")
            )
        seen.add(check.name)
    if problems:
        raise CheckConfigError(problems)
    checks = []
    for index, check in enumerate(model.checks):
        try:
            checks.append(_build(check, model.defaults, path))
        except (ValueError, TypeError) as exc:  # noqa: PERF203 - one problem line per check
            # What the models let through but a check refuses.
            problems.append(_place(path, lines, ("checks", index), str(exc)))
    if problems:
        raise CheckConfigError(problems)
    return WatchConfig(path=path, checks=tuple(checks))


def _build(model: _CheckModel, defaults: _Policy, path: Path) -> Check:
    policy = CheckPolicy(**{**defaults.policy_values(), **model.policy_values()})
    common: dict[str, Any] = {
        "name": model.name,
        "interval": model.interval or defaults.interval or DEFAULT_INTERVAL,
        "timeout": model.timeout or defaults.timeout or DEFAULT_TIMEOUT,
        "policy": policy,
    }
    if isinstance(model, _HttpModel):
        return HttpCheck(
            **common,
            url=model.url,
            method=model.method,
            expect_status=model.expanded_statuses(),
            max_latency=model.max_latency,
            body_contains=model.body_contains,
            body_regex=model.body_regex,
            headers=model.headers,
            follow_redirects=model.follow_redirects,
            ca_file=model.ca_file,
        )
    if isinstance(model, _TcpModel):
        return TcpCheck(**common, host=model.host, port=model.port)
    if isinstance(model, _TlsModel):
        return TlsExpiryCheck(
            **common,
            host=model.host,
            port=model.port,
            min_days=model.min_days,
            ca_file=model.ca_file,
            server_name=model.server_name,
        )
    assert isinstance(model, _CommandModel)  # noqa: S101 - the union has no other member
    cwd = model.cwd
    if cwd is not None and not cwd.is_absolute():
        cwd = path.parent / cwd
    command = model.command if isinstance(model.command, str) else tuple(model.command)
    return CommandCheck(**common, command=command, ok_codes=tuple(model.ok_codes), cwd=cwd)


# -- errors with their places --------------------------------------------------------------


def _toml_problem(message: str, path: Path, line_count: int) -> str:
    at = _AT_LINE.search(message)
    if at is not None:
        return f"{path}:{at.group(1)}: {message[: at.start()]}"
    end = _AT_END.search(message)
    if end is not None:
        return f"{path}:{max(1, line_count)}: {message[: end.start()]} (at the end of the file)"
    return f"{path}: {message}"


def _problems(exc: ValidationError, path: Path, lines: list[str]) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(error["loc"])
        # The discriminated union adds the tag to the location: checks.2.http.url.
        loc = tuple(
            part
            for i, part in enumerate(loc)
            if not (i == 2 and loc[0] == "checks" and part in _KINDS)
        )
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, "type")
            message = f"must be one of {', '.join(map(repr, _KINDS))}"
        else:
            message = error["msg"].removeprefix("Value error, ")
        problems.append(_place(path, lines, loc, message))
    return problems


def _place(path: Path, lines: list[str], loc: tuple[Any, ...], message: str) -> str:
    """``file:line: field: message``, the line found by a simple scan of the text."""
    where = _dotted(loc)
    line = _line_of(lines, loc)
    place = f"{path}:{line}" if line is not None else f"{path}"
    return f"{place}: {where}: {message}" if where else f"{place}: {message}"


def _dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line_of(lines: list[str], loc: tuple[Any, ...]) -> int | None:
    """The 1-based line that ``loc`` points at, as far as a line scan can tell."""
    if not loc:
        return None
    head = loc[0]
    if head == "checks" and len(loc) >= 2 and isinstance(loc[1], int):
        start = _header_line(lines, r"\[\[\s*checks\s*\]\]", loc[1])
        if start is None:  # written as `checks = [{...}, ...]`: the best is that key
            return _key_line(lines, 0, "checks")
        return _field_line(lines, start, loc[2:]) or start + 1
    if head == "defaults":
        start = _header_line(lines, r"\[\s*defaults\s*\]", 0)
        if start is not None:
            return _field_line(lines, start, loc[1:]) or start + 1
    return _key_line(lines, 0, str(head))


def _header_line(lines: list[str], header: str, occurrence: int) -> int | None:
    """The 0-based index of the ``occurrence``-th line holding ``header``."""
    pattern = re.compile(rf"^\s*{header}\s*(#.*)?$")
    seen = 0
    for index, line in enumerate(lines):
        if pattern.match(line):
            if seen == occurrence:
                return index
            seen += 1
    return None


def _field_line(lines: list[str], start: int, rest: tuple[Any, ...]) -> int | None:
    if not rest or not isinstance(rest[0], str):
        return None
    return _key_line(lines, start + 1, rest[0])


def _key_line(lines: list[str], start: int, key: str) -> int | None:
    """The 1-based line of ``key = ...`` from ``start`` to the next table header."""
    pattern = re.compile(rf"^\s*([\"']?){re.escape(key)}\1\s*[=.]")
    for index in range(start, len(lines)):
        line = lines[index]
        if _ANY_HEADER.match(line):
            return None  # the next table: the key is not written in this one
        if pattern.match(line):
            return index + 1
    return None
