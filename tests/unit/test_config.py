"""Tests for ``kashq.config``: defaults, the layered sources and one-line errors.

Precedence, lowest to highest: defaults < ``config/kashq.toml`` (or the file in
``KASHQ_CONFIG``) < ``.env`` in the working directory < ``KASHQ_*`` environment
variables < keyword overrides given to :func:`kashq.load_settings`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kashq import ConfigError, KashqError, Settings, load_settings


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
    assert settings.backoff == 1.0
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


def test_missing_config_file_named_by_kashq_config_is_not_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KASHQ_CONFIG", str(tmp_path / "does-not-exist.toml"))

    assert load_settings().queue == "default"


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
    assert settings.backoff == 2.5
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
    assert settings.backoff == 4  # not in the environment: the .env value survives


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
    assert settings.backoff == 0.25
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
    assert settings.backoff == 6.0  # environment
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
    assert load_settings(backoff=0).backoff == 0


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
def test_bad_override_raises_one_line_config_error_naming_setting_and_env_var(
    overrides: dict[str, object], setting: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(**overrides)

    message = str(caught.value)
    assert_one_line(message)
    assert setting in message
    assert f"KASHQ_{setting.upper()}" in message


def test_config_error_is_a_kashq_error() -> None:
    with pytest.raises(KashqError):
        load_settings(max_retry=0)


def test_bad_connection_message_lists_allowed_values() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(connection="redisx")

    message = str(caught.value)
    assert_one_line(message)
    assert "KASHQ_CONNECTION" in message
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
    assert variable in message
    assert variable.removeprefix("KASHQ_").lower() in message


def test_bad_value_in_toml_file_raises_config_error_naming_setting(tmp_path: Path) -> None:
    write_toml(tmp_path, "max_retry = 0\n")

    with pytest.raises(ConfigError) as caught:
        load_settings()

    message = str(caught.value)
    assert_one_line(message)
    assert "max_retry" in message
    assert "KASHQ_MAX_RETRY" in message


def test_bad_value_in_dotenv_raises_config_error_naming_setting(tmp_path: Path) -> None:
    write_dotenv(tmp_path, "KASHQ_CONNECTION=kafka\n")

    with pytest.raises(ConfigError) as caught:
        load_settings()

    message = str(caught.value)
    assert_one_line(message)
    assert "KASHQ_CONNECTION" in message


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
