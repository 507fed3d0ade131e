"""kashq's Alembic migrations, on SQLite, PostgreSQL and MariaDB, and ``kashq migrate``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, insert, inspect, make_url, text

from kashq.db import migrate
from kashq.db.schema import VERSION_TABLE, failed_jobs, jobs, metadata, tables
from kashq.drivers.database import DatabaseDriver
from kashq.exceptions import DriverError
from kashq.failed.database import DatabaseFailedJobStore
from tests.integration.test_database_driver import envelope
from tests.integration.test_failed_store import failed
from tests.support.databases import KINDS, SERVER_KINDS, database
from tests.support.processes import run_together, start_python
from tests.support.services import free_port, unavailable

REPO = Path(__file__).resolve().parents[2]
KASHQ_TABLES = {
    "kashq_jobs",
    "failed_jobs",
    "kashq_control",
    "kashq_locks",
    "kashq_counters",
    "job_events",
    "job_results",
    "kashq_job_tags",
    "kashq_job_once",
    "job_batches",
    "kashq_batch_jobs",
    "job_recent",
    "job_history",
    "kashq_outbox",
}
HEAD = "0012"


def schema_diffs(url: str, prefix: str = "") -> list[object]:
    """How the database's kashq tables differ from the schema declared under ``prefix``.

    Tables of another install sharing the database are left out (each test
    checks the set of table names itself).
    """
    engine = create_engine(url)
    declared = tables(prefix).metadata

    def ours(name: str | None, kind: str, _parent: object) -> bool:
        return kind != "table" or name in declared.tables

    try:
        with engine.connect() as conn:
            opts = {
                "compare_type": True,
                "version_table": prefix + VERSION_TABLE,
                "include_name": ours,
            }
            context = MigrationContext.configure(conn, opts=opts)
            return list(compare_metadata(context, declared))
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", KINDS)
def test_upgrade_head_on_an_empty_database_yields_exactly_the_declared_schema(kind, tmp_path):
    with database(kind, tmp_path) as url:
        assert migrate.current_revision(url) is None
        assert migrate.head_revision() == HEAD
        assert migrate.upgrade(url) == HEAD
        assert schema_diffs(url) == []
        assert table_names(url) == KASHQ_TABLES | {VERSION_TABLE}
        engine = create_engine(url)
        inspector = inspect(engine)
        for table in metadata.sorted_tables:
            columns = [c["name"] for c in inspector.get_columns(table.name)]
            assert columns == [c.name for c in table.columns]
            indexes = {ix["name"] for ix in inspector.get_indexes(table.name)}
            assert {ix.name for ix in table.indexes} <= indexes
        with engine.connect() as conn:
            versions = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
        engine.dispose()
        assert versions == [(migrate.head_revision(),)]


@pytest.mark.parametrize("kind", KINDS)
def test_downgrade_base_removes_every_kashq_table(kind, tmp_path):
    with database(kind, tmp_path) as url:
        migrate.upgrade(url)
        assert migrate.downgrade(url) is None
        assert table_names(url) & KASHQ_TABLES == set()
        assert migrate.current_revision(url) is None
        assert migrate.upgrade(url) == migrate.head_revision(), "and up again"


@pytest.mark.parametrize("kind", KINDS)
def test_installs_under_two_prefixes_migrate_up_and_down_independently_in_one_database(
    kind, tmp_path
):
    app = {"app_" + name for name in KASHQ_TABLES} | {"app_" + VERSION_TABLE}
    plain = KASHQ_TABLES | {VERSION_TABLE}
    with database(kind, tmp_path) as url:
        assert migrate.upgrade(url, table_prefix="app_") == HEAD
        assert table_names(url) == app
        assert schema_diffs(url, "app_") == []
        assert migrate.current_revision(url) is None, "the unprefixed install has no tables"
        assert migrate.upgrade(url) == HEAD
        assert table_names(url) == app | plain
        assert schema_diffs(url) == [] and schema_diffs(url, "app_") == []
        assert migrate.downgrade(url, table_prefix="app_") is None
        assert table_names(url) == plain | {"app_" + VERSION_TABLE}  # (Alembic keeps it, empty)
        assert migrate.current_revision(url, table_prefix="app_") is None
        assert migrate.current_revision(url) == HEAD
        assert migrate.upgrade(url, "0001", table_prefix="app_") == "0001"
        assert migrate.upgrade(url, table_prefix="app_") == HEAD, "and up again, step by step"
        assert schema_diffs(url, "app_") == []


@pytest.mark.parametrize("kind", KINDS)
def test_upgrade_leaves_the_host_applications_alembic_history_alone(kind, tmp_path):
    with database(kind, tmp_path) as url:
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            conn.execute(text("INSERT INTO alembic_version VALUES ('hostapp42')"))
        migrate.upgrade(url)
        migrate.upgrade(url)  # a second run is a no-op
        with engine.connect() as conn:
            host = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        engine.dispose()
        assert host == [("hostapp42",)]
        assert migrate.current_revision(url) == migrate.head_revision()


@pytest.mark.parametrize("kind", KINDS)
def test_a_database_at_revision_0001_upgrades_to_head_keeping_its_jobs(kind, tmp_path):
    with database(kind, tmp_path) as url:
        assert migrate.upgrade(url, "0001") == "0001"
        assert "kashq_control" not in table_names(url)
        queued = envelope()
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(
                insert(jobs).values(
                    id=queued.id, queue="default", raw=queued.encode(), available_at=0.0
                )
            )
        engine.dispose()
        assert migrate.upgrade(url) == HEAD
        assert schema_diffs(url) == []
        driver = DatabaseDriver(url)
        held = driver.reserve(["default"], lease_s=30)
        assert held is not None and held.id == queued.id
        driver.put_control("restart", "1")
        driver.close()
        assert migrate.downgrade(url, "0001") == "0001"
        assert table_names(url) & KASHQ_TABLES == {"kashq_jobs", "failed_jobs"}


@pytest.mark.parametrize("kind", KINDS)
def test_failed_jobs_keep_their_ids_across_0004_and_ids_are_not_reused_after(kind, tmp_path):
    with database(kind, tmp_path) as url:
        assert migrate.upgrade(url, "0003") == "0003"
        engine = create_engine(url)
        with engine.begin() as conn:
            for _ in range(3):
                job = failed()
                before_0005 = (c for c in failed_jobs.c if c.name not in ("id", "reason"))
                row = {c.name: getattr(job, c.name) for c in before_0005}
                conn.execute(insert(failed_jobs).values(row))
            conn.execute(text("DELETE FROM failed_jobs WHERE id = 3"))
        engine.dispose()
        assert migrate.upgrade(url) == HEAD
        assert schema_diffs(url) == []
        store = DatabaseFailedJobStore(url)
        assert sorted(job.id for job in store.all()) == [1, 2], "rows and ids kept"
        newer = store.log(failed())
        assert newer.id >= 3
        assert store.forget(newer.id)
        assert store.log(failed()).id > newer.id, "a deleted newest id is not handed out again"
        store.close()
        assert migrate.downgrade(url, "0003") == "0003"
        at_0003 = {"kashq_jobs", "failed_jobs", "kashq_control", "kashq_locks"}
        assert table_names(url) & KASHQ_TABLES == at_0003 | {"kashq_counters", "job_events"}


def test_sqlite_failed_jobs_table_is_autoincrement_after_upgrade(tmp_path):
    url = f"sqlite:///{tmp_path / 'kashq.sqlite'}"
    migrate.upgrade(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        ddl = conn.execute(
            text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'failed_jobs'")
        ).scalar_one()
    engine.dispose()
    assert "AUTOINCREMENT" in ddl


def test_sqlite_file_at_revision_0001_upgrades_itself_on_first_use(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    migrate.upgrade(url, "0001")
    driver = DatabaseDriver(url)
    driver.put_control("restart", "1")
    assert driver.get_control() == {"restart": "1"}
    driver.close()
    assert migrate.current_revision(url) == HEAD
    assert schema_diffs(url) == []


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_server_database_at_revision_0001_asks_for_kashq_migrate_in_one_line(kind, tmp_path):
    with database(kind, tmp_path) as url:
        migrate.upgrade(url, "0001")
        driver = DatabaseDriver(url)
        with pytest.raises(DriverError, match=rf"revision 0001 \(kashq needs {HEAD}\)") as caught:
            driver.get_control()
        driver.close()
    message = str(caught.value)
    assert message.endswith("run `kashq migrate`") and "\n" not in message
    password = make_url(url).password
    assert not password or str(password) not in message


def test_sqlite_database_migrates_itself_on_first_use_by_the_driver(tmp_path):
    url = f"sqlite:///{tmp_path / 'kashq.sqlite'}"
    driver = DatabaseDriver(url)
    driver.push(envelope())
    assert driver.sizes(["default"])["default"].ready == 1
    driver.close()
    assert migrate.current_revision(url) == migrate.head_revision()


def test_sqlite_database_migrates_itself_on_first_use_by_the_failed_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'kashq.sqlite'}"
    store = DatabaseFailedJobStore(url)
    assert store.count() == 0
    store.log(failed())
    assert store.count() == 1
    store.close()
    assert schema_diffs(url) == []


FIRST_USER = """
import sys
from kashq.drivers.database import DatabaseDriver
from kashq.failed.database import DatabaseFailedJobStore
print("ready", flush=True)
sys.stdin.readline()
from kashq.envelope import decode
driver = DatabaseDriver(sys.argv[1])
driver.push(decode(sys.argv[2]))
print(DatabaseFailedJobStore(sys.argv[1]).count())
"""


def test_several_processes_first_using_a_new_sqlite_file_at_once_all_succeed(tmp_path):
    url = f"sqlite:///{tmp_path / 'kashq.sqlite'}"
    pushed = [envelope(n=i) for i in range(6)]
    outputs = run_together([start_python(FIRST_USER, url, env.encode()) for env in pushed])
    assert outputs == [["0"]] * len(pushed)
    driver = DatabaseDriver(url)
    assert driver.sizes(["default"])["default"].ready == len(pushed)
    driver.close()
    assert migrate.current_revision(url) == migrate.head_revision()


def test_packaged_migrations_are_preferred_over_the_repository_copy(tmp_path, monkeypatch):
    packaged = tmp_path / "kashq" / "migrations"
    shutil.copytree(REPO / "alembic", packaged)
    assert migrate.script_location() == REPO / "alembic"
    monkeypatch.setattr(migrate, "_PACKAGED", packaged)
    assert migrate.script_location() == packaged
    url = f"sqlite:///{tmp_path / 'kashq.sqlite'}"
    assert migrate.upgrade(url) == migrate.head_revision()


@pytest.mark.parametrize("prefix", ["", "app_"])
def test_alembic_command_line_with_the_ini_file_migrates_too(tmp_path, prefix):
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    alembic = Path(sys.executable).parent / "alembic"
    x_args = ["-x", f"url={url}", *(["-x", f"table_prefix={prefix}"] if prefix else [])]
    proc = subprocess.run(
        [str(alembic), "-c", str(REPO / "alembic.ini"), *x_args, "upgrade", "head"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert migrate.current_revision(url, table_prefix=prefix) == migrate.head_revision()
    assert schema_diffs(url, prefix) == []
    assert table_names(url) == set(tables(prefix).metadata.tables) | {prefix + VERSION_TABLE}


# --------------------------------------------------------------------------- kashq migrate


def kashq(*args: str, cwd: Path, env_url: str | None = None) -> subprocess.CompletedProcess[str]:
    from kashq.cli import app

    if "migrate" not in {command.name for command in app.registered_commands}:
        unavailable("kashq migrate", "migrate.register(app) is not in kashq/cli/__init__.py yet")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASHQ_")}
    env.update(NO_COLOR="1", COLUMNS="200")
    if env_url is not None:
        env["KASHQ_DATABASE_URL"] = env_url
    return subprocess.run(
        [str(Path(sys.executable).parent / "kashq"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_kashq_migrate_creates_the_tables_and_status_reports_the_revision(tmp_path):
    (tmp_path / "db").mkdir()
    url = f"sqlite:///{tmp_path / 'db' / 'app.sqlite'}"
    head = migrate.head_revision()

    before = kashq("migrate", "--status", "--database-url", url, cwd=tmp_path)
    assert before.returncode == 0, before.stderr
    assert f"current none, head {head}" in before.stdout
    assert not (tmp_path / "db" / "app.sqlite").exists(), "--status changes nothing"

    run = kashq("migrate", "--database-url", url, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert f"to revision {head}" in run.stdout
    assert migrate.current_revision(url) == head

    again = kashq("migrate", cwd=tmp_path, env_url=url)
    assert again.returncode == 0, again.stderr
    assert f"already at revision {head}" in again.stdout

    status = kashq("migrate", "--status", cwd=tmp_path, env_url=url)
    assert f"current {head}, head {head} (up to date)" in status.stdout


def test_kashq_migrate_defaults_to_the_configured_sqlite_file(tmp_path):
    run = kashq("migrate", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    [created] = [p for p in tmp_path.rglob("*.sqlite")]
    assert migrate.current_revision(f"sqlite:///{created}") == migrate.head_revision()


@pytest.mark.parametrize("status", [[], ["--status"]])
def test_kashq_migrate_on_an_unreachable_database_fails_in_one_line_without_password(
    tmp_path, status
):
    url = f"postgresql+psycopg://kashq:hunter2-secret@127.0.0.1:{free_port()}/app"
    run = kashq("migrate", *status, "--database-url", url, cwd=tmp_path)
    assert run.returncode == 1
    assert run.stdout == ""
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert "error:" in lines[0] and "127.0.0.1" in lines[0]
    assert "hunter2-secret" not in run.stderr
    assert "Traceback" not in run.stderr


def test_kashq_migrate_with_a_table_prefix_creates_prefixed_tables(tmp_path):
    url = f"sqlite:///{tmp_path / 'app.sqlite'}"

    run = kashq("migrate", "--database-url", url, "--table-prefix", "app_", cwd=tmp_path)
    bad = kashq("migrate", "--database-url", url, "--table-prefix", "App-", cwd=tmp_path)

    assert run.returncode == 0, run.stderr
    assert f"{url} (table prefix app_): migrated from nothing to revision {HEAD}" in run.stdout
    assert table_names(url) == {"app_" + name for name in KASHQ_TABLES | {VERSION_TABLE}}
    assert bad.returncode == 1
    [line] = bad.stderr.strip().splitlines()
    assert "invalid setting table_prefix (from the command line)" in line


def test_kashq_migrate_into_a_missing_directory_fails_in_one_line_and_creates_nothing(tmp_path):
    run = kashq("migrate", "--database-url", "sqlite:///data/app.sqlite", cwd=tmp_path)
    assert run.returncode == 1
    [line] = run.stderr.strip().splitlines()
    assert "the directory data of the SQLite database sqlite:///data/app.sqlite" in line
    assert list(tmp_path.iterdir()) == []


def test_kashq_migrate_with_a_malformed_url_fails_in_one_line(tmp_path):
    run = kashq("migrate", "--database-url", "nosuchdb://x:pw-123@host/db", cwd=tmp_path)
    assert run.returncode == 1
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "pw-123" not in run.stderr and "Traceback" not in run.stderr
