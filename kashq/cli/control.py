"""Operators' controls: ``queue:cancel``, ``queue:pause`` and ``queue:continue``.

All three write what every worker reads (:mod:`kashq.control`): a waiting job
is taken off its queue, a running one is told to stop, a paused queue is left
alone by every worker on every host until it is continued.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

import typer

from kashq.cli import output
from kashq.cli.common import ConnectionOpt, JsonOpt, one_queue, opened
from kashq.names import QUEUE_NAME_RULE, is_queue_name

QueuesArg = Annotated[
    list[str],
    typer.Argument(metavar="QUEUE...", help="One or more queue names.", show_default=False),
]


@output.friendly
def cancel_command(
    job_ids: Annotated[
        list[str] | None,
        typer.Argument(metavar="[ID]...", help="Ids (uuid) of the jobs.", show_default=False),
    ] = None,
    connection: ConnectionOpt = None,
    *,
    queue: Annotated[
        str | None,
        typer.Option("--queue", "-q", help="Every job of this queue.", show_default=False),
    ] = None,
    job_type: Annotated[
        str | None,
        typer.Option("--type", "-t", help="Every job of this type.", show_default=False),
    ] = None,
    tag: Annotated[
        str | None, typer.Option("--tag", help="Every job with this tag.", show_default=False)
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel jobs by id, or every waiting and running job of a --queue, --type and --tag: a
    waiting one never runs, a running one is stopped (exit 1 if an id was unknown or its
    job had already ended)."""
    filtered = queue is not None or job_type is not None or tag is not None
    if not job_ids and not filtered:
        raise output.fail("give job ids, or --queue, --type or --tag", code=2)
    if job_ids and filtered:
        raise output.fail("give job ids or filters, not both", code=2)
    name = one_queue(queue)
    with opened(connection) as (manager, _):
        if job_ids:
            answers = [manager.cancel(job_id) for job_id in job_ids]
        else:
            answers = manager.cancel_where(queue=name, job_type=job_type, tag=tag)
    if filtered and not as_json:
        counts = Counter(answer.outcome for answer in answers)
        output.line(
            f"{counts['cancelled']} waiting job(s) cancelled, "
            f"{counts['aborting']} running job(s) told to stop."
        )
        return
    if as_json:
        output.print_json([answer.to_dict() for answer in answers])
    else:
        for answer in answers:
            output.line(answer.message)
    if job_ids and any(answer.outcome in ("unknown", "ended") for answer in answers):
        raise typer.Exit(code=1)


@output.friendly
def pause_command(queues: QueuesArg, connection: ConnectionOpt = None) -> None:
    """Pause queues: every worker stops taking their jobs within a second and finishes
    those it holds; dispatching goes on. Lasts, across restarts, until queue:continue."""
    names = _checked(queues)
    with opened(connection) as (manager, _):
        for name in names:
            manager.pause(name)
        where = manager.settings.connection
    for name in names:
        output.line(f"Paused queue {name!r} on {where!r}: workers take none of its jobs.")


@output.friendly
def continue_command(queues: QueuesArg, connection: ConnectionOpt = None) -> None:
    """Resume paused queues: workers take their jobs again within a second."""
    names = _checked(queues)
    with opened(connection) as (manager, _):
        resumed = {name: manager.resume(name) for name in names}
        where = manager.settings.connection
    for name, was_paused in resumed.items():
        if was_paused:
            output.line(f"Resumed queue {name!r} on {where!r}: workers take its jobs again.")
        else:
            output.line(f"Queue {name!r} on {where!r} was not paused.")


def _checked(queues: list[str]) -> list[str]:
    names = list(dict.fromkeys(q.strip() for q in queues))
    for name in names:
        if not is_queue_name(name):
            raise output.fail(f"{name!r} is not a queue name ({QUEUE_NAME_RULE})", code=2)
    return names


def register(app: typer.Typer) -> None:
    app.command("queue:cancel")(cancel_command)
    app.command("queue:pause")(pause_command)
    app.command("queue:continue")(continue_command)
