"""``queue:job``: one job by id, wherever it is: its state, payload, result or error, history."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from kashq.cli import output
from kashq.cli.common import ConnectionArg, ConnectionOpt, JsonOpt, either, open_manager
from kashq.cli.events import details_text, event_data, event_time
from kashq.events import store_for
from kashq.events.base import Event
from kashq.status import JobDetails, JobNotFound, describe


@output.friendly
def job_command(
    job_id: Annotated[str, typer.Argument(help="Id (uuid) of the job.", show_default=False)],
    connection: ConnectionArg = None,
    as_json: JsonOpt = False,
    connection_option: ConnectionOpt = None,
) -> None:
    """Show one job: state, attempts, progress, payload, result or error, and its events."""
    manager = open_manager(either(connection, connection_option))
    try:
        if manager.settings.connection == "database":
            from kashq.db.engine import require_existing

            require_existing(manager.settings.database_url)  # reading creates nothing
        try:
            details = describe(job_id.strip(), manager)
        except JobNotFound as exc:
            raise output.fail(str(exc)) from None
        events_store = store_for(manager.connection(), manager.settings, always=True)
        events = events_store.get_job_events(job_id.strip())
    finally:
        manager.close()
    if as_json:
        output.print_json(_data(details, events))
    else:
        _show(details, events)


def _data(details: JobDetails, events: list[Event]) -> dict[str, Any]:
    env = details.envelope
    return {
        "status": details.status.to_dict(),
        "payload": None if env is None else env.payload,
        "metadata": None if env is None else env.metadata,
        "result": None if details.result is None else json.loads(details.result),
        "events": [event_data(e) for e in events],
    }


def _show(details: JobDetails, events: list[Event]) -> None:
    status, env = details.status, details.envelope
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column(overflow="fold")
    fields.add_row("id", status.id)
    fields.add_row("state", status.state)
    for name, value in (
        ("job", status.job_type),
        ("queue", status.queue),
        ("connection", status.connection),
        ("attempts", str(status.attempts)),
        ("dispatched", _when(status.created_at)),
        ("runs at", _when(status.available_at) if status.state in ("queued", "delayed") else ""),
        ("started", _when(status.started_at)),
        ("finished", _when(status.finished_at)),
        ("progress", _progress(status.progress, status.message)),
        ("error", status.error),
        ("reason", status.reason),
        ("result", details.result or ""),
    ):
        if value:
            fields.add_row(name, value)
    output.show(fields)
    if env is not None:
        output.line("\nPayload:")
        output.line(json.dumps(env.payload, indent=2))
        if env.metadata:
            output.line("\nMetadata:")
            output.line(json.dumps(env.metadata, indent=2))
    if events:
        rows = [[event_time(e.at), e.type, str(e.attempt), details_text(e)] for e in events]
        output.line("")
        output.show(output.table(["time", "event", "attempt", "details"], rows, flexible="details"))


def _when(at: float | None) -> str:
    return "" if at is None else datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def _progress(progress: float | None, message: str) -> str:
    if progress is None:
        return ""
    return f"{progress:.0%} {message}".rstrip()


def register(app: typer.Typer) -> None:
    app.command("queue:job")(job_command)
