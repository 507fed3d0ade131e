"""``examples/django_app`` end to end, on SQLite and on PostgreSQL.

- Django's test runner (``manage.py test``) runs the example's own tests, and
  pytest-django runs them again with kashq's ``kashq_fake`` / ``kashq_worker``
  fixtures: kashq follows Django's test database.
- ``manage.py migrate`` makes kashq's tables too; ``manage.py runserver`` serves
  the app; a POST creates a report and dispatches its job inside
  ``transaction.atomic()``; a real ``manage.py kashq queue:work --workers=2``
  (worker processes that set Django up) runs it; a GET reads the total the job
  stored with the ORM.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url

from tests.e2e.test_cli import _clean_env
from tests.support.databases import _run_admin
from tests.support.services import POSTGRES_URL, free_port
from tests.support.waiting import eventually

PROJECT = Path(__file__).resolve().parents[2] / "examples" / "django_app"
MANAGE = [sys.executable, str(PROJECT / "manage.py")]


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The example's settings: a SQLite file, or a PostgreSQL database of its own."""
    env = _clean_env() | {"PYTHONPATH": str(PROJECT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if request.param == "sqlite":
        yield env | {"REPORTS_SQLITE": str(tmp_path / "db.sqlite3")}
        return
    url = make_url(POSTGRES_URL)
    name = f"kashq_reports_{secrets.token_hex(5)}"
    _run_admin(POSTGRES_URL, "PostgreSQL", f"CREATE DATABASE {name}")
    try:
        yield env | {
            "REPORTS_DATABASE": "postgresql", "REPORTS_PG_NAME": name,
            "REPORTS_PG_USER": url.username or "postgres", "REPORTS_PG_HOST": url.host or "",
            "REPORTS_PG_PORT": str(url.port or 5432),
        }  # fmt: skip
    finally:
        _run_admin(POSTGRES_URL, "PostgreSQL", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _run(command: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_django_s_test_runner_and_pytest_django_pass_the_example_s_tests(
    env: dict[str, str],
) -> None:
    output = _run([*MANAGE, "test", "--noinput", "-v", "2"], env, PROJECT)
    assert "test_a_report_is_summed_by_its_job" in output
    assert "Ran 2 tests" in output and "\nOK" in output, output
    # kashq's tables are made in the test database (an in-memory SQLite one: a file instead)
    test_database = "kashq-django-" if "REPORTS_DATABASE" not in env else "/test_kashq_reports_"
    assert re.search(rf"kashq's tables in \S*{test_database}\S*: revision \w+", output), output

    pytest_run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    output = _run(pytest_run, env | {"PYTEST_ADDOPTS": ""}, PROJECT)
    assert "2 passed" in output, output


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


def test_a_request_dispatches_in_a_transaction_and_a_real_worker_runs_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    migrated = _run([*MANAGE, "migrate", "--noinput"], env, tmp_path)
    assert re.search(r"kashq's tables in \S+: revision \w+ \(from nothing\)", migrated), migrated
    status = _run([*MANAGE, "kashq", "migrate", "--status"], env, tmp_path)
    assert "(up to date)" in status, status

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*MANAGE, "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    worker = subprocess.Popen(
        [*MANAGE, "kashq", "queue:work", "--workers=2"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert eventually(lambda: _reachable(base), 30), "the app never answered"
        request = urllib.request.Request(f"{base}/reports?n=100", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            created = json.loads(response.read())
        done = {"n": 100, "total": 5050, "state": "completed"}
        assert eventually(lambda: _get(f"{base}/reports/{created['id']}") == (200, done), 30)
    finally:
        server.terminate()
        worker.send_signal(signal.SIGTERM)
        served, _ = server.communicate(timeout=30)
        worked, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, worked
    assert "modules      kashq.contrib.django.setup" in worked, worked
    assert "reports.jobs.SumReport" in worked and "DONE" in worked, worked
    assert "Traceback" not in worked + served, worked + served


def _reachable(base: str) -> bool:
    try:
        return _get(f"{base}/reports/0")[0] == 404
    except OSError:
        return False


def test_kashq_s_commands_run_under_manage_py(env: dict[str, str], tmp_path: Path) -> None:
    _run([*MANAGE, "migrate", "--noinput"], env, tmp_path)
    listed = _run([*MANAGE, "kashq", "--help"], env | {"COLUMNS": "120"}, tmp_path)
    assert "queue:work" in listed and "queue:failed" in listed
    assert "No failed jobs" in _run([*MANAGE, "kashq", "queue:failed"], env, tmp_path)
    # Django's own options are Django's, wherever they are on the line
    for settings in (["--settings=reports_site.settings"], ["--settings", "reports_site.settings"]):
        failed = _run([*MANAGE, "kashq", "queue:failed", *settings], env, tmp_path)
        assert "No failed jobs" in failed
