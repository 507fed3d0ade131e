"""Batches from the command line: ``queue:batches``, ``queue:batch``, ``queue:retry-batch``,
``queue:cancel-batch`` and ``queue:prune-batches`` (Laravel's names)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from kashq.cli import output
from kashq.cli.common import ConnectionOpt, JsonOpt, opened
from kashq.dlq import retry_batch_failures
from kashq.exceptions import KashqError
from kashq.manager import QueueManager
from kashq.workflows.batch import Batch

BatchIdArg = Annotated[
    str, typer.Argument(metavar="ID", help="Id of the batch.", show_default=False)
]
DEFAULT_PRUNE_HOURS = 24


def state_of(batch: Batch) -> str:
    """One word for where a batch stands."""
    if batch.cancelled:
        return "cancelled"
    return "finished" if batch.finished else "running"


def batch_data(batch: Batch) -> dict[str, Any]:
    """A batch as JSON (``--json``)."""
    return {
        "id": batch.id,
        "name": batch.name,
        "state": state_of(batch),
        "total": batch.total,
        "pending": batch.pending,
        "processed": batch.processed,
        "failed": batch.failed,
        "progress": batch.progress(),
        "created_at": batch.created_at,
        "finished_at": batch.finished_at,
        "cancelled_at": batch.cancelled_at,
    }


@output.friendly
def batches_command(
    connection: ConnectionOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List batches, newest first: id, name, progress, failed jobs, state, created."""
    with opened(connection) as (manager, _):
        records = manager.batches().recent(limit)
        batches = [manager.batch_of(record, None) for record in records]
    if as_json:
        output.print_json([batch_data(batch) for batch in batches])
        return
    if not batches:
        output.line("No batches.")
        return
    rows = [
        [
            b.id, b.name or "-", f"{b.progress()}% ({b.processed}/{b.total})", str(b.failed),
            state_of(b), _when(b.created_at),
        ]
        for b in batches
    ]  # fmt: skip
    columns = ["id", "name", "progress", "failed", "state", "created"]
    output.show(output.table(columns, rows, flexible="name", right=["failed"]))


@output.friendly
def batch_command(
    batch_id: BatchIdArg, connection: ConnectionOpt = None, as_json: JsonOpt = False
) -> None:
    """Show one batch: its counts, state and times, and its failed jobs' ids."""
    with opened(connection) as (manager, _):
        batch = _found(manager, batch_id)
        failed_ids = batch.failed_job_ids()
    if as_json:
        output.print_json({**batch_data(batch), "failed_job_ids": failed_ids})
        return
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column(overflow="fold")
    for name, value in (
        ("id", batch.id),
        ("name", batch.name or "-"),
        ("state", state_of(batch)),
        ("progress", f"{batch.progress()}%"),
        ("jobs", f"{batch.total} total, {batch.pending} pending, {batch.processed} completed, "
                 f"{batch.failed} failed"),
        ("created", _when(batch.created_at)),
        ("finished", _when(batch.finished_at)),
        ("cancelled", _when(batch.cancelled_at)),
        ("failed jobs", ", ".join(failed_ids) or "-"),
    ):  # fmt: skip
        fields.add_row(name, value)
    output.show(fields)


@output.friendly
def retry_batch_command(batch_id: BatchIdArg, connection: ConnectionOpt = None) -> None:
    """Re-run the failed jobs of a batch (from failed_jobs); when they complete, the batch
    counts them, and its callbacks still run once each."""
    with opened(connection) as (manager, store):
        batch = _found(manager, batch_id)
        try:
            retried, missing = retry_batch_failures(
                manager, store, batch, connection or manager.settings.connection
            )
        except KashqError as exc:
            raise output.fail(str(exc)) from None
        for job_id in missing:
            output.warning(f"job {job_id} of the batch is not in failed_jobs (forgotten?)")
    output.line(f"Retried {retried} failed job(s) of batch {batch.id}.")


@output.friendly
def cancel_batch_command(batch_id: BatchIdArg, connection: ConnectionOpt = None) -> None:
    """Cancel a batch: its jobs not yet started end cancelled on every worker within a second."""
    with opened(connection) as (manager, _):
        batch = _found(manager, batch_id)
        if batch.finished:
            raise output.fail(f"batch {batch.id} has already finished")
        batch.cancel()
    output.line(f"Batch {batch.id} cancelled: {batch.pending} job(s) had not ended.")


@output.friendly
def prune_batches_command(
    connection: ConnectionOpt = None,
    hours: Annotated[
        float,
        typer.Option("--hours", min=0, help="Prune batches finished more than this long ago."),
    ] = DEFAULT_PRUNE_HOURS,
) -> None:
    """Delete the batches that finished more than --hours ago (default 24)."""
    with opened(connection) as (manager, _):
        pruned = manager.batches().prune(manager.clock.time() - hours * 3600)
    output.line(f"Pruned {pruned} finished batch(es).")


def _found(manager: QueueManager, batch_id: str) -> Batch:
    batch = manager.find_batch(batch_id.strip())
    if batch is None:
        raise output.fail(f"no batch {batch_id.strip()!r} on this connection (unknown or pruned)")
    return batch


def _when(at: float | None) -> str:
    return "-" if at is None else output.local_time(datetime.fromtimestamp(at).astimezone())


def register(app: typer.Typer) -> None:
    app.command("queue:batches")(batches_command)
    app.command("queue:batch")(batch_command)
    app.command("queue:retry-batch")(retry_batch_command)
    app.command("queue:cancel-batch")(cancel_batch_command)
    app.command("queue:prune-batches")(prune_batches_command)
