"""Careless input on the command line: one clear line, the right exit code, nothing changed.

Each case runs in-process and as the installed executable (``kashq_cli``).
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kashq.cli import app
from kashq.db import migrate
from tests.e2e.conftest import Cli, assert_one_line_error, stderr_lines
from tests.e2e.test_cli import _clean_env, _kashq_executable

COMMANDS = sorted(command.name or "" for command in app.registered_commands)


@pytest.fixture
def database(db_url: str) -> str:
    """The test's SQLite database, migrated: commands that read one never create it."""
    migrate.upgrade(db_url)
    return db_url


# --------------------------------------------------------------------------- help


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_flags_as_plain_flags_and_no_python_types(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    for python_type in ("<bool>", "<list[", "<str>", "<int", "<float"):
        assert python_type not in result.stdout
    json_lines = [line for line in result.stdout.splitlines() if "--json " in line]
    for line in json_lines:  # a flag takes no value, so its help shows none
        assert "BOOLEAN" not in line and "TEXT" not in line


# --------------------------------------------------------------------------- queue names


@pytest.mark.parametrize(
    "args",
    [
        ["queue:work", "--queue", ",,"],
        ["queue:work", "-q", "emails,a b"],
        ["queue:size", "--queue", "{x}"],
        ["queue:monitor", "--once", "-q", " , "],
        ["queue:clear", "--force", "--queue", "a,b"],
        ["queue:failed", "--queue", "a b"],
        ["queue:retry", "all", "--queue", "a,b"],
        ["queue:tail", "--queue", ","],
    ],
)
def test_a_bad_queue_name_on_the_command_line_is_a_usage_error(
    kashq_cli: Cli, db_url: str, args: list[str]
) -> None:
    line = assert_one_line_error(kashq_cli(args))

    assert "--queue" in line
    assert not Path(db_url.removeprefix("sqlite:///")).exists()


def test_a_default_queue_that_is_a_list_is_refused_naming_its_variable(kashq_cli: Cli) -> None:
    kashq_cli.setenv("KASHQ_QUEUE", "emails,default")

    line = assert_one_line_error(kashq_cli(["queue:size"]))

    assert "invalid setting queue (from environment variable KASHQ_QUEUE)" in line
    assert "one queue name" in line


# --------------------------------------------------------------------------- connections


def test_a_bad_connection_flag_names_the_command_line_as_its_source(kashq_cli: Cli) -> None:
    line = assert_one_line_error(kashq_cli(["queue:size", "--connection", "kafka"]))

    assert line.startswith("error: invalid setting connection (from the command line):")
    assert "KASHQ_CONNECTION" not in line


@pytest.mark.parametrize("form", [["database"], ["--connection", "database"], ["-c", "database"]])
def test_every_command_names_its_connection_with_connection_or_positionally(
    kashq_cli: Cli, database: str, form: list[str]
) -> None:
    kashq_cli.setenv("KASHQ_CONNECTION", "redis")  # unreachable: the flag must win
    kashq_cli.setenv("KASHQ_REDIS_URL", "redis://127.0.0.1:1/0")

    run = kashq_cli(["queue:size", "--json", *form])

    assert run.exit_code == 0, run.output


@pytest.mark.parametrize(
    "args",
    [
        ["queue:failed", "--connection", "database"],
        ["queue:retry", "all", "-c", "database"],
        ["queue:restart", "--connection", "database"],
        ["queue:monitor", "--once", "--connection", "database"],
    ],
)
def test_connection_is_the_same_option_on_every_command(
    kashq_cli: Cli, database: str, args: list[str]
) -> None:
    kashq_cli.setenv("KASHQ_CONNECTION", "kafka")  # would be refused if the flag did not win

    run = kashq_cli(args)

    assert run.exit_code == 0, run.output


def test_a_connection_named_twice_differently_is_a_usage_error(kashq_cli: Cli) -> None:
    run = kashq_cli(["queue:size", "redis", "--connection", "database"])

    assert run.exit_code == 2
    assert "named twice" in assert_one_line_error(run)


@pytest.mark.parametrize("connection", ["memory", "sync"])
@pytest.mark.parametrize(
    "args",
    [
        ["queue:size"],
        ["queue:failed"],
        ["queue:retry", "all"],
        ["queue:clear", "--force"],
        ["queue:restart"],
        ["queue:monitor", "--once"],
        ["queue:events", "some-job"],
        ["queue:work"],
    ],
)
def test_commands_refuse_connections_whose_jobs_live_in_another_process(
    kashq_cli: Cli, db_url: str, connection: str, args: list[str]
) -> None:
    kashq_cli.setenv("KASHQ_CONNECTION", connection)

    line = assert_one_line_error(kashq_cli(args))

    assert f"cannot use the {connection} connection" in line
    assert "kashq.start_workers()" in line


# --------------------------------------------------------------------------- settings


def test_an_unknown_kashq_variable_is_a_warning_line_and_the_command_runs(
    kashq_cli: Cli, database: str
) -> None:
    kashq_cli.setenv("KASHQ_MAX_RETRIES", "5")

    run = kashq_cli(["queue:size", "--json"])

    assert run.exit_code == 0, run.output
    assert stderr_lines(run) == [
        "warning: unknown setting KASHQ_MAX_RETRIES in the environment, ignored "
        "(did you mean KASHQ_MAX_RETRY?)"
    ]


# --------------------------------------------------------------------------- make:job


@pytest.mark.parametrize(
    ("name", "why"),
    [("class", "keyword"), ("none", "keyword"), ("Job", "base class"), ("job", "base class")],
)
def test_make_job_refuses_keywords_and_the_base_class_name(
    kashq_cli: Cli, tmp_path: Path, name: str, why: str
) -> None:
    line = assert_one_line_error(kashq_cli(["make:job", name]))

    assert why in line
    assert not (tmp_path / "jobs").exists()


@pytest.mark.parametrize(
    ("name", "module", "cls"),
    [
        ("ÉcrireRapport", "écrire_rapport", "ÉcrireRapport"),
        ("envoyer_été", "envoyer_été", "EnvoyerÉté"),
    ],
)
def test_make_job_accepts_unicode_identifiers(
    kashq_cli: Cli, tmp_path: Path, name: str, module: str, cls: str
) -> None:
    run = kashq_cli(["make:job", name])

    assert run.exit_code == 0, run.output
    source = (tmp_path / "jobs" / f"{module}.py").read_text()
    assert f"class {cls}(Job):" in source
    imported = kashq_cli.python(f"from jobs.{module} import {cls}; print({cls}.__kashq_name__)")
    assert imported.stdout.strip() == f"jobs.{module}.{cls}", imported.stderr


# --------------------------------------------------------------------------- watching commands


def test_monitor_once_has_no_ctrl_c_hint(kashq_cli: Cli, database: str) -> None:
    run = kashq_cli(["queue:monitor", "--once"])

    assert run.exit_code == 0, run.output
    assert "queue" in run.stdout and "Ctrl-C" not in run.output


@pytest.mark.parametrize("args", [["queue:monitor", "--interval", "0.2"], ["queue:tail"]])
def test_watching_commands_print_into_a_pipe_and_exit_0_on_sigterm(
    tmp_path: Path, args: list[str]
) -> None:
    env = {**_clean_env(), "KASHQ_DATABASE_URL": f"sqlite:///{tmp_path / 'kashq.sqlite'}"}
    env.pop("COLUMNS")
    subprocess.run(  # a database to watch
        [str(_kashq_executable()), "migrate"], cwd=tmp_path, env=env, check=True, timeout=60,
        capture_output=True,
    )  # fmt: skip
    proc = subprocess.Popen(
        [str(_kashq_executable()), *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.5)  # start-up, then a few frames
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)

    assert proc.returncode == 0, err
    assert "Traceback" not in err
    if args[0] == "queue:monitor":
        assert out.count("kashq queues on 'database'") >= 2, out  # each frame appended
        assert "Ctrl-C" not in out
