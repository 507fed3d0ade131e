"""Queues: ``queue:size``, ``queue:clear``, ``queue:monitor`` and ``queue:restart``.

Sizes come from the driver (ready, delayed, reserved) and the failed-job store
(failed); whether a queue is paused (``queue:pause``) from the control records.
``queue:monitor`` adds throughput from the statistics every ``queue:work``
supervisor publishes as a control record ``supervisor:<name>``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from kashq.cli import output
from kashq.cli.common import (
    ConnectionArg,
    ConnectionOpt,
    JsonOpt,
    either,
    one_queue,
    opened,
    queue_list,
)
from kashq.drivers.base import Driver
from kashq.failed.base import FailedJobStore
from kashq.manager import QueueManager

SUPERVISOR_PREFIX = "supervisor:"
# A supervisor whose last record is older than this is taken to be gone.
SUPERVISOR_STALE_S = 60.0

QueuesOpt = Annotated[
    str | None,
    typer.Option(
        "--queue",
        "-q",
        help="Comma-separated queues (default: every known queue).",
        show_default=False,
    ),
]

Sizes = dict[str, dict[str, Any]]


def queue_names(
    manager: QueueManager, driver: Driver, store: FailedJobStore, paused: Iterable[str] = ()
) -> list[str]:
    """The configured queue first, then every queue holding jobs or failed jobs, or paused."""
    seen = set(driver.queue_names()) | {job.queue for job in store.all()} | set(paused)
    default = manager.settings.queue
    return [default, *sorted(seen - {default})]


def sizes(
    driver: Driver, store: FailedJobStore, names: Sequence[str], paused: Container[str] = ()
) -> Sizes:
    """``{queue: {ready, delayed, reserved, failed, paused}}`` for ``names``, in order
    (``paused``: whether the queue is one of ``paused``)."""
    counts = driver.sizes(list(names))
    result: Sizes = {}
    for name in names:
        size = counts.get(name)
        result[name] = {
            "ready": size.ready if size else 0,
            "delayed": size.delayed if size else 0,
            "reserved": size.reserved if size else 0,
            "failed": store.count(queue=name),
            "paused": name in paused,
        }
    return result


def _measure(
    manager: QueueManager, store: FailedJobStore, queues: list[str], *, waits: bool = False
) -> Sizes:
    """The sizes of ``queues`` (default: every known queue); with ``waits``, each queue's
    ``oldest_wait_s`` too: how long its longest-waiting ready job has waited (None: none)."""
    driver = manager.connection()
    paused = manager.paused()
    names = queues or queue_names(manager, driver, store, paused)
    figures = sizes(driver, store, names, paused)
    if waits:
        now = driver.storage.clock.time()
        for name, since in driver.oldest_ready(names).items():
            figures[name]["oldest_wait_s"] = None if since is None else round(now - since, 3)
    return figures


def _alerts(figures: Sizes, max_jobs: int | None, max_wait_s: float | None = None) -> list[str]:
    """The queues over ``max_jobs`` ready+delayed jobs, or whose oldest ready job has
    waited more than ``max_wait_s``."""
    alerts = []
    for name, f in figures.items():
        waited = f.get("oldest_wait_s")
        if (max_jobs is not None and f["ready"] + f["delayed"] > max_jobs) or (
            max_wait_s is not None and waited is not None and waited > max_wait_s
        ):
            alerts.append(name)
    return alerts


def _sizes_table(figures: Sizes, alerts: Sequence[str] = (), *, status: bool = False) -> Table:
    counts = ["ready", "delayed", "reserved", "failed"]
    any_paused = any(f["paused"] for f in figures.values())
    waits = status and any("oldest_wait_s" in f for f in figures.values())
    rows = []
    for name, f in figures.items():
        rows.append([name, *(str(f[k]) for k in counts)])
        if waits:
            rows[-1].append(_age(f.get("oldest_wait_s")))
        if status:
            rows[-1].append("ALERT" if name in alerts else "PAUSED" if f["paused"] else "OK")
        elif any_paused:
            rows[-1].append("yes" if f["paused"] else "")
    styles = ["bold red" if name in alerts else None for name in figures]
    extra = ["status"] if status else ["paused"] if any_paused else []
    columns = ["queue", *counts, *(["oldest wait"] if waits else []), *extra]
    return output.table(columns, rows, right=[*counts, "oldest wait"], styles=styles)


def _age(seconds: float | None) -> str:
    """A wait as people read it: ``-`` (none), ``4.2s``, ``12m``, ``3.5h``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


@output.friendly
def size_command(
    connection: ConnectionArg = None,
    connection_option: ConnectionOpt = None,
    queue: QueuesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show how many jobs each queue holds: ready, delayed, reserved, failed; and which
    are paused."""
    queues = queue_list(queue)
    with opened(either(connection, connection_option)) as (manager, store):
        figures = _measure(manager, store, queues)
    if as_json:
        output.print_json(figures)
    else:
        output.show(_sizes_table(figures))


@output.friendly
def clear_command(
    connection: ConnectionArg = None,
    connection_option: ConnectionOpt = None,
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue", "-q", help="Queue to clear (default: KASHQ_QUEUE).", show_default=False
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Do not ask for confirmation.")
    ] = False,
) -> None:
    """Delete every job of a queue: ready, delayed and reserved (failed jobs stay)."""
    chosen = one_queue(queue)
    with opened(either(connection, connection_option)) as (manager, _):
        name = chosen or manager.settings.queue
        where = f"queue {name!r} on connection {manager.settings.connection!r}"
        if not force and not output.confirm(f"Delete every job of {where}?"):
            raise output.fail("Not cleared.")
        count = manager.clear(name)
    output.line(f"Cleared {count} job{'' if count == 1 else 's'} from {where}.")


@output.friendly
def restart_command(
    connection: ConnectionArg = None, connection_option: ConnectionOpt = None
) -> None:
    """Tell every queue:work supervisor to restart its workers after their current job."""
    with opened(either(connection, connection_option)) as (manager, _):
        manager.connection().put_control("restart", str(time.time()))
        name = manager.settings.connection
    output.line(
        "Broadcast queue restart signal: every queue:work supervisor on "
        f"{name!r} restarts its workers after their current job."
    )


# --------------------------------------------------------------------------- monitor


@dataclass
class Throughput:
    """Supervisor statistics between two frames: live counts and jobs per second."""

    last: dict[str, int] = field(default_factory=dict)  # supervisor -> processed
    last_at: float | None = None
    supervisors: int = 0
    workers: int = 0
    rate: float | None = None

    def update(self, records: dict[str, str], now: float) -> None:
        """Take in the ``supervisor:`` control records read at ``now`` (Unix seconds)."""
        parsed = {name: _stats(text) for name, text in records.items()}
        live = {
            name: stats
            for name, stats in parsed.items()
            if stats is not None and now - _number(stats.get("at")) <= SUPERVISOR_STALE_S
        }
        self.supervisors = len(live)
        self.workers = sum(int(_number(s.get("workers"))) for s in live.values())
        current = {name: int(_number(s.get("processed"))) for name, s in live.items()}
        if self.last_at is not None and now > self.last_at:
            done = 0
            for name, processed in current.items():
                before = self.last.get(name)
                if before is not None:  # a restarted supervisor counts from zero again
                    done += processed - before if processed >= before else processed
            self.rate = done / (now - self.last_at)
        self.last, self.last_at = current, now

    def summary(self) -> str:
        rate = "—" if self.rate is None else f"{self.rate:.1f}"
        return (
            f"supervisors: {self.supervisors}   worker processes: {self.workers}   jobs/s: {rate}"
        )


def _stats(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _frame(
    connection: str, figures: Sizes, alerts: list[str], throughput: Throughput, *, live: bool
) -> Group:
    title = f"kashq queues on {connection!r} at {time.strftime('%H:%M:%S')}"
    head = Text(title, style="bold")
    foot = Text(throughput.summary() + ("   (Ctrl-C to stop)" if live else ""), style="dim")
    return Group(head, _sizes_table(figures, alerts, status=True), foot)


@output.friendly
def monitor_command(
    connection: ConnectionArg = None,
    connection_option: ConnectionOpt = None,
    *,
    queue: QueuesOpt = None,
    max_jobs: Annotated[
        int | None,
        typer.Option("--max", min=0, help="Alert when a queue's ready+delayed jobs exceed this."),
    ] = None,
    max_wait: Annotated[
        float | None,
        typer.Option(
            "--max-wait",
            min=0,
            help="Alert when a queue's oldest ready job has waited longer than this (seconds).",
        ),
    ] = None,
    once: Annotated[
        bool,
        typer.Option("--once", help="Print once and exit: 1 if any queue is over --max (cron)."),
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, help="Seconds between refreshes.")
    ] = 2.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="With --once: print JSON instead of a table.")
    ] = False,
) -> None:
    """Watch queue sizes, the oldest job's wait and throughput live (Ctrl-C to stop); --once
    for scripts (exit 1 when a queue is over --max or --max-wait)."""
    queues = queue_list(queue)
    if as_json and not once:
        raise output.fail("--json needs --once (the live view is for people)", code=2)
    with opened(either(connection, connection_option)) as (manager, store):
        limits = _Limits(max_jobs, max_wait)
        if once:
            _monitor_once(manager, store, queues, limits, as_json)
        else:
            _monitor_live(manager, store, queues, limits, interval)


@dataclass(frozen=True)
class _Limits:
    max_jobs: int | None
    max_wait_s: float | None


def _monitor_once(
    manager: QueueManager,
    store: FailedJobStore,
    queues: list[str],
    limits: _Limits,
    as_json: bool,
) -> None:
    figures = _measure(manager, store, queues, waits=True)
    alerts = _alerts(figures, limits.max_jobs, limits.max_wait_s)
    throughput = Throughput()
    throughput.update(manager.connection().get_control(SUPERVISOR_PREFIX), time.time())
    if as_json:
        output.print_json(
            {
                "queues": figures,
                "alerts": alerts,
                "supervisors": throughput.supervisors,
                "workers": throughput.workers,
            }
        )
    else:
        output.show(_frame(manager.settings.connection, figures, alerts, throughput, live=False))
    if alerts:
        raise typer.Exit(code=1)


def _monitor_live(
    manager: QueueManager,
    store: FailedJobStore,
    queues: list[str],
    limits: _Limits,
    interval_s: float,
) -> None:
    driver = manager.connection()
    throughput = Throughput()
    # On a terminal one frame is redrawn in place; into a file or pipe each is appended.
    on_terminal = output.out.is_terminal
    try:
        with output.sigterm_as_ctrl_c(), output.frames(in_place=on_terminal) as show:
            while True:
                figures = _measure(manager, store, queues, waits=True)
                throughput.update(driver.get_control(SUPERVISOR_PREFIX), time.time())
                alerts = _alerts(figures, limits.max_jobs, limits.max_wait_s)
                connection = manager.settings.connection
                frame = _frame(connection, figures, alerts, throughput, live=on_terminal)
                show(frame)
                time.sleep(interval_s)
    except KeyboardInterrupt:
        return


def register(app: typer.Typer) -> None:
    app.command("queue:size")(size_command)
    app.command("queue:clear")(clear_command)
    app.command("queue:monitor")(monitor_command)
    app.command("queue:restart")(restart_command)
