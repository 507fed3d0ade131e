"""The event store: ``queue:events`` (one job's timeline), ``queue:tail`` (live) and
``queue:prune-events``.

They read the store of the configured connection (the Redis stream under the
prefix, or the ``job_events`` table), whatever ``KASHQ_EVENTS`` says: that
setting only decides whether workers and dispatchers record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Annotated, Any

import typer

from kashq.cli import output
from kashq.cli.common import (
    ConnectionArg,
    ConnectionOpt,
    JsonOpt,
    comma_list,
    either,
    open_manager,
    queue_list,
)
from kashq.events import EVENT_TYPES, Event, EventStore, store_for


@contextmanager
def opened_store(connection: str | None) -> Iterator[EventStore]:
    """The event store of ``connection``, closed (with its manager) afterwards."""
    manager = open_manager(connection)
    try:
        if manager.settings.connection == "database":
            from kashq.db.engine import require_existing

            require_existing(manager.settings.database_url)  # reading creates nothing
        store = store_for(manager.connection(), manager.settings, always=True)
        try:
            yield store
        finally:
            store.close()
    finally:
        manager.close()


def event_data(event: Event) -> dict[str, Any]:
    """An event as JSON-ready data, with ``time`` in ISO 8601 (UTC) beside ``at``."""
    data = event.to_dict()
    data["time"] = datetime.fromtimestamp(event.at, tz=timezone.utc).isoformat()
    return data


def event_time(at: float) -> str:
    """Local time with milliseconds."""
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def details_text(event: Event) -> str:
    parts = []
    for key, value in event.details.items():
        text = value if isinstance(value, str) else json.dumps(value)
        parts.append(f"{key}={text}")
    return " ".join(parts)


@output.friendly
def events_command(
    job_id: Annotated[str, typer.Argument(help="Id (uuid) of the job.", show_default=False)],
    connection: ConnectionArg = None,
    as_json: JsonOpt = False,
    connection_option: ConnectionOpt = None,
) -> None:
    """Show the recorded history of one job: dispatched, started, failed attempts, completed..."""
    with opened_store(either(connection, connection_option)) as store:
        events = store.get_job_events(job_id.strip())
    if not events:
        raise output.fail(f"no events recorded for job {job_id!r}")
    if as_json:
        output.print_json([event_data(e) for e in events])
        return
    rows = [
        [event_time(e.at), e.type, str(e.attempt), details_text(e), f"{e.host}:{e.pid}"]
        for e in events
    ]
    grid = output.table(
        ["time", "event", "attempt", "details", "worker"],
        rows,
        flexible="details",
        right=["attempt"],
    )
    grid.title = f"job {events[0].job_id} ({events[0].job_type} on {events[0].queue})"
    output.show(grid)


def _names(value: str | None, option: str, allowed: tuple[str, ...] = ()) -> set[str] | None:
    if value is None:
        return None
    names = set(comma_list(value))
    if not names:
        raise output.fail(f"{option} needs at least one name", code=2)
    unknown = sorted(names - set(allowed)) if allowed else []
    if unknown:
        raise output.fail(
            f"unknown event type {unknown[0]!r} for {option}: expected " + ", ".join(allowed),
            code=2,
        )
    return names


@output.friendly
def tail_command(
    connection: ConnectionArg = None,
    *,
    connection_option: ConnectionOpt = None,
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue", "-q", help="Only these queues (comma-separated).", show_default=False
        ),
    ] = None,
    event_type: Annotated[
        str | None,
        typer.Option(
            "--type", "-t", help="Only these event types (comma-separated).", show_default=False
        ),
    ] = None,
    after: Annotated[
        str | None,
        typer.Option(
            "--after", help="Start after this position (default: from now on).", show_default=False
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per line.")
    ] = False,
) -> None:
    """Print job events live as they are recorded, one line each (Ctrl-C to stop)."""
    queues = set(queue_list(queue)) or None
    types = _names(event_type, "--type", EVENT_TYPES)
    try:
        with (
            output.sigterm_as_ctrl_c(),
            opened_store(either(connection, connection_option)) as store,
        ):
            for event in store.tail(after):
                if (queues is None or event.queue in queues) and (
                    types is None or event.type in types
                ):
                    _print_event(event, as_json)
    except KeyboardInterrupt:
        return


def _print_event(event: Event, as_json: bool) -> None:
    if as_json:
        output.line(json.dumps(event_data(event)))
        return
    output.line(
        f"{event_time(event.at)}  {event.type:<14} {event.queue}  {event.job_type}  {event.job_id}"
        f"  attempt {event.attempt}  {details_text(event)}".rstrip()
    )


@output.friendly
def prune_command(
    connection: ConnectionArg = None,
    connection_option: ConnectionOpt = None,
    hours: Annotated[
        float, typer.Option("--hours", min=0, help="Delete events older than this many hours.")
    ] = 168,
) -> None:
    """Delete recorded job events older than --hours (default 168, a week)."""
    with opened_store(either(connection, connection_option)) as store:
        count = store.prune(hours * 3600)
    output.line(f"Pruned {count} event{'' if count == 1 else 's'} older than {hours:g} hours.")


def register(app: typer.Typer) -> None:
    app.command("queue:events")(events_command)
    app.command("queue:tail")(tail_command)
    app.command("queue:prune-events")(prune_command)
