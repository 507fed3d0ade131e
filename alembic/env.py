"""Alembic environment for kashq's tables.

Works two ways: called from code (``kashq migrate``, the self-migrating
SQLite default) with an open connection in ``config.attributes["connection"]``,
or from the ``alembic`` command line with ``alembic.ini``, where the URL is
``-x url=...`` or kashq's configured ``database_url``.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from kashq.db.schema import VERSION_TABLE, metadata

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite can ALTER little; batch mode rebuilds tables for later revisions.
        render_as_batch=connection.dialect.name == "sqlite",
        # SQLite does run DDL inside transactions: migrate atomically there too.
        transactional_ddl=connection.dialect.name in ("sqlite", "postgresql"),
    )


def _url() -> str:
    given = context.get_x_argument(as_dictionary=True).get("url")
    if given:
        return given
    from kashq.config import load_settings

    return load_settings().database_url


def run_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
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

    engine = make_engine(_url())
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
