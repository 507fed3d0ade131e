"""dispatch(using=...): a job written in the application's own transaction, on SQLite,
PostgreSQL and MariaDB; the outbox and its relay for the Redis connection; after_commit."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.orm import Session

import kashq
from kashq import Job
from kashq import outbox as outbox_module
from kashq.drivers.base import QueueSizes
from kashq.exceptions import ConfigError, DriverError
from kashq.manager import QueueManager
from tests.support.databases import KINDS, database
from tests.support.redis import delete_prefix, shared_client
from tests.support.services import REDIS_URL


class Ship(Job):
    order: int

    def handle(self) -> None:
        pass


class ShipOnce(Job):
    order: int
    unique_for = 60

    def handle(self) -> None:
        pass


@pytest.fixture(params=KINDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path, migrated=True) as made:
        engine = create_engine(made)
        with engine.begin() as conn:  # the application's own table, beside kashq's
            conn.execute(text("CREATE TABLE orders (id INTEGER PRIMARY KEY)"))
        engine.dispose()
        yield made


@contextmanager
def managed(url: str, **settings: Any) -> Iterator[QueueManager]:
    manager = QueueManager(kashq.Settings(database_url=url, **settings))
    try:
        yield manager
    finally:
        manager.close()


def sizes(manager: QueueManager) -> QueueSizes:
    return manager.connection().sizes(["default"])["default"]


def orders(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM orders")).scalar_one())


def test_a_job_written_in_a_session_exists_only_if_the_session_commits(url):
    engine = create_engine(url)
    with managed(url, connection="database") as manager:
        with Session(engine) as session:
            session.execute(text("INSERT INTO orders (id) VALUES (1)"))
            handle = manager.dispatch(Ship(order=1), using=session)
            session.rollback()
        assert (orders(engine), sizes(manager)) == (0, QueueSizes())

        with Session(engine) as session:
            session.execute(text("INSERT INTO orders (id) VALUES (2)"))
            handle = manager.dispatch(Ship(order=2), using=session)
            assert sizes(manager) == QueueSizes(), "not committed yet: nobody sees it"
            session.commit()
        assert (orders(engine), sizes(manager)) == (1, QueueSizes(ready=1))
        assert handle is not None
        res = manager.connection().reserve(["default"], lease_s=30)
        assert res is not None and res.id == handle.id
    engine.dispose()


def test_jobs_written_on_a_connection_commit_and_roll_back_with_it(url):
    engine = create_engine(url)
    with managed(url, connection="database") as manager:
        with engine.connect() as conn:
            conn.execute(text("INSERT INTO orders (id) VALUES (1)"))
            manager.dispatch_many([Ship(order=1), Ship(order=2).with_tags("vip")], using=conn)
            conn.rollback()
            conn.execute(text("INSERT INTO orders (id) VALUES (2)"))
            manager.dispatch_many([Ship(order=3), Ship(order=4).with_tags("vip")], using=conn)
            conn.commit()
        assert (orders(engine), sizes(manager)) == (1, QueueSizes(ready=2))
        listed = manager.connection().list_jobs("default", "ready", tag="vip")
        assert len(listed.jobs) == 1
    engine.dispose()


def dbapi_connection(url: str) -> Any:
    """A DB-API connection of the driver kashq installs, to the same database as ``url``."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return sqlite3.connect(parsed.database)
    if backend == "postgresql":
        return psycopg.connect(parsed.set(drivername="postgresql").render_as_string(False))
    return pymysql.connect(host=parsed.host, user=parsed.username, database=parsed.database)


def test_a_raw_dbapi_connection_carries_the_job_in_its_transaction(url):
    with managed(url, connection="database") as manager:
        conn = dbapi_connection(url)
        try:
            manager.dispatch(Ship(order=1), using=conn)
            conn.rollback()
            assert sizes(manager) == QueueSizes()
            manager.dispatch(Ship(order=2), using=conn)
            conn.commit()
            assert sizes(manager) == QueueSizes(ready=1)
        finally:
            conn.close()


def test_after_commit_pushes_when_the_session_commits_and_drops_on_rollback(url):
    engine = create_engine(url)
    with managed(url, connection="database", after_commit=True) as manager:
        with Session(engine) as session:
            manager.dispatch(Ship(order=1), using=session)
            manager.dispatch(Ship(order=2).before_commit(), using=session)  # in the transaction
            session.rollback()
        assert sizes(manager) == QueueSizes()
        with Session(engine) as session:
            manager.dispatch(Ship(order=3), using=session)
            assert sizes(manager) == QueueSizes()  # waits for the commit
            session.commit()
        assert sizes(manager) == QueueSizes(ready=1)
        with (
            engine.connect() as conn,
            pytest.raises(ConfigError, match="needs an SQLAlchemy Session"),
        ):
            manager.dispatch(Ship(order=4), using=conn)
    engine.dispose()


def test_a_unique_jobs_claim_is_freed_when_its_session_rolls_back(url):
    engine = create_engine(url)
    with managed(url, connection="database") as manager:
        with Session(engine) as session:
            assert manager.dispatch(ShipOnce(order=1), using=session) is not None
            session.rollback()
        assert manager.dispatch(ShipOnce(order=1)) is not None, "the claim went with it"
    engine.dispose()


def test_a_transaction_on_another_database_is_refused_in_one_line(tmp_path):
    with database("sqlite", tmp_path) as sqlite_url, managed(sqlite_url) as manager:
        with database("postgres", tmp_path, migrated=True) as pg_url:
            engine = create_engine(pg_url)
            with Session(engine) as session, pytest.raises(ConfigError) as caught:
                manager.dispatch(Ship(order=1), using=session)
            engine.dispose()
        assert "got a PostgreSQL connection" in str(caught.value)
        assert "\n" not in str(caught.value)
        with pytest.raises(TypeError, match="takes an SQLAlchemy Session"):
            manager.dispatch(Ship(order=1), using="postgresql://somewhere")


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"kashq-test-outbox-{uuid.uuid4().hex[:10]}"
    yield prefix
    delete_prefix(shared_client(), prefix)


def test_on_redis_a_committed_job_waits_in_the_outbox_until_the_relay_pushes_it_once(
    url, redis_prefix
):
    engine = create_engine(url)
    settings = {"connection": "redis", "redis_url": REDIS_URL, "prefix": redis_prefix}
    with managed(url, **settings) as manager:
        with Session(engine) as session:
            manager.dispatch(Ship(order=1), using=session)
            session.rollback()
        with Session(engine) as session:
            session.execute(text("INSERT INTO orders (id) VALUES (1)"))
            handle = manager.dispatch(Ship(order=2), using=session)
            session.commit()
        outbox = manager.outbox()
        assert (outbox.pending(), sizes(manager)) == (1, QueueSizes())
        assert outbox.relay(manager.connection) == 1
        assert (outbox.pending(), sizes(manager)) == (0, QueueSizes(ready=1))
        assert outbox.relay(manager.connection) == 0
        res = manager.connection().reserve(["default"], lease_s=30)
        assert handle is not None and res is not None and res.id == handle.id
    engine.dispose()


def test_a_sqlite_file_without_kashqs_tables_says_so_instead_of_waiting_for_its_lock(tmp_path):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    engine = create_engine(url)
    with managed(url, connection="database") as manager, Session(engine) as session:
        session.execute(text("CREATE TABLE orders (id INTEGER PRIMARY KEY)"))
        with pytest.raises(DriverError, match="run `kashq migrate`") as caught:
            manager.dispatch(Ship(order=1), using=session)
        assert "\n" not in str(caught.value)
    engine.dispose()


def test_relaying_everything_takes_as_many_full_passes_as_it_needs(url, redis_prefix, monkeypatch):
    monkeypatch.setattr(outbox_module, "RELAY_CHUNK", 2)
    engine = create_engine(url)
    settings = {"connection": "redis", "redis_url": REDIS_URL, "prefix": redis_prefix}
    with managed(url, **settings) as manager:
        with Session(engine) as session:
            manager.dispatch_many([Ship(order=n) for n in range(5)], using=session)
            session.commit()
        outbox = manager.outbox()
        assert outbox.relay_all(manager.connection) == 5
        assert (outbox.pending(), sizes(manager)) == (0, QueueSizes(ready=5))
    engine.dispose()
