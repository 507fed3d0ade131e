"""kashq.contrib.django: the checks project under Django's test runner, and its settings.

``tests/django_project`` is a Django project whose ``checks/tests.py`` Django's
own runner runs (a separate process: Django's settings and app registry are the
process's), on SQLite and on PostgreSQL: dispatch inside ``atomic()`` blocks
(commit, rollback, savepoints, unique claims, chains and batches), the job
written in Django's transaction, stale connections closed after each job, and
the dashboard in the admin. The settings checks run ``django-admin`` commands.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import make_url

from kashq.exceptions import ConfigError
from tests.e2e.test_cli import _clean_env
from tests.support.services import POSTGRES_URL

TESTS = Path(__file__).resolve().parents[1]


def _django(
    *args: str, database: dict[str, object] | None = None, kashq: object = None, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = (
        _clean_env()
        | {"PYTHONPATH": str(TESTS), "DJANGO_SETTINGS_MODULE": "django_project.settings"}
        | env
    )
    if database is not None:
        environ["KASHQ_TEST_DJANGO_DATABASE"] = json.dumps(database)
    if kashq is not None:
        environ["KASHQ_TEST_DJANGO_KASHQ"] = json.dumps(kashq)
    return subprocess.run(
        [sys.executable, "-m", "django", *args], cwd=TESTS, env=environ,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _databases(tmp_path: Path) -> dict[str, dict[str, object]]:
    url = make_url(POSTGRES_URL)
    return {
        # A file test database: kashq's tables go in it too, so before_commit() can join.
        "sqlite": {
            "ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3"),
            "TEST": {"NAME": str(tmp_path / "test.sqlite3")},
        },
        "postgresql": {
            "ENGINE": "django.db.backends.postgresql", "NAME": f"kq_{secrets.token_hex(5)}",
            "USER": url.username or "postgres", "HOST": url.host or "", "PORT": url.port or 5432,
        },
    }  # fmt: skip


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_checks_pass_under_django_s_test_runner(kind: str, tmp_path: Path) -> None:
    done = _django(
        "test", "django_project.checks", "--noinput", "-v", "2",
        database=_databases(tmp_path)[kind],
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Ran 12 tests" in output and "\nOK" in output, output


def test_django_s_parallel_runner_moves_kashq_to_each_worker_s_database(tmp_path: Path) -> None:
    done = _django(
        "test", "django_project.checks", "--noinput", "--parallel", "2",
        database=_databases(tmp_path)["postgresql"],
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Ran 12 tests" in output and "\nOK" in output, output


def _shell(command: str, **kwargs: object) -> str:
    done = _django("shell", "-c", command, **kwargs)  # type: ignore[arg-type]
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1]  # after Django's "N objects imported"


SHOW = "import kashq; s = kashq.manager().settings; print(s.queue, s.database_url, s.after_commit)"


def test_settings_kashq_wins_over_the_environment_and_the_database_follows_django_s(
    tmp_path: Path,
) -> None:
    database = _databases(tmp_path)["sqlite"]
    shown = _shell(SHOW, database=database, kashq={"QUEUE": "mail"}, KASHQ_QUEUE="fromenv")
    assert shown == f"mail sqlite:///{tmp_path / 'db.sqlite3'} True"

    elsewhere = f"sqlite:///{tmp_path / 'kashq.sqlite'}"
    shown = _shell(
        SHOW, database=database, kashq={"after_commit": False}, KASHQ_DATABASE_URL=elsewhere
    )
    assert shown == f"default {elsewhere} False"
    # AFTER_COMMIT is on by default in Django, unless set anywhere (the environment here)
    shown = _shell(SHOW, database=database, KASHQ_AFTER_COMMIT="false")
    assert shown.endswith(" False")


@pytest.mark.parametrize(
    ("kashq", "message"),
    [
        ({"QEUE": "x"}, "unknown setting 'qeue' given to settings.KASHQ (did you mean 'queue'?)"),
        ({"MAX_RETRY": 0}, "invalid setting max_retry (from settings.KASHQ): "),
        (["QUEUE"], "settings.KASHQ must be a dict of kashq settings, got ['QUEUE']"),
    ],
)
def test_a_bad_setting_stops_django_with_one_line(kashq: object, message: str) -> None:
    done = _django("check", kashq=kashq)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"django.core.exceptions.ImproperlyConfigured: {message}"), done.stderr


def test_django_s_database_settings_become_a_url_and_others_are_refused() -> None:
    from kashq.contrib.django.conf import database_url

    postgres = {
        "ENGINE": "django.db.backends.postgresql", "NAME": "shop", "USER": "app",
        "PASSWORD": "s3cret", "HOST": "db.internal", "PORT": "6432",
    }  # fmt: skip
    assert database_url(postgres) == "postgresql+psycopg://app:s3cret@db.internal:6432/shop"
    postgres["OPTIONS"] = {"sslmode": "require", "server_side_binding": True}  # libpq's only
    assert database_url(postgres).endswith("/shop?sslmode=require")
    socket = {"ENGINE": "django.db.backends.postgresql", "NAME": "shop", "HOST": "/run/pg"}
    assert make_url(database_url(socket)).query == {"host": "/run/pg"}
    assert make_url(database_url(socket)).database == "shop"
    mysql = {"ENGINE": "django.db.backends.mysql", "NAME": "shop", "USER": "root"}
    assert database_url(mysql) == "mysql+pymysql://root@/shop"
    mysql["OPTIONS"] = {"charset": "utf8mb4", "init_command": "SET sql_mode='STRICT_ALL_TABLES'"}
    assert database_url(mysql) == "mysql+pymysql://root@/shop?charset=utf8mb4"
    memory = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    assert database_url(memory) == database_url(memory)  # one stand-in file per name
    assert database_url(memory).endswith("/kashq.sqlite3")
    with pytest.raises(ConfigError) as refused:
        database_url({"ENGINE": "django.db.backends.oracle", "NAME": "x"})
    assert str(refused.value) == (
        "kashq uses Django's database on PostgreSQL, SQLite or MySQL/MariaDB, not "
        "django.db.backends.oracle: set KASHQ['DATABASE_URL']"
    )
