"""Configuration: defaults < ``config/kashq.toml`` < ``.env`` < ``KASHQ_*`` < CLI flags.

The TOML file is ``config/kashq.toml`` in the working directory, or the path
in the ``KASHQ_CONFIG`` environment variable (read from the environment only,
since ``.env`` is itself one of the sources being located). Every bad value
becomes one :class:`ConfigError` line naming the setting.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from kashq.exceptions import ConfigError
from kashq.redact import hide_password

DEFAULT_CONFIG_FILE = Path("config") / "kashq.toml"
CONNECTIONS = ("database", "redis", "sharded", "memory", "sync")
SHARD_STRATEGIES = ("hash", "round_robin", "least_loaded")
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")

Connection = Literal["database", "redis", "sharded", "memory", "sync"]


class Settings(BaseSettings):
    """Every kashq setting; the environment name is ``KASHQ_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="KASHQ_", env_file=".env", extra="ignore", validate_default=True
    )

    connection: Connection = Field("database", description="default connection")
    queue: str = Field("default", min_length=1, description="default queue name")
    max_retry: int = Field(3, ge=1, description="total attempts before a job is failed")
    backoff: float = Field(1.0, ge=0, description="linear backoff base, seconds")
    retry_after: float = Field(30.0, gt=0, description="lease of a reserved job, seconds")
    timeout: float | None = Field(25.0, gt=0, description="seconds one attempt may run")
    prefetch: int = Field(
        8, ge=1, le=1000, description="most jobs a worker reserves at once while jobs are short"
    )
    imports: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="modules holding job classes"
    )
    prefix: str = Field("kashq", min_length=1, pattern=r"^[^\s{}]+$", description="key prefix")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis connection URL")
    shards: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Redis URLs of the sharded connection, comma-separated"
    )
    shard_strategy: Literal["hash", "round_robin", "least_loaded"] = Field(
        "least_loaded", description="how the sharded connection places new jobs"
    )
    database_url: str = Field("sqlite:///kashq.sqlite", description="SQLAlchemy database URL")
    table_prefix: str = Field(
        "",
        pattern=r"^([a-z][a-z0-9_]{0,31})?$",
        description="prefix of every kashq table name in the database, e.g. app_",
    )
    events: bool = Field(True, description="record every job's lifecycle in the event store")
    events_max_len: int = Field(
        100_000, ge=100, description="events kept per Redis stream (approximate trimming)"
    )
    slack_webhook_url: str | None = Field(None, description="Slack incoming webhook for alerts")
    slack_channel: str | None = Field(None, description="Slack channel for alerts")
    alert_webhook_url: str | None = Field(None, description="URL that gets a JSON POST per alert")
    alert_webhook_secret: str | None = Field(None, description="HMAC-SHA256 key signing alerts")
    alert_timeout: float = Field(5.0, gt=0, description="seconds an alerter may take")
    timezone: str = Field("UTC", min_length=1, description="time zone of recurring schedules")

    @field_validator("imports", "shards", mode="before")
    @classmethod
    def _split_imports(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _none_timeout(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("", "none", "null"):
            return None
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if not value.startswith(_REDIS_SCHEMES):
            raise ValueError("must start with " + ", ".join(_REDIS_SCHEMES))
        return value

    @field_validator("shards")
    @classmethod
    def _check_shards(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(_REDIS_SCHEMES[:3]):
                shown = hide_password(url)
                raise ValueError(f"{shown!r} must start with redis://, rediss:// or unix://")
        return value

    @field_validator("slack_webhook_url", "alert_webhook_url")
    @classmethod
    def _check_http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone such as UTC or Europe/Paris") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("must be a SQLAlchemy URL such as sqlite:///kashq.sqlite")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file())
        return (init_settings, env_settings, dotenv_settings, toml)


def config_file() -> Path:
    """The TOML file settings are read from (it need not exist)."""
    return Path(os.environ.get("KASHQ_CONFIG") or DEFAULT_CONFIG_FILE)


def load_settings(**overrides: Any) -> Settings:
    """Settings from every source; ``overrides`` (CLI flags) win. None values are ignored."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML
        raise ConfigError(f"cannot read config file {config_file()}: {exc}") from None


def _describe(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    name = str(err["loc"][0]) if err["loc"] else "settings"
    given = err.get("input")
    if name.endswith("_url") and isinstance(given, str):
        given = hide_password(given)
    shown = "" if isinstance(given, dict) else f" (got {given!r})"
    message = err["msg"]
    if name == "connection":
        message = "must be one of " + ", ".join(CONNECTIONS)
    elif name == "shard_strategy":
        message = "must be one of " + ", ".join(SHARD_STRATEGIES)
    elif name == "shards":
        shown = ""  # the message names the bad URL, its password hidden
    elif name == "table_prefix":
        message = "up to 32 lowercase letters, digits and underscores, starting with a letter"
    return f"invalid setting {name} (KASHQ_{name.upper()}): {message}{shown}"
