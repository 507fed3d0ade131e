"""Tests for ``kashq.config``: defaults, the layered sources and one-line errors.

Precedence, lowest to highest: defaults < ``config/kashq.toml`` (or the file in
``KASHQ_CONFIG``) < ``.env`` in the working directory < ``KASHQ_*`` environment
variables < keyword overrides given to :func:`kashq.load_settings`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import kashq
from kashq import ConfigError, KashqError, Settings, config, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No KASHQ_* variable from the real environment, and an empty working directory."""
    for name in list(os.environ):
        if name.upper().startswith("KASHQ_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write_toml(directory: Path, text: str) -> Path:
    path = directory / "config" / "kashq.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_dotenv(directory: Path, text: str) -> Path:
    path = directory / ".env"
    path.write_text(text)
    return path


def assert_one_line(message: str) -> None:
    assert message, "error message is empty"
    assert "\n" not in message and "\r" not in message, f"not one line: {message!r}"


# --------------------------------------------------------------------------- defaults


def test_defaults_without_any_source() -> None:
    settings = load_settings()

    assert isinstance(settings, Settings)
    assert settings.connection == "database"
    assert settings.queue == "default"
    assert settings.max_retry == 3
    assert settings.backoff == "1"
    assert settings.retry_after == 30
    assert settings.timeout == 25
    assert settings.imports == []
    assert settings.prefix == "kashq"


def test_default_urls_are_valid_redis_and_sqlalchemy_urls() -> None:
    settings = load_settings()

    assert settings.redis_url.startswith("redis://")
    assert "://" in settings.database_url


def test_default_imports_list_is_not_shared_between_instances() -> None:
    first = load_settings()
    first.imports.append("mutated")

    assert load_settings().imports == []


def test_missing_default_config_file_is_not_an_error() -> None:
    assert not (Path("config") / "kashq.toml").exists()

    assert load_settings().queue == "default"


def test_missing_config_file_named_by_kashq_config_is_one_line_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "does-not-exist.toml"
    monkeypatch.setenv("KASHQ_CONFIG", str(missing))

    with pytest.raises(ConfigError) as caught:
        load_settings()

    message = str(caught.value)
    assert_one_line(message)
    assert "KASHQ_CONFIG" in message
    assert str(missing) in message


# --------------------------------------------------------------------------- precedence


def test_toml_file_overrides_defaults(tmp_path: Path) -> None:
    write_toml(
        tmp_path,
        'connection = "sync"\nqueue = "from-toml"\nmax_retry = 7\nbackoff = 2.5\n'
        'retry_after = 45\ntimeout = 12\nprefix = "app"\n',
    )

    settings = load_settings()

    assert settings.connection == "sync"
    assert settings.queue == "from-toml"
    assert settings.max_retry == 7
    assert settings.backoff == "2.5"
    assert settings.retry_after == 45
    assert settings.timeout == 12
    assert settings.prefix == "app"


def test_kashq_config_env_var_points_at_another_toml_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_toml(tmp_path, 'queue = "from-default-location"\n')
    other = tmp_path / "elsewhere" / "settings.toml"
    other.parent.mkdir()
    other.write_text('queue = "from-kashq-config"\n')
    monkeypatch.setenv("KASHQ_CONFIG", str(other))

    assert load_settings().queue == "from-kashq-config"


def test_toml_file_is_looked_up_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    write_toml(project, 'queue = "project-queue"\n')
    (tmp_path / "elsewhere").mkdir()

    monkeypatch.chdir(tmp_path / "elsewhere")
    assert load_settings().queue == "default"

    monkeypatch.chdir(project)
    assert load_settings().queue == "project-queue"


def test_dotenv_file_overrides_toml_file(tmp_path: Path) -> None:
    write_toml(tmp_path, 'queue = "from-toml"\nmax_retry = 7\n')
    write_dotenv(tmp_path, "KASHQ_QUEUE=from-dotenv\n")

    settings = load_settings()

    assert settings.queue == "from-dotenv"
    assert settings.max_retry == 7  # not in .env: the TOML value survives


def test_dotenv_file_overrides_defaults(tmp_path: Path) -> None:
    write_dotenv(tmp_path, "KASHQ_MAX_RETRY=9\nKASHQ_TIMEOUT=5\nUNRELATED=1\n")

    settings = load_settings()

    assert settings.max_retry == 9
    assert settings.timeout == 5


def test_env_var_overrides_dotenv_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_dotenv(tmp_path, "KASHQ_QUEUE=from-dotenv\nKASHQ_BACKOFF=4\n")
    monkeypatch.setenv("KASHQ_QUEUE", "from-env")

    settings = load_settings()

    assert settings.queue == "from-env"
    assert settings.backoff == "4"  # not in the environment: the .env value survives


def test_env_var_overrides_toml_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_toml(tmp_path, 'queue = "from-toml"\nmax_retry = 7\n')
    monkeypatch.setenv("KASHQ_MAX_RETRY", "11")

    settings = load_settings()

    assert settings.max_retry == 11
    assert settings.queue == "from-toml"


def test_env_vars_are_parsed_to_the_setting_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KASHQ_MAX_RETRY", "5")
    monkeypatch.setenv("KASHQ_BACKOFF", "0.25")
    monkeypatch.setenv("KASHQ_RETRY_AFTER", "90")
    monkeypatch.setenv("KASHQ_CONNECTION", "sync")

    settings = load_settings()

    assert settings.max_retry == 5
    assert isinstance(settings.max_retry, int)
    assert settings.backoff == "0.25"
    assert settings.retry_after == 90.0
    assert settings.connection == "sync"


def test_keyword_override_beats_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KASHQ_QUEUE", "from-env")
    monkeypatch.setenv("KASHQ_MAX_RETRY", "11")

    settings = load_settings(queue="from-flag")

    assert settings.queue == "from-flag"
    assert settings.max_retry == 11


def test_keyword_override_beats_every_lower_layer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_toml(tmp_path, 'prefix = "toml"\n')
    write_dotenv(tmp_path, "KASHQ_PREFIX=dotenv\n")
    monkeypatch.setenv("KASHQ_PREFIX", "env")

    assert load_settings(prefix="flag").prefix == "flag"


def test_each_setting_comes_from_its_highest_layer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_toml(
        tmp_path,
        'queue = "toml"\nmax_retry = 2\nbackoff = 2.0\nretry_after = 20\nprefix = "toml"\n',
    )
    write_dotenv(tmp_path, "KASHQ_MAX_RETRY=4\nKASHQ_BACKOFF=4.0\nKASHQ_RETRY_AFTER=40\n")
    monkeypatch.setenv("KASHQ_BACKOFF", "6.0")
    monkeypatch.setenv("KASHQ_RETRY_AFTER", "60")

    settings = load_settings(retry_after=80)

    assert settings.timeout == 25  # default
    assert settings.queue == "toml"
    assert settings.prefix == "toml"
    assert settings.max_retry == 4  # .env
    assert settings.backoff == "6.0"  # environment
    assert settings.retry_after == 80  # keyword override


def test_none_override_is_ignored_and_keeps_default() -> None:
    settings = load_settings(max_retry=None, queue=None, timeout=None)

    assert settings.max_retry == 3
    assert settings.queue == "default"
    assert settings.timeout == 25  # None as an override means "not given", not "no timeout"


def test_none_override_does_not_hide_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KASHQ_MAX_RETRY", "8")

    assert load_settings(max_retry=None).max_retry == 8


def test_override_with_falsy_non_none_value_is_applied() -> None:
    assert load_settings(backoff=0).backoff == "0"


# --------------------------------------------------------------------------- imports


def test_imports_from_env_var_are_split_on_commas_and_stripped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KASHQ_IMPORTS", "a, b ,,c")

    assert load_settings().imports == ["a", "b", "c"]


def test_imports_from_env_var_single_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KASHQ_IMPORTS", "app.jobs")

    assert load_settings().imports == ["app.jobs"]


def test_imports_empty_env_var_gives_empty_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KASHQ_IMPORTS", " , ")

    assert load_settings().imports == []


def test_imports_from_toml_list(tmp_path: Path) -> None:
    write_toml(tmp_path, 'imports = ["app.jobs", "billing.jobs"]\n')

    assert load_settings().imports == ["app.jobs", "billing.jobs"]


def test_imports_from_toml_comma_string(tmp_path: Path) -> None:
    write_toml(tmp_path, 'imports = "app.jobs, billing.jobs"\n')

    assert load_settings().imports == ["app.jobs", "billing.jobs"]


def test_imports_from_dotenv_are_split(tmp_path: Path) -> None:
    write_dotenv(tmp_path, "KASHQ_IMPORTS=x.jobs,y.jobs\n")

    assert load_settings().imports == ["x.jobs", "y.jobs"]


def test_imports_from_keyword_override_accept_list_and_string() -> None:
    assert load_settings(imports=["m1", "m2"]).imports == ["m1", "m2"]
    assert load_settings(imports="m1,m2").imports == ["m1", "m2"]


# --------------------------------------------------------------------------- timeout


@pytest.mark.parametrize("raw", ["none", "None", "NONE", " none ", "null", ""])
def test_timeout_none_string_in_env_var_disables_timeout(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("KASHQ_TIMEOUT", raw)

    assert load_settings().timeout is None


def test_timeout_none_string_in_toml_disables_timeout(tmp_path: Path) -> None:
    write_toml(tmp_path, 'timeout = "none"\n')

    assert load_settings().timeout is None


def test_timeout_number_in_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KASHQ_TIMEOUT", "2.5")

    assert load_settings().timeout == 2.5


# --------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"max_retry": 0}, "max_retry"),
        ({"max_retry": -5}, "max_retry"),
        ({"backoff": -1}, "backoff"),
        ({"retry_after": 0}, "retry_after"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"queue": ""}, "queue"),
        ({"connection": "redisx"}, "connection"),
        ({"redis_url": "http://x"}, "redis_url"),
        ({"prefix": "has space"}, "prefix"),
        ({"prefix": "has{brace"}, "prefix"),
        ({"prefix": "has}brace"}, "prefix"),
        ({"prefix": "{app}"}, "prefix"),
        ({"prefix": "tab\there"}, "prefix"),
        ({"prefix": "kashq\n"}, "prefix"),
        ({"prefix": ""}, "prefix"),
        ({"database_url": "kashq.sqlite"}, "database_url"),
    ],
)
def test_bad_override_raises_one_line_config_error_naming_setting_and_origin(
    overrides: dict[str, object], setting: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(origin="the command line", **overrides)

    message = str(caught.value)
    assert_one_line(message)
    assert f"invalid setting {setting} (from the command line)" in message
    assert "KASHQ_" not in message  # the value did not come from a variable
    assert "Value error" not in message  # pydantic's prefix is not ours


def test_config_error_is_a_kashq_error() -> None:
    with pytest.raises(KashqError):
        load_settings(max_retry=0)


def test_bad_connection_message_lists_allowed_values() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(connection="redisx")

    message = str(caught.value)
    assert_one_line(message)
    assert "invalid setting connection (from load_settings())" in message
    assert "memory" in message
    assert "sync" in message
    assert "redisx" in message  # shows what was given


def test_bad_redis_url_message_says_what_is_expected() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(redis_url="http://x")

    message = str(caught.value)
    assert "redis://" in message
    assert "http://x" in message


@pytest.mark.parametrize("url", ["redis://localhost:6379/1", "rediss://h:6380/0", "unix:///s"])
def test_valid_redis_urls_are_accepted(url: str) -> None:
    assert load_settings(redis_url=url).redis_url == url


def test_database_url_with_scheme_is_accepted() -> None:
    url = "postgresql+psycopg://user:pw@db/kashq"

    assert load_settings(database_url=url).database_url == url


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KASHQ_MAX_RETRY", "0"),
        ("KASHQ_MAX_RETRY", "three"),
        ("KASHQ_BACKOFF", "-1"),
        ("KASHQ_CONNECTION", "redisx"),
        ("KASHQ_REDIS_URL", "http://x"),
        ("KASHQ_PREFIX", "a b"),
        ("KASHQ_DATABASE_URL", "nourl"),
        ("KASHQ_TIMEOUT", "soon"),
    ],
)
def test_bad_env_var_raises_one_line_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigError) as caught:
        load_settings()

    message = str(caught.value)
    assert_one_line(message)
    setting = variable.removeprefix("KASHQ_").lower()
    assert f"invalid setting {setting} (from environment variable {variable})" in message


def test_bad_value_in_toml_file_raises_config_error_naming_setting(tmp_path: Path) -> None:
    write_toml(tmp_path, "max_retry = 0\n")

    with pytest.raises(ConfigError) as caught:
        load_settings()

    message = str(caught.value)
    assert_one_line(message)
    where = Path("config") / "kashq.toml"
    assert f"invalid setting max_retry (from max_retry in {where})" in message
    assert "KASHQ_MAX_RETRY" not in message


def test_bad_value_in_dotenv_raises_config_error_naming_setting(tmp_path: Path) -> None:
    write_dotenv(tmp_path, "KASHQ_CONNECTION=kafka\n")

    with pytest.raises(ConfigError) as caught:
        load_settings()

    message = str(caught.value)
    assert_one_line(message)
    assert "invalid setting connection (from KASHQ_CONNECTION in .env)" in message


def test_bad_value_given_to_configure_names_configure_as_its_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KASHQ_CONNECTION", "redis")  # a good value lower down changes nothing

    with pytest.raises(ConfigError) as caught:
        kashq.configure(connection="kafka")

    assert str(caught.value).startswith("invalid setting connection (from kashq.configure()):")


def test_good_override_fixes_bad_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KASHQ_MAX_RETRY", "0")

    assert load_settings(max_retry=2).max_retry == 2


def test_malformed_toml_raises_config_error_naming_the_file(tmp_path: Path) -> None:
    write_toml(tmp_path, "queue = \nthis is not toml [[[\n")

    with pytest.raises(ConfigError) as caught:
        load_settings()

    message = str(caught.value)
    assert_one_line(message)
    assert str(Path("config") / "kashq.toml") in message


def test_malformed_toml_named_by_kashq_config_is_named_in_the_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = tmp_path / "broken-settings.toml"
    broken.write_text('queue = "unterminated\n')
    monkeypatch.setenv("KASHQ_CONFIG", str(broken))

    with pytest.raises(ConfigError) as caught:
        load_settings()

    message = str(caught.value)
    assert_one_line(message)
    assert str(broken) in message


def test_config_error_does_not_chain_the_pydantic_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(backoff=-1)

    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True


@pytest.mark.parametrize(
    "url", ["redis+cluster://127.0.0.1:7000", "rediss+cluster://node.internal:7000"]
)
def test_cluster_redis_urls_are_accepted(url: str) -> None:
    assert load_settings(redis_url=url).redis_url == url


# --------------------------------------------------------------------------- queue names


@pytest.mark.parametrize("queue", ["a,b", "a b", "{x}", "tab\there", "x" * 201])
def test_default_queue_must_be_one_usable_queue_name(
    monkeypatch: pytest.MonkeyPatch, queue: str
) -> None:
    monkeypatch.setenv("KASHQ_QUEUE", queue)

    with pytest.raises(ConfigError) as caught:
        load_settings()

    message = str(caught.value)
    assert_one_line(message)
    assert "invalid setting queue (from environment variable KASHQ_QUEUE)" in message
    assert "one queue name" in message


# --------------------------------------------------------------------------- mistyped names


def test_unknown_key_in_toml_file_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    write_toml(tmp_path, "max_retries = 5\n")

    with pytest.raises(ConfigError) as caught:
        load_settings()

    message = str(caught.value)
    assert_one_line(message)
    assert "unknown setting 'max_retries'" in message
    assert str(Path("config") / "kashq.toml") in message
    assert "did you mean 'max_retry'?" in message


def test_unknown_keyword_given_to_configure_is_an_error_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as caught:
        kashq.configure(conection="redis")

    message = str(caught.value)
    assert_one_line(message)
    assert "unknown setting 'conection' given to kashq.configure()" in message
    assert "did you mean 'connection'?" in message


def test_unknown_keyword_given_to_settings_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting 'queues' given to Settings\(\)"):
        Settings(queues="emails")  # type: ignore[call-arg]


def test_unknown_kashq_variable_is_a_warning_once_with_a_suggestion(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("KASHQ_MAX_RETRIES", "5")
    monkeypatch.setattr(config, "_warned", set())

    with caplog.at_level("WARNING", logger="kashq.config"):
        assert load_settings().max_retry == 3  # ignored, not an error
        load_settings()

    warnings = [r.getMessage() for r in caplog.records if r.name == "kashq.config"]
    assert warnings == [
        "unknown setting KASHQ_MAX_RETRIES in the environment, ignored "
        "(did you mean KASHQ_MAX_RETRY?)"
    ]


def test_unknown_kashq_variable_in_dotenv_is_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    write_dotenv(tmp_path, "KASHQ_CONECTION=redis\nOTHER_APP_SETTING=1\n")
    monkeypatch.setattr(config, "_warned", set())

    with caplog.at_level("WARNING", logger="kashq.config"):
        load_settings()

    warnings = [r.getMessage() for r in caplog.records if r.name == "kashq.config"]
    assert warnings == [
        "unknown setting KASHQ_CONECTION in .env, ignored (did you mean KASHQ_CONNECTION?)"
    ]


def test_variables_that_are_not_settings_are_not_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setenv("KASHQ_CONFIG", str(write_toml(tmp_path, "")))
    monkeypatch.setenv("KASHQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    monkeypatch.setenv("KASHQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    monkeypatch.setenv("KASHQ_MAX_RETRY", "4")
    monkeypatch.setattr(config, "_warned", set())

    with caplog.at_level("WARNING", logger="kashq.config"):
        load_settings()

    assert [r for r in caplog.records if r.name == "kashq.config"] == []


# --------------------------------------------------------------------------- secrets


def test_repr_and_str_of_settings_hide_passwords_and_secrets() -> None:
    settings = load_settings(
        redis_url="redis://:s3cr3t-redis@cache:6379/0",
        database_url="postgresql+psycopg://app:s3cr3t-db@db/app",
        shards=["redis://:s3cr3t-shard@a:6379/0", "redis://b:6379/0"],
        slack_webhook_url="https://hooks.slack.com/services/T0/B0/s3cr3t-slack",
        alert_webhook_url="https://ops.example.com/hook?token=s3cr3t-hook",
        alert_webhook_secret="s3cr3t-hmac",
    )

    for shown in (repr(settings), str(settings), f"{settings}"):
        assert "s3cr3t" not in shown
    assert "redis_url='redis://:***@cache:6379/0'" in repr(settings)
    assert "slack_webhook_url='https://hooks.slack.com/***'" in repr(settings)
    assert settings.redis_url == "redis://:s3cr3t-redis@cache:6379/0"  # values stay usable


def test_the_shipped_config_file_shows_every_setting_with_its_default() -> None:
    shipped = Path(__file__).resolve().parents[2] / "config" / "kashq.toml"
    shown: dict[str, str] = {}
    for line in shipped.read_text().splitlines():
        if line.startswith("# ") and " = " in line and not line.startswith("#  "):
            key, _, value = line[2:].partition(" = ")
            if key.isidentifier():
                shown[key] = value.split("  #")[0].strip()

    assert set(shown) == set(Settings.model_fields)
    defaults = Settings()
    for name in ("connection", "queue", "max_retry", "backoff", "prefetch", "events"):
        assert str(getattr(defaults, name)).lower() in shown[name].strip('"').lower()
