"""``outbox:relay``: push the jobs dispatched in applications' transactions (:mod:`kashq.outbox`).

``queue:work`` on a Redis connection runs the same relay on a thread (unless
``KASHQ_RELAY_OUTBOX=false``); this command runs it alone, e.g. beside workers
started some other way, or once (``--once``) from a deploy script.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING, Annotated

import typer

from kashq.cli import output
from kashq.cli.common import open_manager
from kashq.manager import QueueManager

if TYPE_CHECKING:
    from kashq.outbox import RelayThread


def relay_command(
    once: Annotated[
        bool, typer.Option("--once", help="Relay what is waiting now, then exit.")
    ] = False,
) -> None:
    """Push the jobs dispatched inside transactions ([bold]using=[/]) to their connections.

    Each outbox row becomes exactly one job, also when a relay is killed halfway.
    Runs until SIGTERM or Ctrl-C unless [bold]--once[/].
    """
    manager = open_manager()
    try:
        outbox = manager.outbox()
        if once:
            total = outbox.relay_all(manager.connection)
            output.out.print(f"relayed {total} job(s) from the outbox at {outbox.url}")
            return
        logging.basicConfig(level=logging.WARNING, format="[%(levelname)s] %(name)s: %(message)s")
        output.out.print(f"relaying the outbox at {outbox.url} (Ctrl-C to stop)")
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        outbox.run(manager.connection, stop)
    finally:
        manager.close()


def start_relay(manager: QueueManager) -> RelayThread | None:
    """``queue:work``'s relay thread: on a Redis connection, unless ``KASHQ_RELAY_OUTBOX``
    is off; None otherwise."""
    settings = manager.settings
    if not settings.relay_outbox or settings.connection not in ("redis", "sharded"):
        return None
    from kashq.outbox import RelayThread

    return RelayThread(manager.outbox(), manager.connection).start()


def register(app: typer.Typer) -> None:
    app.command("outbox:relay")(relay_command)
