"""``kashq dashboard``: the dashboard (:mod:`kashq.dashboard`) on its own HTTP server (uvicorn).

It listens on 127.0.0.1 unless told otherwise, and refuses another address
without a token or a user and password: the dashboard retries, cancels and
deletes jobs. ``--import`` loads the modules declaring schedules, so the
Schedules screen shows their next runs.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from kashq.cli import output
from kashq.cli.common import (
    ConnectionArg,
    ConnectionOpt,
    connection_address,
    either,
    job_modules,
    open_manager,
)
from kashq.cli.serving import import_or_fail, listening, port_number_of, signals_end_quietly
from kashq.manager import swap_manager

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@output.friendly
def dashboard_command(
    connection: ConnectionArg = None,
    connection_option: ConnectionOpt = None,
    *,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (another than this machine's "
                          "needs --token or --user).")
    ] = "127.0.0.1",
    port: Annotated[
        str,
        typer.Option("--port", "-p", metavar="<port>", help="Port to listen on (0: any free one)."),
    ] = "8000",
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="KASHQ_DASHBOARD_TOKEN", show_default=False,
                     help="Shared secret, 16+ characters: sign in with it or send it as Bearer."),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option("--user", envvar="KASHQ_DASHBOARD_USER", show_default=False,
                     help="HTTP Basic user (with KASHQ_DASHBOARD_PASSWORD)."),
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Show everything, change nothing.")
    ] = False,
    refresh: Annotated[
        float, typer.Option("--refresh", min=0, help="Seconds between live updates (0: none).")
    ] = 3.0,
    imports: Annotated[
        list[str] | None,
        typer.Option("--import", "-i", show_default="KASHQ_IMPORTS",
                     help="Module (or path/to/file.py) declaring schedules or jobs; repeatable."),
    ] = None,
) -> None:  # fmt: skip
    """Serve the dashboard: queues, workers, jobs, failed jobs, batches, schedules and metrics.

    SIGTERM or Ctrl-C stops it and exits 0.
    """
    import os

    try:
        import uvicorn

        from kashq.dashboard import DashboardOptions
        from kashq.dashboard.asgi import DashboardASGI
        from kashq.dashboard.core import Dashboard  # Jinja2
    except ImportError:
        raise output.fail("the dashboard needs its extra: pip install 'kashq[dashboard]'") from None

    password = os.environ.get("KASHQ_DASHBOARD_PASSWORD")
    if (user is None) != (password is None):
        raise output.fail(
            "--user needs KASHQ_DASHBOARD_PASSWORD, and the password a --user", code=2
        )
    if host not in _LOOPBACK and token is None and user is None:
        raise output.fail(
            f"--host {host} opens the dashboard to other machines: give it --token or --user "
            "(and KASHQ_DASHBOARD_PASSWORD)",
            code=2,
        )
    try:
        options = DashboardOptions(
            token=token, username=user, password=password, read_only=read_only, refresh_s=refresh
        )
    except ValueError as exc:
        raise output.fail(str(exc), code=2) from None
    port_number = port_number_of(port)
    manager = open_manager(either(connection, connection_option))
    try:
        import_or_fail(job_modules(manager.settings, imports))
        manager.connection().queue_names()  # unreachable: fail now, one line
        app = DashboardASGI(Dashboard(manager, options=options))
        with listening(host, port_number) as sock:
            logging.basicConfig(
                level=logging.WARNING, format="[%(levelname)s] %(name)s: %(message)s"
            )
            bound, bound_port = sock.getsockname()[:2]
            shown = f"[{bound}]" if ":" in bound else bound
            settings = manager.settings
            output.line(
                f"kashq dashboard · {settings.connection} ({connection_address(settings)})\n"
                f"  listening on http://{shown}:{bound_port}/"
                + ("  (read-only)" if read_only else "")
            )
            config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
            previous = swap_manager(manager)
            try:
                with signals_end_quietly():
                    uvicorn.Server(config).run(sockets=[sock])
            finally:
                swap_manager(previous)
        output.line("Stopped.")
    finally:
        manager.close()


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard_command)
