"""KASHQ_TABLE_PREFIX: every database piece of one install uses its own prefixed tables.

On SQLite, PostgreSQL and MariaDB: an install under ``app_`` keeps its queue,
failed jobs, control records, locks, counters and events in ``app_*`` tables
(and writes nothing anywhere else), and an unprefixed install in the same
database is a separate kashq.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from kashq import Job, QueueManager
from kashq.config import load_settings
from kashq.db import migrate
from kashq.db.schema import VERSION_TABLE, tables
from kashq.events.database import DatabaseEventStore
from kashq.exceptions import ConfigError, DriverError
from tests.support.databases import KINDS, database

RAN: list[str] = []


class Noted(Job):
    note: str

    def handle(self) -> None:
        RAN.append(self.note)


class Doomed(Job):
    tries = 1

    def handle(self) -> None:
        raise RuntimeError("doomed on purpose")


def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def install(url: str, prefix: str) -> QueueManager:
    settings = load_settings(connection="database", database_url=url, table_prefix=prefix)
    return QueueManager(settings)


def use_every_piece(manager: QueueManager, note: str) -> str:
    """Dispatch, run, fail, lock, count and record events; returns the dispatched job's id."""
    job_id = manager.dispatch(Noted(note=note))
    manager.dispatch(Doomed())
    manager.worker(stop_when_empty=True, sleep_s=0.05).run(1)
    driver = manager.connection()
    driver.put_control("restart", note)
    locks = manager.locks()
    assert locks.try_acquire("shared-name", 60) is not None
    assert locks.hit("shared-counter", 60) == 1
    assert job_id is not None
    return job_id


@pytest.mark.parametrize("kind", KINDS)
def test_an_install_under_a_prefix_keeps_everything_in_its_own_tables(kind: str, tmp_path: Path):
    app = set(tables("app_").metadata.tables) | {"app_" + VERSION_TABLE}
    plain = set(tables("").metadata.tables) | {VERSION_TABLE}
    with database(kind, tmp_path) as url:
        assert migrate.upgrade(url, table_prefix="app_") == migrate.head_revision()
        RAN.clear()
        prefixed = install(url, "app_")
        try:
            app_job = use_every_piece(prefixed, "app")
        finally:
            prefixed.close()
        assert RAN == ["app"]
        assert table_names(url) == app, "nothing was written to an unprefixed table"

        migrate.upgrade(url)
        unprefixed = install(url, "")
        try:
            assert unprefixed.connection().sizes(["default"])["default"].total == 0
            assert unprefixed.failed_store().count() == 0
            assert unprefixed.connection().get_control() == {}
            plain_job = use_every_piece(unprefixed, "plain")  # the same lock name is free here
            assert unprefixed.failed_store().count() == 1
        finally:
            unprefixed.close()
        assert RAN == ["app", "plain"]
        assert table_names(url) == app | plain

        prefixed = install(url, "app_")
        try:
            assert prefixed.failed_store().count() == 1
            assert prefixed.connection().get_control() == {"restart": "app"}
            assert prefixed.locks().try_acquire("shared-name", 60) is None, "still held"
        finally:
            prefixed.close()
        for prefix, mine, other in (("app_", app_job, plain_job), ("", plain_job, app_job)):
            events = DatabaseEventStore(url, table_prefix=prefix)
            assert [e.type for e in events.get_job_events(mine)][:2] == ["dispatched", "started"]
            assert events.get_job_events(other) == []
            events.close()


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
def test_a_server_database_migrated_without_the_prefix_asks_for_a_prefixed_migrate(
    kind: str, tmp_path: Path
):
    with database(kind, tmp_path, migrated=True) as url:
        manager = install(url, "app_")
        try:
            with pytest.raises(DriverError) as caught:
                manager.connection().sizes(["default"])
        finally:
            manager.close()
    assert "has no kashq tables (prefix app_)" in str(caught.value)
    assert str(caught.value).endswith("run `KASHQ_TABLE_PREFIX=app_ kashq migrate`")


@pytest.mark.parametrize("bad", ["App_", "1app", "app-", "app_" * 9, "x y"])
def test_a_bad_table_prefix_is_one_line_naming_the_setting(bad: str):
    with pytest.raises(ConfigError) as caught:
        load_settings(table_prefix=bad)
    message = str(caught.value)
    assert message.startswith("invalid setting table_prefix (from load_settings()): ")
    assert "lowercase letters, digits and underscores" in message and "\n" not in message
    with pytest.raises(ConfigError, match="invalid table prefix"):
        tables(bad)
