"""``kashq migrate``: create or update kashq's tables (``kashq_jobs``, ``failed_jobs``)."""

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
    status: Annotated[
        bool,
        typer.Option("--status", help="Show the current and the newest revision; change nothing."),
    ] = False,
) -> None:
    """Apply kashq's database migrations (SQLite, PostgreSQL, MySQL/MariaDB)."""
    from kashq.config import load_settings
    from kashq.db import migrate
    from kashq.db.engine import safe_url

    url = database_url or load_settings().database_url
    shown = safe_url(url)
    head = migrate.head_revision()
    if status:
        current = migrate.current_revision(url)
        if current == head:
            state = "up to date"
        elif current is None:
            state = "no kashq tables yet: run `kashq migrate`"
        else:
            state = "behind: run `kashq migrate`"
        output.out.print(f"{shown}: current {current or 'none'}, head {head} ({state})")
        return
    before = migrate.current_revision(url)
    after = migrate.upgrade(url)
    if before == after:
        output.out.print(f"{shown}: already at revision {after} (head)")
    else:
        output.out.print(f"{shown}: migrated from {before or 'nothing'} to revision {after} (head)")


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate_command)
