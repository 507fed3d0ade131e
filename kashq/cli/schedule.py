"""Recurring schedules: ``schedule:work`` fires them, ``schedule:list`` shows them.

Both import the modules that declare schedules on ``kashq.scheduler.schedule``
(``--import`` and ``KASHQ_IMPORTS``), with the current directory on sys.path.
"""

from __future__ import annotations

import logging
import os
import traceback
from datetime import datetime, timezone
from typing import Annotated, Any

import typer

from kashq.cli import output
from kashq.cli.common import (
    ConnectionArg,
    ConnectionOpt,
    JsonOpt,
    connection_address,
    either,
    job_modules,
    open_manager,
)
from kashq.config import Settings, load_settings
from kashq.exceptions import ConfigError
from kashq.imports import ImportFailed, import_job_modules
from kashq.manager import QueueManager, swap_manager
from kashq.scheduler.cron import ScheduleError, zone
from kashq.scheduler.recurring import ScheduleEntry, schedule
from kashq.scheduler.runner import Fired, ScheduleRunner, stop_on_signals

ImportOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--import",
        "-i",
        help="Module (or path/to/file.py) declaring schedules; repeatable.",
        show_default="KASHQ_IMPORTS",
    ),
]


def _import(settings: Settings, imports: list[str] | None) -> list[str]:
    """Import the schedule modules; an import error is one line plus the user's traceback."""
    modules = job_modules(settings, imports)
    try:
        import_job_modules(modules)
    except ImportFailed as exc:
        if isinstance(exc.__context__, ScheduleError):  # a declared mistake: its line says it all
            raise output.fail(f"{exc.__context__}{_where(exc.__context__)}") from None
        raise output.import_failed(exc) from None
    return modules


def _where(error: BaseException) -> str:
    """`` (file.py, line N)``: the last frame of ``error`` outside kashq, if any."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if not frame.filename.startswith(package) and "importlib" not in frame.filename
    ]
    return f" ({os.path.basename(frames[-1].filename)}, line {frames[-1].lineno})" if frames else ""


@output.friendly
def work_command(
    connection: ConnectionArg = None,
    connection_option: ConnectionOpt = None,
    imports: ImportOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No line per tick.")] = False,
) -> None:
    """Fire the recurring schedules, each tick once even with several runners; SIGTERM stops.

    Ticks from before the start are not fired; after a pause only the latest
    missed tick of each schedule fires.
    """
    manager = open_manager(either(connection, connection_option))
    try:
        previous = swap_manager(manager)  # job.dispatch() in a schedule goes here
        try:
            _work(manager, imports, quiet)
        finally:
            swap_manager(previous)
    finally:
        manager.close()


def _work(manager: QueueManager, imports: list[str] | None, quiet: bool) -> None:
    settings = manager.settings
    modules = _import(settings, imports)
    entries = schedule.entries()
    if not entries:
        if not modules:
            raise ConfigError("no schedules to run: no modules to import (--import, KASHQ_IMPORTS)")
        raise ConfigError(
            f"no schedules to run: {', '.join(modules)} declare none on kashq.scheduler.schedule"
        )
    manager.connection().sizes([settings.queue])  # unreachable? fail now, in one line
    logging.basicConfig(level=logging.WARNING, format="[%(levelname)s] %(name)s: %(message)s")
    output.line(
        f"kashq schedule:work · {settings.connection} ({connection_address(settings)}) · "
        f"{len(entries)} schedule{'s' if len(entries) != 1 else ''} · timezone {settings.timezone}"
    )
    runner = ScheduleRunner(manager, on_fire=None if quiet else _print_fired)
    with stop_on_signals(runner):
        runner.run()
    output.line("Scheduler stopped.")


def _print_fired(fired: Fired) -> None:
    at = output.local_time(datetime.fromtimestamp(fired.tick_at, timezone.utc))
    if fired.error is not None:
        what = f"FAILED  {fired.error}"
    elif not fired.fired:
        what = "taken by another runner"
    else:
        what = "fired" + (f"  job {fired.job_id}" if fired.job_id else "")
    missed = f"  ({fired.skipped} missed tick(s) skipped)" if fired.skipped else ""
    output.line(f"{at}  {fired.name}  {what}{missed}")


@output.friendly
def list_command(
    imports: ImportOpt = None,
    as_json: JsonOpt = False,
    upcoming: Annotated[
        int, typer.Option("--next", "-n", min=1, max=50, help="How many next run times to show.")
    ] = 1,
) -> None:
    """List the recurring schedules with their next run times."""
    settings = load_settings()
    _import(settings, imports)
    now = datetime.now(timezone.utc)
    entries = schedule.entries()
    runs = [_next_runs(entry, settings.timezone, now, upcoming) for entry in entries]
    rows = [
        _describe(entry, settings.timezone, times)
        for entry, times in zip(entries, runs, strict=True)
    ]
    if as_json:
        output.print_json(rows)
        return
    if not rows:
        output.line("No schedules (declare them on kashq.scheduler.schedule; see --import).")
        return
    table_rows = [
        [row["name"], row["expression"], row["timezone"], _shown_runs(times), _shown_action(row)]
        for row, times in zip(rows, runs, strict=True)
    ]
    columns = ["name", "schedule", "timezone", "next run" if upcoming == 1 else "next runs", "runs"]
    output.show(output.table(columns, table_rows, flexible="runs"))


def _next_runs(entry: ScheduleEntry, default_tz: str, now: datetime, count: int) -> list[datetime]:
    """The next ``count`` ticks of ``entry`` after ``now``, in the entry's zone."""
    trigger, tz = entry.trigger(default_tz), zone(entry.zone_name(default_tz))
    runs, at = [], now.timestamp()
    for _ in range(count):
        at = trigger.next_after(at)
        runs.append(datetime.fromtimestamp(at, tz))
    return runs


def _describe(entry: ScheduleEntry, default_tz: str, runs: list[datetime]) -> dict[str, Any]:
    """One entry as JSON: its schedule, zone, action and next run times (ISO 8601)."""
    action = (
        {"job": entry.job.type_name}
        if entry.job is not None
        else {"function": _function_name(entry.function)}
    )
    return {
        "name": entry.name,
        "expression": entry.expression,
        "kind": "interval" if entry.period_s is not None else "cron",
        "period_s": entry.period_s,
        "timezone": entry.zone_name(default_tz),
        **action,
        "next_runs": [run.isoformat() for run in runs],
    }


def _function_name(function: object) -> str:
    module, name = getattr(function, "__module__", None), getattr(function, "__qualname__", None)
    return f"{module}.{name}" if module and name else repr(function)


def _shown_runs(runs: list[datetime]) -> str:
    return ", ".join(run.strftime("%Y-%m-%d %H:%M:%S %Z") for run in runs)


def _shown_action(row: dict[str, Any]) -> str:
    return f"job {row['job']}" if "job" in row else f"{row['function']}()"


def register(app: typer.Typer) -> None:
    app.command("schedule:work")(work_command)
    app.command("schedule:list")(list_command)
