"""Configuration: defaults < ``config/kashq.toml`` < ``.env`` < ``KASHQ_*`` < CLI flags.

The TOML file is ``config/kashq.toml`` in the working directory, or the path
in the ``KASHQ_CONFIG`` environment variable (read from the environment only,
since ``.env`` is itself one of the sources being located; a path that does not
exist is an error). Every bad value becomes one :class:`ConfigError` line
naming the setting and where its value came from. Mistyped names are caught
too: an unknown key in the TOML file or given in code is an error; an unknown
``KASHQ_*`` variable (in the environment or ``.env``) is a warning, since
environments carry variables kashq does not own (a Kubernetes service named
``kashq`` adds ``KASHQ_PORT``...). ``repr(settings)`` hides passwords and secrets.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
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

from kashq.envelope import error_text
from kashq.exceptions import ConfigError
from kashq.names import QUEUE_NAME_RULE, is_queue_name
from kashq.redact import HIDDEN, hide_password
from kashq.retry import parse_backoff

log = logging.getLogger(__name__)

DEFAULT_CONFIG_FILE = Path("config") / "kashq.toml"
CONNECTIONS = ("database", "redis", "sharded", "memory", "sync")
SHARD_STRATEGIES = ("hash", "round_robin", "least_loaded")
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")

Connection = Literal["database", "redis", "sharded", "memory", "sync"]

ENV_PREFIX = "KASHQ_"
CONFIG_VARIABLE = "KASHQ_CONFIG"
# KASHQ_* variables that are not settings: the config file's path, and the
# test suite's and benchmarks' own.
_NOT_SETTINGS = (CONFIG_VARIABLE,)
_RESERVED_PREFIXES = ("KASHQ_TEST_", "KASHQ_BENCH_")
_URL_SETTINGS = ("redis_url", "database_url")
_WEBHOOK_SETTINGS = ("slack_webhook_url", "alert_webhook_url")
_SECRET_SETTINGS = ("alert_webhook_secret",)
# Lowercase only: PostgreSQL folds unquoted names, and MySQL's case rules depend on the OS.
_TABLE_PREFIX = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class Settings(BaseSettings):
    """Every kashq setting; the environment name is ``KASHQ_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="KASHQ_", env_file=".env", extra="ignore", validate_default=True
    )

    connection: Connection = Field("database", description="connection used when none is named")
    queue: str = Field(
        "default", description="queue of jobs that name none; commands' default `--queue`"
    )
    max_retry: int = Field(3, ge=1, description="total attempts before a job is failed")
    backoff: str = Field(
        "1",
        description=(
            "wait before retries: seconds `s` (retry n waits s * n), a list `1,5,30` "
            "(the last repeats) or `exponential[:base=1,factor=2,max=600,jitter=0]`"
        ),
    )
    retry_after: float = Field(30.0, gt=0, description="lease of a reserved job, seconds")
    timeout: float | None = Field(
        25.0,
        gt=0,
        description="seconds an attempt may run (`none`: no limit); keep it below `retry_after`",
    )
    prefetch: int | None = Field(
        None,
        ge=1,
        le=1000,
        description=(
            "most jobs a worker reserves at once while jobs are short (1: one at a time;"
            " none: 64 on the database connection, 8 on Redis)"
        ),
    )
    imports: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "modules the commands import: job classes, schedules, webhook routes (comma-separated)"
        ),
    )
    prefix: str = Field("kashq", description="prefix of every Redis key")
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", description="Redis URL; `redis+cluster://` for a Redis Cluster"
    )
    shards: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Redis URLs of the `sharded` connection (comma-separated)"
    )
    shard_strategy: Literal["hash", "round_robin", "least_loaded"] = Field(
        "least_loaded", description="how the `sharded` connection places new jobs"
    )
    database_url: str = Field(
        "sqlite:///kashq.sqlite",
        description="SQLAlchemy URL of the `database` connection's jobs and of `failed_jobs`",
    )
    after_commit: bool = Field(
        False,
        description=(
            "dispatches given a Session with `using=` are pushed once it commits (dropped if "
            "it rolls back) instead of being written in its transaction"
        ),
    )
    relay_outbox: bool = Field(
        True,
        description=(
            "`queue:work` on a Redis connection also relays the outbox: the jobs dispatched "
            "in transactions (`using=`)"
        ),
    )
    table_prefix: str = Field(
        "", description="prefix of every kashq table name, e.g. `app_` gives `app_failed_jobs`"
    )
    result_ttl: float = Field(
        86_400.0,
        ge=0,
        description="seconds a job's result is kept for `result()` and `queue:job` (0: none)",
    )
    keep_completed: float = Field(
        0.0,
        ge=0,
        description=(
            "seconds a completed, cancelled or expired job stays in its queue's recent jobs "
            "(0: none kept, the default: keeping them costs about 5% of a no-op drain)"
        ),
    )
    keep_completed_max: int = Field(
        10_000, ge=1, description="recent jobs kept per queue and outcome (the newest)"
    )
    keep_history: float = Field(
        86_400.0,
        ge=0,
        description=(
            "seconds the metrics history (jobs, failures, run and wait times per minute, "
            "queue and job type, for the dashboard) is kept (0: none)"
        ),
    )
    history_series_max: int = Field(
        500,
        ge=1,
        description="(queue, job type) series one minute of the metrics history holds",
    )
    cancel_grace: float = Field(
        10.0,
        ge=0,
        description=(
            "seconds a cancelled running job has to stop at a check before `queue:work` "
            "kills its process"
        ),
    )
    events: bool = Field(True, description="record every job's lifecycle in the event store")
    events_max_len: int = Field(
        100_000, ge=100, description="events kept in a connection's Redis stream (approximately)"
    )
    tracing: bool = Field(
        True,
        description=(
            "OpenTelemetry spans for dispatches and attempts, when `opentelemetry-api` is "
            "installed (the `otel` extra) and the application sets a tracer provider"
        ),
    )
    slack_webhook_url: str | None = Field(
        None,
        description="Slack incoming webhook told of every job that fails for good",
    )
    slack_channel: str | None = Field(None, description="channel for those Slack alerts")
    alert_webhook_url: str | None = Field(
        None,
        description="URL that gets a JSON POST per job that fails for good",
    )
    alert_webhook_secret: str | None = Field(
        None, description="key signing those POSTs (HMAC-SHA256)"
    )
    alert_timeout: float = Field(5.0, gt=0, description="seconds an alerter may take")
    timezone: str = Field("UTC", min_length=1, description="time zone of recurring schedules")

    def __init__(self, **values: Any) -> None:
        _refuse_unknown(values, "Settings()")
        super().__init__(**values)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # repr() and str() go through here: never show a password or a secret.
        for name, value in super().__repr_args__():
            yield name, _shown(name, value)

    @field_validator("queue")
    @classmethod
    def _check_queue(cls, value: str) -> str:
        if not is_queue_name(value):
            raise ValueError(f"must be one queue name of {QUEUE_NAME_RULE}")
        return value

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not value or any(c.isspace() or c in "{}" for c in value):
            raise ValueError("must be non-empty, without whitespace or braces")
        return value

    @field_validator("table_prefix")
    @classmethod
    def _check_table_prefix(cls, value: str) -> str:
        if value and not _TABLE_PREFIX.match(value):
            raise ValueError(
                "must be up to 32 lowercase letters, digits and underscores, starting with a letter"
            )
        return value

    @field_validator("imports", "shards", mode="before")
    @classmethod
    def _split_imports(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("backoff", mode="before")
    @classmethod
    def _check_backoff(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = f"{value:g}"
        if isinstance(value, str):
            parse_backoff(value)  # its ValueError names what is wrong
        return value

    @field_validator("timeout", "prefetch", mode="before")
    @classmethod
    def _none_of(cls, value: Any) -> Any:
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
        return (init_settings, env_settings, dotenv_settings, _TomlSource(settings_cls))


class _TomlSource(TomlConfigSettingsSource):
    """The TOML file, whose keys must all be settings."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        path = config_file()
        super().__init__(settings_cls, toml_file=path)
        for key in self.toml_data:
            if key not in Settings.model_fields:
                raise ConfigError(f"unknown setting {key!r} in {path}{_did_you_mean(key)}")


def config_file() -> Path:
    """The TOML file settings are read from: ``KASHQ_CONFIG``'s, which must exist, or
    ``config/kashq.toml``, which need not."""
    named = os.environ.get(CONFIG_VARIABLE)
    if not named:
        return DEFAULT_CONFIG_FILE
    path = Path(named)
    if not path.is_file():
        raise ConfigError(
            f"{CONFIG_VARIABLE} names {path}, which is not a file "
            f"(unset it to use {DEFAULT_CONFIG_FILE} if it exists)"
        )
    return path


# An app framework's settings (Django's settings.KASHQ) and where they come from.
_app_settings: dict[str, Any] = {}
_app_origin = ""


def use_app_settings(settings: Mapping[str, Any], origin: str) -> None:
    """Make ``settings`` the base of every :func:`load_settings` in this process.

    An app framework's own settings (``origin``: "settings.KASHQ") win over the
    environment and ``kashq.toml``, like ``kashq.configure()``'s, and lose to the
    command line's. Checked now: an unknown name or a bad value is a ConfigError.
    """
    global _app_settings, _app_origin
    values = {key: value for key, value in settings.items() if value is not None}
    _refuse_unknown(values, origin)
    _app_settings, _app_origin = {}, ""
    load_settings(origin=origin, **values)
    _app_settings, _app_origin = values, origin


def load_settings(*, origin: str = "load_settings()", **overrides: Any) -> Settings:
    """Settings from every source; ``overrides`` (CLI flags, code) win. None values are ignored.

    ``origin`` names where the overrides come from ("the command line",
    "kashq.configure()"), for error messages. Unknown ``KASHQ_*`` variables
    are logged once per process as a warning. An app's settings
    (:func:`use_app_settings`) come under the overrides.
    """
    _refuse_unknown(overrides, origin)
    given = {key: value for key, value in overrides.items() if value is not None}
    origins = dict.fromkeys(_app_settings, _app_origin) | dict.fromkeys(given, origin)
    try:
        settings = Settings(**(_app_settings | given))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origins)) from None
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML
        raise ConfigError(f"cannot read config file {config_file()}: {_line(exc)}") from None
    _warn_unknown_variables()
    return settings


def env_name(setting: str) -> str:
    """The environment variable of ``setting``: ``KASHQ_<NAME>``."""
    return ENV_PREFIX + setting.upper()


def _describe(exc: ValidationError, origins: Mapping[str, str]) -> str:
    err = exc.errors(include_url=False)[0]
    name = str(err["loc"][0]) if err["loc"] else "settings"
    value = err.get("input")
    if name.endswith("_url") and isinstance(value, str):
        value = hide_password(value)
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    message = error_text(err)
    if name == "connection":
        message = "must be one of " + ", ".join(CONNECTIONS)
    elif name == "shard_strategy":
        message = "must be one of " + ", ".join(SHARD_STRATEGIES)
    elif name == "shards":
        shown = ""  # the message names the bad URL, its password hidden
    return f"invalid setting {name} (from {_source_of(name, origins)}): {message}{shown}"


def _source_of(name: str, origins: Mapping[str, str]) -> str:
    """Where the value of setting ``name`` came from, highest source first (``origins``:
    the given settings' sources by name)."""
    if name in origins:
        return origins[name]
    variable = env_name(name)
    if any(key.upper() == variable for key in os.environ):
        return f"environment variable {variable}"
    if any(key.upper() == variable for key in _dotenv()):
        return f"{variable} in .env"
    return f"{name} in {config_file()}"


def _dotenv() -> dict[str, str | None]:
    from dotenv import dotenv_values  # pydantic-settings' own dependency

    path = Path(".env")
    return dotenv_values(path) if path.is_file() else {}


def _refuse_unknown(values: Iterable[str], origin: str) -> None:
    for key in values:
        if not key.startswith("_") and key not in Settings.model_fields:
            raise ConfigError(f"unknown setting {key!r} given to {origin}{_did_you_mean(key)}")


_warned: set[str] = set()


def _warn_unknown_variables() -> None:
    """Log once per process each ``KASHQ_*`` variable that names no setting."""
    known = {env_name(name) for name in Settings.model_fields} | set(_NOT_SETTINGS)
    found = [(key, "the environment") for key in os.environ]
    found += [(key, ".env") for key in _dotenv()]
    for key, where in found:
        variable = key.upper()
        if (
            not variable.startswith(ENV_PREFIX)
            or variable in known
            or variable.startswith(_RESERVED_PREFIXES)
            or variable in _warned
        ):
            continue
        _warned.add(variable)
        log.warning("unknown setting %s in %s, ignored%s", key, where, variable_guess(variable))


def setting_of(variable: str) -> str | None:
    """The setting ``variable`` names (``KASHQ_MAX_RETRY``: ``max_retry``), or None."""
    name = variable.removeprefix(ENV_PREFIX).lower()
    known = name in Settings.model_fields and env_name(name) == variable
    return name if known else None


def variable_guess(variable: str) -> str:
    """`` (did you mean KASHQ_<NAME>?)`` for the setting a mistyped ``KASHQ_*`` name is
    close to, or ``""``."""
    close = _closest(variable.removeprefix(ENV_PREFIX))
    return f" (did you mean {env_name(close)}?)" if close else ""


def _did_you_mean(name: str) -> str:
    close = _closest(name)
    return f" (did you mean {close!r}?)" if close else ""


def _closest(name: str) -> str | None:
    close = difflib.get_close_matches(name.lower(), Settings.model_fields, n=1, cutoff=0.6)
    return close[0] if close else None


def _shown(name: str | None, value: Any) -> Any:
    """A setting's value as ``repr(settings)`` shows it: no password, no secret."""
    if value is None or name is None:
        return value
    if name in _URL_SETTINGS:
        return hide_password(value)
    if name == "shards":
        return [hide_password(url) for url in value]
    if name in _WEBHOOK_SETTINGS:  # the path or query of a webhook URL is its secret
        scheme, _, rest = str(value).partition("://")
        return f"{scheme}://{rest.split('/', 1)[0].split('?', 1)[0]}/{HIDDEN}"
    if name in _SECRET_SETTINGS:
        return HIDDEN
    return value


def _line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
