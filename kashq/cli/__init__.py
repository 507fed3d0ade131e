"""The ``kashq`` command: one Typer app assembled from one module per command group."""

from __future__ import annotations

from typing import Annotated

import typer

from kashq._version import __version__
from kashq.cli import (
    batches,
    control,
    dashboard,
    events,
    failed,
    jobs,
    listing,
    make,
    migrate,
    outbox,
    output,
    queues,
    schedule,
    webhooks,
    work,
)

app = typer.Typer(
    name="kashq",
    help="kashq: background jobs for Python, the Laravel way.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        output.out.print(f"kashq {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """kashq: background jobs for Python, the Laravel way."""
    output.show_warnings_of("kashq.config")  # unknown KASHQ_* variables, say


make.register(app)
migrate.register(app)
work.register(app)
queues.register(app)
control.register(app)
batches.register(app)
failed.register(app)
events.register(app)
jobs.register(app)
listing.register(app)
schedule.register(app)
webhooks.register(app)
dashboard.register(app)
outbox.register(app)


def main() -> None:
    """Entry point of the ``kashq`` console script."""
    app()
