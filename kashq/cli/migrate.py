"""``kashq migrate``: create or update kashq's tables (``kashq_jobs``, ``failed_jobs`` ...).

Under ``--table-prefix`` / ``KASHQ_TABLE_PREFIX`` every table name (the
version table's too) starts with the prefix.
"""

from __future__ import annotations

from typing import Annotated

import typer

from kashq.cli import output


@output.friendly
def migrate_command(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="KASHQ_DATABASE_URL",
            help="SQLAlchemy URL of the database (default: the configured database_url).",
            show_default=False,
        ),
    ] = None,
    table_prefix: Annotated[
        str | None,
        typer.Option(
            "--table-prefix",
            envvar="KASHQ_TABLE_PREFIX",
            help="Prefix of every kashq table name, e.g. app_ (default: none).",
            show_default=False,
        ),
    ] = None,
    status: Annotated[
        bool,
        typer.Option("--status", help="Show the current and the newest revision; change nothing."),
    ] = False,
) -> None:
    """Apply kashq's database migrations (SQLite, PostgreSQL, MySQL/MariaDB)."""
    from kashq.config import load_settings
    from kashq.db import migrate
    from kashq.db.engine import safe_url

    settings = load_settings(origin="the command line", table_prefix=table_prefix)
    url, prefix = database_url or settings.database_url, settings.table_prefix
    shown = safe_url(url) + (f" (table prefix {prefix})" if prefix else "")
    head = migrate.head_revision()
    if status:
        current = migrate.current_revision(url, table_prefix=prefix)
        if current == head:
            state = "up to date"
        elif current is None:
            state = "no kashq tables yet: run `kashq migrate`"
        else:
            state = "behind: run `kashq migrate`"
        output.out.print(f"{shown}: current {current or 'none'}, head {head} ({state})")
        return
    before = migrate.current_revision(url, table_prefix=prefix)
    after = migrate.upgrade(url, table_prefix=prefix)
    if before == after:
        output.out.print(f"{shown}: already at revision {after} (head)")
    else:
        output.out.print(f"{shown}: migrated from {before or 'nothing'} to revision {after} (head)")


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate_command)
