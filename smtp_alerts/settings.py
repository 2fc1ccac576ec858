"""Settings: every knob of smtp-alerts, read from ``SMTP_ALERTS_*`` variables.

A wrong or missing value fails when :class:`Settings` is built, with a
:class:`~smtp_alerts.errors.ConfigurationError` that names the environment
variable and says what is wrong; the offending value is never echoed for a
secret. Durations accept a number of seconds or ``500ms``, ``30s``, ``5m``,
``4h``, ``1d``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

# Re-exported: smtp_alerts.settings.Security and its helpers stay where users found them.
from ._environment import (
    DEFAULT_GROUP_INTERVAL,
    DEFAULT_GROUP_WAIT,
    DEFAULT_MAX_PER_DAY,
    DEFAULT_MAX_PER_HOUR,
    DEFAULT_QUEUE_SIZE,
    DEFAULT_REPEAT_INTERVAL,
    ENV_PREFIX,
    QuickSettings,
    check_address,
    consistency_problem,
    default_spool_path,
    environment_values,
    host_problem,
    parse_duration,
    split_list,
    url_problem,
    variable_name,
)
from ._util.net import Security, is_loopback, security_for_port
from ._util.redis_url import parse_redis_url
from .errors import ConfigurationError

__all__ = [
    "ENV_PREFIX",
    "Security",
    "Settings",
    "is_loopback",
    "parse_duration",
    "security_for_port",
]

MAX_RECIPIENTS = 100

_SECRET_FIELDS = frozenset(
    {"password", "password_file", "fallback_urls", "backup_password", "redis_url"}
)

Duration = Annotated[float, BeforeValidator(parse_duration)]
AddressList = Annotated[list[str], NoDecode, BeforeValidator(split_list)]
UrlList = Annotated[list[SecretStr], NoDecode, BeforeValidator(split_list)]


class Settings(BaseSettings):
    """The settings behind every part of smtp-alerts.

    Each field is read from the environment variable ``SMTP_ALERTS_<NAME>``
    (``SMTP_ALERTS_FROM`` for :attr:`from_`) unless given as a keyword
    argument. Construction fails with a :class:`ConfigurationError` naming the
    variable when a value is missing or wrong.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        validate_default=True,
    )

    host: str = Field(default="smtp.gmail.com", min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    security: Security | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    from_: str | None = Field(
        default=None, validation_alias=AliasChoices(f"{ENV_PREFIX}FROM", "from_", "from")
    )
    to: AddressList = Field(default_factory=list)
    ca_file: Path | None = None
    timeout: Duration = Field(default=30.0, gt=0)
    group_wait: Duration = DEFAULT_GROUP_WAIT
    group_interval: Duration = DEFAULT_GROUP_INTERVAL
    repeat_interval: Duration = DEFAULT_REPEAT_INTERVAL
    fallback_urls: UrlList = Field(default_factory=list)
    spool_dir: Path | None = None
    auth_failure_threshold: int = Field(default=3, ge=1)
    auth_failure_window: Duration = Field(default=600.0, gt=0)
    max_per_hour: int = Field(default=DEFAULT_MAX_PER_HOUR, ge=1)
    max_per_day: int = Field(default=DEFAULT_MAX_PER_DAY, ge=1)
    shutdown_timeout: Duration = 10.0
    subject_prefix: str | None = None
    queue_size: int = Field(default=DEFAULT_QUEUE_SIZE, ge=10)
    alternate_port: int | None = Field(default=None, ge=0, le=65535)
    backup_host: str | None = None
    backup_port: int = Field(default=587, ge=1, le=65535)
    backup_security: Security | None = None
    backup_username: str | None = None
    backup_password: SecretStr | None = None
    redis_url: SecretStr | None = None

    def __init__(self, **values: Any) -> None:
        # The environment is read by us (smtp_alerts._environment), not by
        # pydantic-settings' sources: an engine builds its settings on its own
        # thread from the snapshot its start-up checked (see from_environment),
        # so both judge the very same values.
        snapshot: Mapping[str, str] | None = values.pop("_environment", None)
        from_environment = environment_values(os.environ) if snapshot is None else dict(snapshot)
        if "from" in values:  # the keyword FROM is spelled from_ or, through **, from
            values["from_"] = values.pop("from")
        try:
            super().__init__(**{**from_environment, **values})
        except ValidationError as exc:
            # ``from None``: pydantic's own message echoes the input, which may be a secret.
            raise ConfigurationError(_explain(exc)) from None

    @classmethod
    def from_environment(cls, values: Mapping[str, str]) -> Settings:
        """The settings from a snapshot of the environment, read earlier.

        Args:
            values: from :func:`smtp_alerts._environment.environment_values`,
                keyed by field.

        Raises:
            ConfigurationError: a value is missing or wrong (names the variable).
        """
        return cls(_environment=values)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],  # noqa: ARG003 - pydantic-settings' hook signature
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - read by __init__ instead
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """pydantic-settings' sources, but the environment's values come in as keyword arguments.

        :meth:`__init__` merges them under the keywords (keywords win, as
        before); a ``_env_file`` or ``_secrets_dir`` given still counts after both.
        """
        return (init_settings, dotenv_settings, file_secret_settings)

    @field_validator("host")
    @classmethod
    def _no_control_characters(cls, value: str) -> str:
        problem = host_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("to")
    @classmethod
    def _valid_recipients(cls, value: list[str]) -> list[str]:
        for address in value:
            check_address(address)
        return list(dict.fromkeys(value))  # a recipient listed twice gets one copy

    @field_validator("username", "from_")
    @classmethod
    def _valid_address(cls, value: str | None) -> str | None:
        if value is not None:
            check_address(value)
        return value

    @field_validator("fallback_urls")
    @classmethod
    def _url_shaped(cls, value: list[SecretStr]) -> list[SecretStr]:
        for position, url in enumerate(value, 1):
            problem = url_problem(position, url.get_secret_value())
            if problem is not None:
                raise ValueError(problem)
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if importlib.util.find_spec("redis") is None:  # looked up, not imported
            raise ValueError("needs redis-py: pip install 'smtp-alerts[redis]'")
        target = parse_redis_url(value.get_secret_value())
        if target.clear_text_credential:
            raise ValueError(
                f"would send the Redis password in clear text to {target.where}; "
                "use rediss:// (TLS), or a Redis on this machine"
            )
        return value

    @field_validator("ca_file")
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no readable file at {str(value)!r}")
        return value

    @field_validator("password_file")
    @classmethod
    def _readable_password_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            # The value is not shown: it is often the password itself, set
            # here by mistake instead of in PASSWORD.
            raise ValueError(
                "no readable file at that path (not shown: it may be the password itself); "
                "set it to the path of a file whose first line is the app password, "
                f"or put the password in {ENV_PREFIX}PASSWORD"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        problem = consistency_problem(
            to=bool(self.to),
            from_=self.from_ is not None,
            username=self.username is not None,
            password=self.password is not None,
            password_file=self.password_file is not None,
        )
        if problem is not None:
            raise ValueError(problem)
        if self.password is not None or self.password_file is not None:
            self._refuse_clear_text("the password")
        if self.backup_host is not None:
            if self.backup_password is not None and self.backup_username is None:
                raise ValueError(f"{ENV_PREFIX}BACKUP_USERNAME is required with a backup password")
            if (
                self.effective_backup_security == "none"
                and self.backup_password is not None
                and not is_loopback(self.backup_host)
            ):
                raise ValueError(
                    f"{ENV_PREFIX}BACKUP_SECURITY=none would send the backup password in clear "
                    f"text to {self.backup_host}"
                )
        return self

    def check_token_provider(self) -> None:
        """Refuse an XOAUTH2 token provider where the token would cross in clear text.

        The settings cannot see a token provider (it is code, given to the
        engine), so the engine calls this as it is built.

        Raises:
            ConfigurationError: ``SECURITY=none`` to a host that is not this machine.
        """
        try:
            self._refuse_clear_text("the OAuth token")
        except ValueError as exc:
            raise ConfigurationError(f"invalid smtp-alerts settings:\n  {exc}") from None

    def _refuse_clear_text(self, what: str) -> None:
        """Raise ValueError when ``what`` would cross an unencrypted connection to another host."""
        if self.effective_security == "none" and not is_loopback(self.host):
            raise ValueError(
                f"{ENV_PREFIX}SECURITY=none would send {what} in clear text to "
                f"{self.host}; use starttls (port 587) or tls (port 465)"
            )

    def quick(self) -> QuickSettings:
        """What an engine needs until it has its settings, taken from these."""
        return QuickSettings(
            sender=self.sender,
            to=tuple(self.to),
            subject_prefix=self.subject_prefix,
            queue_size=self.queue_size,
            spool_dir=self.spool_dir,
            fallback=bool(self.fallback_urls),
            group_wait=self.group_wait,
            group_interval=self.group_interval,
            repeat_interval=self.repeat_interval,
            max_per_hour=self.max_per_hour,
            max_per_day=self.max_per_day,
            redis=self.redis_url is not None,
        )

    @property
    def effective_backup_security(self) -> Security:
        """``BACKUP_SECURITY``, or from ``BACKUP_PORT``: 465 ``tls``, else ``starttls``."""
        if self.backup_security is not None:
            return self.backup_security
        return security_for_port(self.backup_port)

    @property
    def effective_alternate_port(self) -> int | None:
        """The second port tried on ``HOST``: ``ALTERNATE_PORT``, else Gmail's other port.

        For smtp.gmail.com the other of 587 and 465 (for networks that block one
        of them); for other hosts none unless ``ALTERNATE_PORT`` names one; 0
        turns it off.
        """
        if self.alternate_port is not None:
            return self.alternate_port or None
        if self.host == "smtp.gmail.com" and self.port in (587, 465):
            return 465 if self.port == 587 else 587
        return None

    @property
    def effective_security(self) -> Security:
        """The security in force: the explicit setting, or ``tls`` on 465, else ``starttls``."""
        if self.security is not None:
            return self.security
        return security_for_port(self.port)

    @property
    def sender(self) -> str:
        """The envelope and From: address (``FROM``, else ``USERNAME``)."""
        sender = self.from_ or self.username
        assert sender is not None  # guaranteed by _consistent  # noqa: S101
        return sender

    @property
    def spool_path(self) -> Path:
        """``SPOOL_DIR``, or else the user's state directory for smtp-alerts."""
        return self.spool_dir if self.spool_dir is not None else default_spool_path()

    def read_password(self) -> str | None:
        """The app password: ``PASSWORD``, or the first line of ``PASSWORD_FILE`` read now."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            # The first line only: a comment or a second value below it must
            # not be sent (a wrong password counts toward Gmail's lockout).
            lines = self.password_file.read_text(encoding="utf-8").strip().splitlines()
            return lines[0].strip() if lines else ""
        return None


def _env_name(loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "settings"
    name = str(loc[0])
    if name.upper().startswith(ENV_PREFIX):
        return name.upper()
    return variable_name(name)


def _explain(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        message = error["msg"].removeprefix("Value error, ")
        if error["loc"]:
            field = str(error["loc"][0])
            if field in _SECRET_FIELDS:
                message = message.split(":", 1)[0] if "'" in message else message
            lines.append(f"{_env_name(error['loc'])}: {message}")
        else:
            lines.append(message)
    return "invalid smtp-alerts settings:\n  " + "\n  ".join(lines)
