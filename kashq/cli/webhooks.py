"""``kashq webhooks:serve``: the default webhook handler on its own HTTP server (uvicorn).

The ``--import`` modules register their routes on
``kashq.webhooks.default_handler`` when imported; this command imports them
in its own process, listens, and serves the routes under ``--prefix``.
uvicorn is an optional extra (``pip install 'kashq[webhooks]'``).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
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
from kashq.manager import QueueManager, swap_manager
from kashq.webhooks import default_handler, mount_asgi
from kashq.webhooks.handler import Route, mount_prefix

BACKLOG = 2048


@output.friendly
def serve_command(
    connection: ConnectionArg = None,
    connection_option: ConnectionOpt = None,
    *,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        str,
        typer.Option("--port", "-p", metavar="<port>", help="Port to listen on (0: any free one)."),
    ] = "8080",
    prefix: Annotated[
        str, typer.Option("--prefix", help="Path the routes are served under ('' for the root).")
    ] = "/webhooks",
    imports: Annotated[
        list[str] | None,
        typer.Option(
            "--import",
            "-i",
            help="Module (or path/to/file.py) registering webhook routes; repeatable.",
            show_default="KASHQ_IMPORTS",
        ),
    ] = None,
) -> None:
    """Serve the webhook routes your modules register, each signed POST becoming one job.

    SIGTERM or Ctrl-C stops taking requests, lets those in flight finish, and exits 0.
    """
    try:
        import uvicorn

        from kashq.webhooks.protocol import JSONErrorsHTTPProtocol
    except ImportError:
        raise output.fail("webhooks:serve needs uvicorn: pip install 'kashq[webhooks]'") from None
    port_number = port_number_of(port)
    prefix = mount_prefix(prefix)
    manager = open_manager(either(connection, connection_option))
    try:
        import_or_fail(job_modules(manager.settings, imports))
        routes = default_handler.routes
        if not routes:
            raise output.fail(
                "no webhook routes: register them with kashq.webhooks.register_job_webhook() "
                "in a module given with --import or KASHQ_IMPORTS"
            )
        manager.connection().sizes([manager.settings.queue])  # unreachable: fail now, one line
        with listening(host, port_number, BACKLOG) as sock:
            logging.basicConfig(
                level=logging.WARNING, format="[%(levelname)s] %(name)s: %(message)s"
            )
            _banner(manager, sock, prefix, routes)
            config = uvicorn.Config(
                mount_asgi(prefix, default_handler.app),
                http=JSONErrorsHTTPProtocol,  # parser refusals answer JSON too
                lifespan="on",
                log_level="warning",
                access_log=False,
                backlog=BACKLOG,
            )
            with _current(manager), signals_end_quietly():
                uvicorn.Server(config).run(sockets=[sock])
        output.line("Stopped.")
    finally:
        manager.close()


@contextmanager
def _current(manager: QueueManager) -> Iterator[None]:
    """Make ``manager`` the one the default handler (and the user's code) dispatches through."""
    previous = swap_manager(manager)
    try:
        yield
    finally:
        swap_manager(previous)


def _banner(manager: QueueManager, sock: socket.socket, prefix: str, routes: list[Route]) -> None:
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    settings = manager.settings
    width = max(len(prefix + route.path) for route in routes)
    lines = [
        f"kashq webhooks:serve · {settings.connection} ({connection_address(settings)})",
        f"  listening on http://{shown_host}:{port}{prefix}",
        *(f"  POST {prefix + route.path:<{width}}  →  {route.job}" for route in routes),
    ]
    output.line("\n".join(lines))


def register(app: typer.Typer) -> None:
    app.command("webhooks:serve")(serve_command)
