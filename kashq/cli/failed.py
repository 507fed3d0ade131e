"""The dead-letter queue from the shell: ``queue:failed``, ``queue:failed:show``,
``queue:retry``, ``queue:forget``, ``queue:flush`` and ``queue:prune-failed``.

They read and change the failed-job store of the configured connection; what a
failed job (a dead letter) is and where it is kept: :mod:`kashq.failed`.
``queue:retry`` retries as :class:`kashq.dlq.DeadLetterQueue` does (:func:`~kashq.dlq.push_back`).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

import typer
from rich.table import Table

from kashq.cli import output
from kashq.cli.common import ConnectionOpt, JsonOpt, one_queue, opened
from kashq.dlq import push_back
from kashq.exceptions import KashqError
from kashq.failed.base import FailedJob, FailedJobStore
from kashq.manager import QueueManager

# Connections a job can be pushed back to from another process.
DURABLE_CONNECTIONS = ("database", "redis", "sharded")
_ERROR_WIDTH = 80
_RANGE = re.compile(r"^\s*(\d{1,40})\s*-\s*(\d{1,40})\s*$", re.ASCII)
RANGE_CHUNK = 500  # failed jobs read at a time while retrying a --range

QueueFilterOpt = Annotated[
    str | None,
    typer.Option("--queue", "-q", help="Only failed jobs of this queue.", show_default=False),
]
IdArg = Annotated[str, typer.Argument(help="Numeric id or uuid of the failed job.")]


# --------------------------------------------------------------------------- listing


def record_data(job: FailedJob, *, full: bool = False) -> dict[str, Any]:
    """A failed job as JSON-ready data (``full`` adds the payload and the traceback)."""
    data: dict[str, Any] = {
        "id": job.id,
        "uuid": job.uuid,
        "connection": job.connection,
        "queue": job.queue,
        "job_type": job.job_type,
        "error": job.error,
        "attempts": job.attempts,
        "reason": job.reason,
        "failed_at": job.failed_at.isoformat(),
        "host": job.host,
        "pid": job.pid,
    }
    if full:
        data["payload"] = _payload_value(job.payload)
        data["exception"] = job.exception
    return data


def _payload_value(payload: str) -> Any:
    """The stored payload parsed as JSON, or the raw text when it is not JSON."""
    try:
        return json.loads(payload)
    except ValueError:
        return payload


def _first_line(text: str, width: int = _ERROR_WIDTH) -> str:
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else ""
    return first if len(first) <= width else first[: width - 1] + "…"


def _jobs_table(jobs: list[FailedJob]) -> Table:
    rows = [
        [
            str(job.id),
            job.queue,
            job.job_type,
            _first_line(job.error),
            str(job.attempts),
            job.reason,
            output.local_time(job.failed_at),
        ]
        for job in jobs
    ]
    columns = ["id", "queue", "job", "error", "attempts", "reason", "failed at"]
    return output.table(columns, rows, flexible="error", right=("id", "attempts"))


@output.friendly
def failed_command(
    key: Annotated[
        str | None,
        typer.Argument(help="Show this failed job (numeric id or uuid) instead of a list."),
    ] = None,
    queue: QueueFilterOpt = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", "-n", min=1, help="Show at most this many (newest first)."),
    ] = None,
    as_json: JsonOpt = False,
    connection: ConnectionOpt = None,
) -> None:
    """List failed jobs, newest first: id, queue, job, error, attempts, why retrying
    stopped, failed at."""
    queue = one_queue(queue)
    with opened(connection) as (_, store):
        if key is not None:
            _show(store, key, as_json)
            return
        jobs = store.all(queue=queue, limit=limit)
    if as_json:
        output.print_json([record_data(job) for job in jobs])
    elif not jobs:
        output.line("No failed jobs.")
    else:
        output.show(_jobs_table(jobs))


@output.friendly
def show_command(key: IdArg, as_json: JsonOpt = False, connection: ConnectionOpt = None) -> None:
    """Show one failed job: its fields, payload and full traceback."""
    with opened(connection) as (_, store):
        _show(store, key, as_json)


def _find(store: FailedJobStore, key: str) -> FailedJob:
    job = store.find(key.strip())
    if job is None:
        raise output.fail(f"no failed job with id or uuid {key!r}")
    return job


def _show(store: FailedJobStore, key: str, as_json: bool) -> None:
    job = _find(store, key)
    if as_json:
        output.print_json(record_data(job, full=True))
        return
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column(overflow="fold")
    fields.add_row("id", str(job.id))
    fields.add_row("uuid", job.uuid)
    fields.add_row("connection", job.connection)
    fields.add_row("queue", job.queue)
    fields.add_row("job", job.job_type)
    fields.add_row("attempts", str(job.attempts))
    fields.add_row("reason", job.reason or "(not recorded)")
    fields.add_row("failed at", f"{output.local_time(job.failed_at)} ({job.failed_at.isoformat()})")
    fields.add_row("host / pid", f"{job.host} / {job.pid}")
    fields.add_row("error", job.error)
    output.show(fields)
    payload = _payload_value(job.payload)
    output.line("\nPayload:")
    output.line(json.dumps(payload, indent=2) if not isinstance(payload, str) else payload)
    output.line("\nException:")
    output.line(job.exception.rstrip() or "(none recorded)")


# --------------------------------------------------------------------------- retrying


def _parse_range(text: str) -> tuple[int, int]:
    found = _RANGE.match(text)
    if found is None:
        raise output.fail(f"--range must look like 1-5, got {text!r}", code=2)
    first, last = int(found.group(1)), int(found.group(2))
    if first > last:
        raise output.fail(f"--range {text!r} is empty: {first} is after {last}", code=2)
    return first, last


def _selection(ids: list[str], ranges: list[str]) -> tuple[bool, list[str], list[tuple[int, int]]]:
    """``(everything, keys, ranges)`` asked for by the IDS argument and ``--range`` options."""
    if "all" in (key.lower() for key in ids):
        if len(ids) > 1 or ranges:
            raise output.fail("`all` must be the only ID (no other IDs, no --range)", code=2)
        return True, [], []
    return False, [key.strip() for key in ids], [_parse_range(text) for text in ranges]


def _records(
    store: FailedJobStore, everything: bool, keys: list[str], queue: str | None
) -> tuple[list[FailedJob], bool]:
    """The records to retry, oldest first for `all`; reports unknown ids, returns (jobs, ok)."""
    if everything:
        return list(reversed(store.all(queue=queue))), True
    chosen: dict[int, FailedJob] = {}
    ok = True
    for key in keys:
        job = store.find(key)
        if job is None:
            output.error(f"no failed job with id or uuid {key!r}")
            ok = False
        elif queue is not None and job.queue != queue:
            output.error(f"failed job #{job.id} is on queue {job.queue!r}, not {queue!r}; skipped")
            ok = False
        else:
            chosen.setdefault(job.id, job)
    return list(chosen.values()), ok


class _Retrier:
    """Retries failed jobs for one command, each job (by uuid) at most once.

    A retried job that fails again at once gets a new record with a higher id,
    possibly inside a range still being walked: it is not retried a second time.
    """

    def __init__(self, manager: QueueManager, store: FailedJobStore) -> None:
        self.manager, self.store = manager, store
        self.done: set[str] = set()
        self.ok = True

    def retry(self, job: FailedJob) -> bool:
        """Push ``job`` back unless done already; False (and ``ok`` False) on error."""
        if job.uuid in self.done:
            return False
        self.done.add(job.uuid)
        retried = _retry_one(self.manager, self.store, job)
        self.ok = retried and self.ok
        return retried

    def retry_range(self, first: int, last: int, queue: str | None) -> None:
        """Retry the failed jobs with ids ``first``-``last``, read a chunk at a time."""
        retried, cursor = 0, first
        while cursor <= last:
            chunk = self.store.between(cursor, last, queue=queue, limit=RANGE_CHUNK)
            retried += sum(self.retry(job) for job in chunk)
            if len(chunk) < RANGE_CHUNK:
                break
            cursor = chunk[-1].id + 1
        of_queue = "" if queue is None else f" of queue {queue!r}"
        if retried:
            output.line(f"Retried {_jobs(retried)}{of_queue} in range {first}-{last}.")
        else:
            output.line(f"No failed jobs{of_queue} in range {first}-{last}.")


def _target(manager: QueueManager, job: FailedJob) -> str | None:
    """The connection to push ``job`` back to, or None (reported) if there is none."""
    configured = manager.settings.connection
    if job.connection in DURABLE_CONNECTIONS:
        return job.connection
    if configured not in DURABLE_CONNECTIONS:
        output.error(
            f"cannot retry #{job.id}: its connection {job.connection!r} is not reachable from "
            f"here and the configured connection {configured!r} lives in this process only"
        )
        return None
    output.warning(
        f"#{job.id} failed on connection {job.connection!r}, which cannot be reached from "
        f"here: pushing it to the configured connection {configured!r}"
    )
    return configured


def _retry_one(manager: QueueManager, store: FailedJobStore, job: FailedJob) -> bool:
    """Push ``job`` back (same id, attempts 0, due now), then forget it; False on error."""
    name = _target(manager, job)
    if name is None:
        return False
    try:
        fresh = push_back(manager, store, job, connection=name)
    except KashqError as exc:
        output.error(str(exc))
        return False
    output.line(f"Retried #{job.id} {fresh.type} ({fresh.id}) on {fresh.queue!r}")
    return True


@output.friendly
def retry_command(
    ids: Annotated[
        list[str] | None,
        typer.Argument(help="Ids or uuids of failed jobs, or `all`.", show_default=False),
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue",
            "-q",
            help="Only failed jobs of this queue; alone, retries all of them.",
            show_default=False,
        ),
    ] = None,
    ranges: Annotated[
        list[str] | None,
        typer.Option(
            "--range",
            help="Ids from-to, inclusive, e.g. 1-5 (repeatable); ids not there are skipped.",
            show_default=False,
        ),
    ] = None,
    connection: ConnectionOpt = None,
) -> None:
    """Push failed jobs back onto their queues (same job id, attempts reset)."""
    queue = one_queue(queue)
    everything, keys, spans = _selection(ids or [], ranges or [])
    if not (everything or keys or spans or queue):
        raise output.fail("nothing to retry: give failed job IDs, `all`, --range or --queue", 2)
    everything = everything or not (keys or spans)  # --queue alone: all of that queue
    with opened(connection) as (manager, store):
        jobs, found = _records(store, everything, keys, queue)
        if not jobs and found and not spans:
            output.line("No failed jobs to retry.")
        retrier = _Retrier(manager, store)
        for job in jobs:
            retrier.retry(job)
        for first, last in spans:
            retrier.retry_range(first, last, queue)
    if not (found and retrier.ok):
        raise typer.Exit(code=1)


# --------------------------------------------------------------------------- deleting


@output.friendly
def forget_command(key: IdArg, connection: ConnectionOpt = None) -> None:
    """Delete one failed job."""
    with opened(connection) as (_, store):
        job = _find(store, key)
        if not store.forget(job.id):
            raise output.fail(f"no failed job with id or uuid {key!r}")
    output.line(f"Deleted failed job #{job.id} ({job.uuid}).")


HoursOpt = Annotated[
    float | None,
    typer.Option("--hours", min=0, help="Only those that failed more than this many hours ago."),
]


@output.friendly
def flush_command(
    hours: HoursOpt = None,
    connection: ConnectionOpt = None,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Do not ask for confirmation.")
    ] = False,
) -> None:
    """Delete all failed jobs (or only those older than --hours); asks first."""
    older = "" if hours is None else f" older than {hours:g} hours"
    with opened(connection) as (_, store):
        total = store.count()  # also reports an unreachable store before asking
        if total == 0:
            output.line("No failed jobs.")
            return
        question = f"Delete all {_jobs(total)}?"
        if hours is not None:
            question = f"Delete the failed jobs{older} ({_jobs(total)} in all)?"
        if not force and not output.confirm(question):
            raise output.fail("Not flushed.")
        count = store.flush(older_than_hours=hours)
    output.line(f"Deleted {_jobs(count)}{older}.")


@output.friendly
def prune_command(
    hours: Annotated[
        float, typer.Option("--hours", min=0, help="Delete those older than this many hours.")
    ] = 24,
    connection: ConnectionOpt = None,
) -> None:
    """Delete failed jobs older than --hours (default 24)."""
    before = datetime.now(timezone.utc) - timedelta(hours=hours)
    with opened(connection) as (_, store):
        count = store.prune(before)
    output.line(f"Pruned {_jobs(count)} older than {hours:g} hours.")


def _jobs(count: int) -> str:
    return f"{count} failed job" + ("" if count == 1 else "s")


def register(app: typer.Typer) -> None:
    app.command("queue:failed")(failed_command)
    app.command("queue:failed:show")(show_command)
    app.command("queue:retry")(retry_command)
    app.command("queue:forget")(forget_command)
    app.command("queue:flush")(flush_command)
    app.command("queue:prune-failed")(prune_command)
