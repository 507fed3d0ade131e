"""A private, empty database per test: a SQLite file, a PostgreSQL schema, a MariaDB database.

``database(kind, tmp_path)`` yields a SQLAlchemy URL string for a database
that exists only for the test and is dropped afterwards. PostgreSQL tests get
a fresh schema selected through the connection's ``search_path`` (carried in
the URL, so subprocesses see the same schema); MariaDB tests a fresh database.
``migrated=True`` applies kashq's migrations first (SQLite migrates itself,
the servers need it).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError

from kashq.db import migrate
from tests.support.services import MARIADB_URL, POSTGRES_URL, unavailable

KINDS = ("sqlite", "postgres", "mariadb")
SERVER_KINDS = ("postgres", "mariadb")


def _name() -> str:
    return f"kashq_test_{secrets.token_hex(6)}"


def _run_admin(url: str, what: str, statement: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(statement))
    except SQLAlchemyError as exc:
        unavailable(what, str(exc).splitlines()[0])
    finally:
        engine.dispose()


@contextmanager
def postgres_database() -> Iterator[str]:
    schema = _name()
    _run_admin(POSTGRES_URL, "PostgreSQL", f"CREATE SCHEMA {schema}")
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        _run_admin(POSTGRES_URL, "PostgreSQL", f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@contextmanager
def mariadb_database() -> Iterator[str]:
    name = _name()
    _run_admin(MARIADB_URL, "MariaDB", f"CREATE DATABASE {name}")
    try:
        yield make_url(MARIADB_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        _run_admin(MARIADB_URL, "MariaDB", f"DROP DATABASE IF EXISTS {name}")


@contextmanager
def database(kind: str, tmp_path: Path, *, migrated: bool = False) -> Iterator[str]:
    """A URL for a new, empty database of ``kind`` (see the module docstring)."""
    if kind == "sqlite":
        (tmp_path / "db").mkdir(exist_ok=True)
        url = f"sqlite:///{tmp_path / 'db' / 'kashq.sqlite'}"
        if migrated:
            migrate.upgrade(url)
        yield url
        return
    maker = postgres_database if kind == "postgres" else mariadb_database
    with maker() as url:
        if migrated:
            migrate.upgrade(url)
        yield url
