"""``kashq queue:work``: a supervisor keeping N worker processes alive (see kashq.supervisor)."""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from kashq.cli import output
from kashq.cli.common import (
    ConnectionArg,
    ConnectionOpt,
    connection_address,
    either,
    job_modules,
    open_manager,
    queue_list,
    shown_url,
)
from kashq.cli.outbox import start_relay
from kashq.config import Settings
from kashq.drivers.base import Driver
from kashq.exceptions import DriverError
from kashq.imports import ImportFailed, check_in_subprocess
from kashq.retry import parse_backoff
from kashq.supervisor.lines import JobLines
from kashq.supervisor.spec import Output, WorkSpec

if TYPE_CHECKING:
    from kashq.manager import QueueManager
    from kashq.metrics.multiprocess import SupervisorMetrics
    from kashq.scheduler import SchedulerProcess


@output.friendly
def work_command(
    *,
    connection: ConnectionArg = None,
    connection_option: ConnectionOpt = None,
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue",
            "-q",
            help="Queues to consume, comma-separated, in strict priority order.",
            show_default="KASHQ_QUEUE",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=1, help="Worker processes to keep running.")
    ] = 1,
    tries: Annotated[
        int | None,
        typer.Option(
            min=1, help="Attempts for jobs that set none.", show_default="KASHQ_MAX_RETRY"
        ),
    ] = None,
    backoff: Annotated[
        str | None,
        typer.Option(
            help="Wait before retries: seconds (linear), 1,5,30 or exponential.",
            show_default="KASHQ_BACKOFF",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Seconds an attempt may run before its process is killed (0: no limit).",
            show_default="KASHQ_TIMEOUT",
        ),
    ] = None,
    sleep: Annotated[
        float, typer.Option(min=0.05, help="Seconds an idle worker blocks waiting for a job.")
    ] = 1.0,
    prefetch: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=1000,
            help="Most jobs a worker reserves at once while jobs are short (1: one at a time).",
            show_default="KASHQ_PREFETCH",
        ),
    ] = None,
    max_jobs: Annotated[
        int | None,
        typer.Option("--max-jobs", min=1, help="Replace a worker process after this many jobs."),
    ] = None,
    max_time: Annotated[
        float | None,
        typer.Option(
            "--max-time", min=0.1, help="Replace a worker process after this many seconds."
        ),
    ] = None,
    memory: Annotated[
        float,
        typer.Option(
            min=1, help="Replace a worker process (after its job) once it used this many MB."
        ),
    ] = 128,
    stop_when_empty: Annotated[
        bool, typer.Option("--stop-when-empty", help="Exit once the queues are empty.")
    ] = False,
    once: Annotated[
        bool, typer.Option("--once", help="Each worker processes at most one job, then exits.")
    ] = False,
    imports: Annotated[
        list[str] | None,
        typer.Option(
            "--import",
            "-i",
            help="Module (or path/to/file.py) defining job classes; repeatable.",
            show_default="KASHQ_IMPORTS",
        ),
    ] = None,
    with_scheduler: Annotated[
        bool,
        typer.Option(
            "--with-scheduler",
            help="Also run schedule:work (recurring schedules) beside the workers.",
        ),
    ] = False,
    grace: Annotated[
        float, typer.Option(min=0, help="Seconds running jobs get to finish after SIGTERM/SIGINT.")
    ] = 30.0,
    metrics_port: Annotated[
        str | None,
        typer.Option(
            "--metrics-port",
            metavar="<port>",
            help="Serve the workers' Prometheus metrics on this port, at /metrics.",
            show_default=False,
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", metavar="<host>", help="Address --metrics-port binds.")
    ] = "127.0.0.1",
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object per line and event (for log shippers).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No line per job.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show job ids and worker starts.")
    ] = False,
) -> None:
    """Start a supervisor that keeps [bold]--workers[/] worker processes consuming jobs.

    SIGTERM or Ctrl-C lets running jobs finish (up to --grace seconds) and exits 0;
    a second one stops at once (running jobs are handed out again). A job running
    past its timeout has its process killed and replaced; the attempt counts as failed.
    """
    from kashq.supervisor.supervisor import Supervisor, SupervisorOptions

    port = _port(metrics_port)
    if backoff is not None:
        try:
            parse_backoff(backoff)
        except ValueError as exc:
            raise output.fail(f"--backoff: {exc}", code=2) from None
    manager = open_manager(either(connection, connection_option))
    settings = manager.settings
    queues = tuple(queue_list(queue) or [settings.queue])
    modules = tuple(job_modules(settings, imports))
    mode = _output_mode(json_output, quiet)
    lines = JobLines(mode, verbose=verbose)
    logging.basicConfig(level=logging.WARNING, format="[%(levelname)s] %(name)s: %(message)s")
    try:
        check_in_subprocess(modules)
    except ImportFailed as exc:
        raise output.import_failed(exc) from None
    driver = manager.connection(settings.connection)
    _check_reachable(driver, queues)
    spec = WorkSpec(
        connection=settings.connection, queues=queues, imports=modules, tries=tries,
        backoff=backoff, timeout_s=timeout, sleep_s=sleep, prefetch=prefetch, max_jobs=max_jobs,
        max_time_s=max_time, memory_mb=memory, stop_when_empty=stop_when_empty, once=once,
        output=mode, verbose=verbose,
    )  # fmt: skip
    metrics = None if port is None else _serve_metrics(manager, queues, metrics_host, port)
    _banner(lines, settings, spec, workers, None if metrics is None else metrics.url)
    _warn_timeout(lines, settings, timeout)
    # With --metrics-port, the scheduler's dispatches are counted in the summed metrics too.
    env = None if metrics is None else {**os.environ, **metrics.environment()}
    scheduler = _scheduler(lines, settings, modules, env) if with_scheduler else None
    options = SupervisorOptions(workers=workers, grace_s=grace)
    companions = () if scheduler is None else (scheduler,)
    supervisor = Supervisor(spec, options, driver, lines, metrics, companions=companions)
    if scheduler is not None:
        scheduler.start()  # after the supervisor's set-up: a failure above leaves no child
    relay = start_relay(manager)
    try:
        code = supervisor.run()
    finally:
        if relay is not None:
            relay.stop()
        if scheduler is not None:
            scheduler.stop()
        if metrics is not None:
            metrics.close()
        driver.close()
    raise typer.Exit(code)


def _scheduler(
    lines: JobLines, settings: Settings, modules: tuple[str, ...], env: dict[str, str] | None
) -> SchedulerProcess | None:
    """The ``--with-scheduler`` child to start, or None (warned) if no schedule is declared.

    Like ``celery worker -B`` or Laravel's ``schedule:work``, an empty schedule
    is no reason to keep the workers from running: one warning line, then the
    workers run alone.
    """
    from kashq.scheduler import SchedulerProcess

    scheduler = SchedulerProcess(settings.connection, modules, env=env)
    if scheduler.schedules() != 0:
        return scheduler
    why = (
        f"{', '.join(modules)} declare none on kashq.scheduler.schedule"
        if modules
        else "no modules to import (--import, KASHQ_IMPORTS)"
    )
    lines.note(
        "supervisor.warning",
        f"warning: --with-scheduler: no schedules to run ({why}); "
        "the workers run without a scheduler",
        style="yellow",
        scheduler=False,
    )
    return None


def _output_mode(json_output: bool, quiet: bool) -> Output:
    if json_output:
        return Output.JSON
    if quiet:
        return Output.QUIET
    return Output.TTY if sys.stdout.isatty() else Output.PLAIN


def _check_reachable(driver: Driver, queues: tuple[str, ...]) -> None:
    """Fail now, in one line, if the queues cannot be reached (every shard, if sharded)."""
    from kashq.drivers.sharded import ShardedDriver

    if not isinstance(driver, ShardedDriver):
        driver.sizes(queues)
        return
    found = driver.shard_sizes(queues)
    down = [shard.name for shard, sizes in zip(driver.shards, found, strict=True) if sizes is None]
    if len(down) == len(found):
        raise DriverError(f"every shard is down: {', '.join(down)}")
    for name in down:
        output.warning(f"shard {name} is down: its jobs wait until it is back")


def _failed_store_name(settings: Settings) -> str:
    return f"the {settings.table_prefix}failed_jobs table at {shown_url(settings.database_url)}"


def _banner(
    lines: JobLines, settings: Settings, spec: WorkSpec, workers: int, metrics_url: str | None
) -> None:
    timeout = spec.timeout_s if spec.timeout_s is not None else settings.timeout
    limits = [
        f"timeout {f'{timeout:g}s' if timeout else 'none'}",
        f"tries {spec.tries or settings.max_retry}",
        f"backoff {parse_backoff(spec.backoff or settings.backoff)}",
        f"lease {settings.retry_after:g}s",
        f"memory {spec.memory_mb:g} MB",
    ]
    text = (
        f"kashq queue:work · {settings.connection} ({connection_address(settings)})\n"
        f"  queues       {', '.join(spec.queues)}\n"
        f"  workers      {workers} process{'es' if workers != 1 else ''} · {' · '.join(limits)}\n"
        f"  failed jobs  {_failed_store_name(settings)}\n"
        f"  modules      {', '.join(spec.imports) or '(none: set --import or KASHQ_IMPORTS)'}\n"
        + (f"  metrics      {metrics_url}\n" if metrics_url else "")
    )
    lines.note(
        "supervisor.starting",
        text,
        style="bold",
        connection=settings.connection,
        url=connection_address(settings),
        queues=list(spec.queues),
        workers=workers,
        failed_jobs=shown_url(settings.database_url),
        imports=list(spec.imports),
        metrics=metrics_url,
    )


def _port(value: str | None) -> int | None:
    """The ``--metrics-port`` number, or a one-line usage error."""
    if value is None:
        return None
    text = value.strip()
    port = int(text) if text.isascii() and text.isdigit() else 0
    if not 1 <= port <= 65535:
        raise output.fail(f"--metrics-port must be a port number (1-65535), got {value!r}", code=2)
    return port


def _serve_metrics(
    manager: QueueManager, queues: tuple[str, ...], host: str, port: int
) -> SupervisorMetrics:
    """Serve the workers' summed metrics, with queue sizes asked of the backend at scrape time."""
    from kashq.metrics.multiprocess import SupervisorMetrics
    from kashq.metrics.sizes import QueueSizeCollector

    # Drivers are thread-safe (workers share one between threads): scrapes use the supervisor's.
    sizes = QueueSizeCollector().watch(manager.connection(), manager.failed_store(), queues=queues)
    return SupervisorMetrics(sizes, host=host, port=port)


def _warn_timeout(lines: JobLines, settings: Settings, flag: float | None) -> None:
    timeout = (flag or None) if flag is not None else settings.timeout
    lease = settings.retry_after
    if timeout is not None and timeout < lease:
        return
    shown = "no timeout" if timeout is None else f"timeout {timeout:g}s"
    lines.note(
        "supervisor.warning",
        f"warning: {shown} is not shorter than the lease ({lease:g}s, KASHQ_RETRY_AFTER): "
        "leases are renewed while a job runs, but a job that blocks its whole process "
        "(C code holding the GIL) stops the renewals and may be handed to a second worker "
        "before it is killed. Use a timeout below the lease, or raise KASHQ_RETRY_AFTER.",
        style="yellow",
        timeout_s=timeout,
        lease_s=lease,
    )


def register(app: typer.Typer) -> None:
    app.command("queue:work")(work_command)
