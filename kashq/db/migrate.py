"""Alembic, driven from code: ``kashq migrate`` and the self-migrating SQLite default.

The migration scripts ship inside the wheel as ``kashq/migrations`` (copied
from the repository's top-level ``alembic/`` at build time); an editable
install uses ``alembic/`` directly. kashq records its revision in its own
version table (``kashq_alembic_version``), so it never collides with the host
application's Alembic history in the same database.

Under a table prefix (``KASHQ_TABLE_PREFIX``) every name the migrations create,
the version table's too, starts with it: the engine carries the prefix
(:func:`~kashq.db.engine.table_prefix_of`), ``env.py`` hands it to the
revision scripts, and they name things with :func:`prefixed`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import URL, Connection, Engine, inspect, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from kashq.db.engine import (
    PREFIX_OPTION,
    describe,
    first_line,
    make_engine,
    safe_url,
    sqlite_path,
    statement_mode,
    table_prefix_of,
    with_table_prefix,
)
from kashq.db.schema import VERSION_TABLE, check_table_prefix
from kashq.exceptions import ConfigError, DriverError

log = logging.getLogger(__name__)

_PACKAGED = Path(__file__).resolve().parent.parent / "migrations"
_REPOSITORY = Path(__file__).resolve().parents[2] / "alembic"
_SQLITE_ATTEMPTS = 10

Target = Engine | str | URL


def script_location() -> Path:
    """The directory holding ``env.py`` and ``versions/``: packaged copy first."""
    for candidate in (_PACKAGED, _REPOSITORY):
        if (candidate / "env.py").is_file():
            return candidate
    raise ConfigError(f"kashq's migration scripts are missing (looked in {_PACKAGED})")


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for kashq's migrations, optionally bound to ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_table", VERSION_TABLE)
    if connection is not None:
        config.set_main_option("version_table", connection_prefix(connection) + VERSION_TABLE)
        config.attributes["connection"] = connection
    return config


def connection_prefix(connection: Connection) -> str:
    """The table prefix the engine of ``connection`` carries."""
    return str(connection.get_execution_options().get(PREFIX_OPTION, ""))


def prefixed(name: str) -> str:
    """``name`` under the table prefix of the migration running now (for revision scripts)."""
    from alembic import op

    return str(op.get_context().opts.get(PREFIX_OPTION, "")) + name


@functools.cache
def head_revision() -> str:
    """The newest revision kashq ships."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the scripts always have one
        raise ConfigError("kashq's migration scripts have no head revision")
    return head


def upgrade(
    target: Target, revision: str = "head", *, table_prefix: str | None = None
) -> str | None:
    """Migrate ``target`` up to ``revision``; returns the revision it is at afterwards.

    ``table_prefix``: the install's (default: the engine's, or none for a URL).
    """
    return _migrate(target, "upgrade", revision, table_prefix)


def downgrade(
    target: Target, revision: str = "base", *, table_prefix: str | None = None
) -> str | None:
    """Migrate ``target`` down to ``revision`` (``base`` drops kashq's tables)."""
    return _migrate(target, "downgrade", revision, table_prefix)


def current_revision(target: Target, *, table_prefix: str | None = None) -> str | None:
    """The revision ``target`` is at, or None if kashq's tables were never created.

    Never creates anything, not even an empty SQLite file.
    """
    if not isinstance(target, Engine) and _missing_sqlite_file(target):
        return None
    try:
        with _engine(target, table_prefix) as engine, engine.connect() as conn:
            return _current(statement_mode(conn))
    except SQLAlchemyError as exc:
        raise DriverError(
            f"cannot read the schema version of {safe_url(target)}: {describe(target, exc)}"
        ) from exc


def ensure_schema(engine: Engine) -> None:
    """Make sure kashq's tables exist and are current before first use.

    A SQLite database migrates itself: several processes starting at once
    serialise on SQLite's write lock (``BEGIN IMMEDIATE``), and the losers
    find the work done. Any other database must be migrated explicitly, so
    a missing or outdated schema is a :class:`ConfigError` saying so.
    """
    head = head_revision()
    with engine.connect() as conn:
        current = _current(statement_mode(conn))
    if current == head:
        return
    if engine.dialect.name != "sqlite":
        prefix = table_prefix_of(engine)
        tables = f"kashq tables (prefix {prefix})" if prefix else "kashq tables"
        found = f"has no {tables}" if current is None else f"is at revision {current}"
        how = f"KASHQ_TABLE_PREFIX={prefix} kashq migrate" if prefix else "kashq migrate"
        raise ConfigError(f"database {safe_url(engine)} {found} (kashq needs {head}): run `{how}`")
    for attempt in range(1, _SQLITE_ATTEMPTS + 1):
        try:
            with engine.begin() as conn:
                command.upgrade(alembic_config(conn), "head")
            log.info("migrated %s to kashq revision %s", safe_url(engine), head)
            return
        except CommandError as exc:  # e.g. a revision from a newer kashq
            raise ConfigError(f"cannot migrate {safe_url(engine)}: {first_line(exc)}") from None
        except OperationalError as exc:
            if attempt == _SQLITE_ATTEMPTS or "locked" not in str(exc.orig).lower():
                raise
            time.sleep(0.05 * attempt)


def _migrate(target: Target, direction: str, revision: str, table_prefix: str | None) -> str | None:
    try:
        with _engine(target, table_prefix) as engine:
            with engine.begin() as conn:
                config = alembic_config(conn)
                if direction == "upgrade":
                    command.upgrade(config, revision)
                else:
                    command.downgrade(config, revision)
            with engine.connect() as conn:
                return _current(statement_mode(conn))
    except CommandError as exc:
        raise ConfigError(f"cannot {direction} to {revision!r}: {first_line(exc)}") from None
    except SQLAlchemyError as exc:
        raise DriverError(
            f"cannot {direction} {safe_url(target)}: {describe(target, exc)}"
        ) from exc


def _missing_sqlite_file(url: str | URL) -> bool:
    path = sqlite_path(url)
    return path is not None and not path.exists()


def _current(conn: Connection) -> str | None:
    # Read the version table directly: building an Alembic MigrationContext
    # just to look logs "Context impl ..." at INFO on every first use.
    version_table = connection_prefix(conn) + VERSION_TABLE  # a checked prefix: safe to splice
    if not inspect(conn).has_table(version_table):
        return None
    versions = conn.execute(text(f"SELECT version_num FROM {version_table}")).scalars().all()
    if len(versions) > 1:
        raise ConfigError(f"{version_table} holds several revisions: {', '.join(versions)}")
    return versions[0] if versions else None


@contextmanager
def _engine(target: Target, prefix: str | None) -> Iterator[Engine]:
    """An engine for ``target`` carrying ``prefix`` (default: the engine's, or none)."""
    if isinstance(target, Engine):
        yield with_table_prefix(target, table_prefix_of(target) if prefix is None else prefix)
        return
    engine = make_engine(target, table_prefix=check_table_prefix(prefix or ""))
    try:
        yield engine
    finally:
        engine.dispose()
