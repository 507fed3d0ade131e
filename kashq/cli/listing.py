"""``queue:jobs``: the jobs of a state, filtered by queue, type and tag, a page at a time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from kashq.cli import output
from kashq.cli.common import ConnectionArg, ConnectionOpt, JsonOpt, either, one_queue, opened
from kashq.listing import LIMIT_MAX, STATES, JobPage, JobSummary

_TIME_COLUMN = {
    "ready": ("available", "available_at"),
    "delayed": ("runs at", "available_at"),
    "reserved": ("lease until", "lease_until"),
    "running": ("lease until", "lease_until"),
}


@output.friendly
def jobs_command(
    connection: ConnectionArg = None,
    connection_option: ConnectionOpt = None,
    *,
    state: Annotated[
        str,
        typer.Option("--state", "-s", help=f"One of: {', '.join(STATES)} (completed: recently)."),
    ] = "ready",
    queue: Annotated[
        str | None,
        typer.Option("--queue", "-q", help="One queue (default: every queue).", show_default=False),
    ] = None,
    job_type: Annotated[
        str | None,
        typer.Option(
            "--type", "-t", help="Only jobs of this type (registry name).", show_default=False
        ),
    ] = None,
    tag: Annotated[
        str | None, typer.Option("--tag", help="Only jobs carrying this tag.", show_default=False)
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=LIMIT_MAX, help="Jobs per page.")
    ] = 50,
    cursor: Annotated[
        str | None,
        typer.Option("--cursor", help="Where the previous page stopped.", show_default=False),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List jobs by state (ready, delayed, running, failed, completed recently ...), newest or
    next first, filtered by queue, type and tag, a page at a time (--cursor)."""
    name = one_queue(queue)
    with opened(either(connection, connection_option)) as (manager, _):
        try:
            page = manager.jobs(
                queue=name, state=state, job_type=job_type, tag=tag, limit=limit, cursor=cursor
            )
        except ValueError as exc:
            raise output.fail(str(exc), code=2) from None
    if as_json:
        output.print_json({"jobs": [job.to_dict() for job in page.jobs], "cursor": page.cursor})
        return
    _show(page, state)


def _show(page: JobPage, state: str) -> None:
    if not page.jobs:
        output.line(f"No {state} jobs.")
    else:
        label, field = _TIME_COLUMN.get(state, ("finished", "finished_at"))
        columns = ["id", "queue", "job", "attempts", label, "tags"]
        ended = state not in _TIME_COLUMN
        if ended:
            columns.append("error")
        rows = [_row(job, field, ended) for job in page.jobs]
        output.show(output.table(columns, rows, flexible="error" if ended else "tags"))
    if page.cursor is not None:
        output.line(f"More: add --cursor {page.cursor}")


def _row(job: JobSummary, field: str, ended: bool) -> list[str]:
    at = getattr(job, field)
    when = "" if at is None else datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")
    row = [job.id, job.queue, job.job_type, str(job.attempts), when, ", ".join(job.tags)]
    return [*row, job.error] if ended else row


def register(app: typer.Typer) -> None:
    app.command("queue:jobs")(jobs_command)
