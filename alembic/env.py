"""Alembic environment for kashq's tables.

Works two ways: called from code (``kashq migrate``, the self-migrating
SQLite default) with an open connection in ``config.attributes["connection"]``,
or from the ``alembic`` command line with ``alembic.ini``, where the URL is
``-x url=...`` and the table prefix ``-x table_prefix=...``, else
kashq's configured ``database_url`` and ``table_prefix``. The prefix reaches
the revision scripts as a context option (:func:`kashq.db.migrate.prefixed`).
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from kashq.db.engine import PREFIX_OPTION
from kashq.db.migrate import connection_prefix
from kashq.db.schema import VERSION_TABLE, tables

config = context.config


def _configure(connection: Connection) -> None:
    prefix = connection_prefix(connection)
    context.configure(
        connection=connection,
        target_metadata=tables(prefix).metadata,
        version_table=prefix + VERSION_TABLE,
        # SQLite can ALTER little; batch mode rebuilds tables for later revisions.
        render_as_batch=connection.dialect.name == "sqlite",
        # SQLite does run DDL inside transactions: migrate atomically there too.
        transactional_ddl=connection.dialect.name in ("sqlite", "postgresql"),
        **{PREFIX_OPTION: prefix},  # what kashq.db.migrate.prefixed() reads
    )


def _setting(x_name: str, setting: str) -> str:
    """``-x <x_name>=...``, else kashq's configured ``setting``."""
    given = context.get_x_argument(as_dictionary=True).get(x_name)
    if given is not None:
        return given
    from kashq.config import load_settings

    return str(getattr(load_settings(), setting))


def run_offline() -> None:
    prefix = _setting("table_prefix", "table_prefix")
    context.configure(
        url=_setting("url", "database_url"),
        target_metadata=tables(prefix).metadata,
        version_table=prefix + VERSION_TABLE,
        literal_binds=True,
        **{PREFIX_OPTION: prefix},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    from kashq.db.engine import make_engine

    engine = make_engine(
        _setting("url", "database_url"), table_prefix=_setting("table_prefix", "table_prefix")
    )
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
