"""Database URLs: default drivers, missing drivers, connect timeouts, SQLite directories.

The servers are real (the machine's PostgreSQL and MariaDB); a black-holed
server is a local port that takes connections and never answers
(:class:`~tests.support.blackhole.BlackHole`). A missing driver is simulated
by hiding its module from ``import`` (``sys.modules[name] = None``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import make_url, text

from kashq import Job, QueueManager
from kashq.config import load_settings
from kashq.db import migrate
from kashq.db.engine import CONNECT_TIMEOUT_S, make_engine
from kashq.drivers.database import DatabaseDriver
from kashq.exceptions import ConfigError, DriverError, KashqError
from kashq.failed.database import DatabaseFailedJobStore
from tests.integration.test_database_driver import envelope
from tests.support.blackhole import BlackHole
from tests.support.databases import database

GENEROUS_S = 30.0  # far beyond the 5 s timeout; without one the call never returns


class Ping(Job):
    def handle(self) -> None:
        pass


@pytest.mark.parametrize(
    ("kind", "scheme"), [("postgres", "postgres"), ("postgres", "postgresql"), ("mariadb", "mysql")]
)
def test_urls_without_a_driver_use_the_one_kashqs_extras_install(kind, scheme, tmp_path):
    # postgres:// was refused ("Can't load plugin"), postgresql:// wanted psycopg2.
    with database(kind, tmp_path, migrated=True) as url:
        bare = make_url(url).set(drivername=scheme).render_as_string(hide_password=False)
        driver = DatabaseDriver(bare)
        try:
            pushed = envelope()
            driver.push(pushed)
            held = driver.reserve(["default"], lease_s=30)
            assert held is not None and held.id == pushed.id
            assert driver.engine.url.drivername in ("postgresql+psycopg", "mysql+pymysql")
        finally:
            driver.close()


@pytest.mark.parametrize(
    ("url", "module", "advice"),
    [
        ("postgres://app:pw-4321@db.internal/app", "psycopg", "pip install 'kashq[postgres]'"),
        ("postgresql+psycopg://app:pw-4321@db/app", "psycopg", "pip install 'kashq[postgres]'"),
        ("mysql://app:pw-4321@db.internal/app", "pymysql", "pip install 'kashq[mysql]'"),
    ],
)
def test_a_missing_driver_says_what_to_install(url, module, advice, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # `import psycopg` fails as if not installed
    with pytest.raises(DriverError) as caught:
        DatabaseDriver(url)
    message = str(caught.value)
    assert message.endswith(f"needs the {module} package: {advice}")
    assert "pw-4321" not in message and "\n" not in message


@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "mysql+pymysql"])
def test_dispatch_to_a_black_holed_database_fails_in_about_the_connect_timeout(scheme):
    # It waited forever: neither driver had a connect timeout by default.
    with BlackHole() as port:
        url = f"{scheme}://app:pw-4321@127.0.0.1:{port}/app"
        manager = QueueManager(load_settings(connection="database", database_url=url))
        started = time.monotonic()
        try:
            with pytest.raises(DriverError) as caught:
                manager.dispatch(Ping())
        finally:
            manager.close()
        elapsed_s = time.monotonic() - started
    assert CONNECT_TIMEOUT_S - 1 <= elapsed_s < GENEROUS_S
    message = str(caught.value)
    assert "\n" not in message and "pw-4321" not in message
    assert f"127.0.0.1:{port}" in message


def test_the_urls_own_connect_timeout_wins():
    with BlackHole() as port:
        store = DatabaseFailedJobStore(
            f"postgresql+psycopg://app@127.0.0.1:{port}/app?connect_timeout=8"
        )
        started = time.monotonic()
        with pytest.raises(KashqError, match="timeout"):
            store.count()
        elapsed_s = time.monotonic() - started
        store.close()
    assert 7 <= elapsed_s < GENEROUS_S, "waited the URL's 8 s, not the default 5 s"


def test_mysql_statements_may_outlast_the_connect_timeout_once_connected(tmp_path):
    # PyMySQL bounds the handshake's reads by the connect timeout; later reads must not be.
    with database("mariadb", tmp_path) as url:
        engine = make_engine(make_url(url).update_query_dict({"connect_timeout": "1"}))
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT SLEEP(2)")).scalar() == 0
        finally:
            engine.dispose()


def test_a_sqlite_url_in_a_missing_directory_is_one_line_and_creates_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'kashq.sqlite'}"
    with pytest.raises(DriverError) as by_driver:
        DatabaseDriver(url)
    with pytest.raises(ConfigError) as by_migrate:
        migrate.upgrade(url)
    for caught in (by_driver, by_migrate):
        message = str(caught.value)
        assert f"the directory {tmp_path / 'no' / 'such'} of the SQLite database" in message
        assert message.endswith("create it first (kashq creates the file, never a directory)")
    assert list(tmp_path.iterdir()) == []


def test_a_sqlite_file_in_an_existing_directory_is_still_created(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'kashq.sqlite'}"
    driver = DatabaseDriver(url)
    driver.push(envelope())
    driver.close()
    assert (tmp_path / "kashq.sqlite").is_file()
