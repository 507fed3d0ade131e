"""What several commands share: the connection argument and opening the configured queues."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from kashq.cli import output
from kashq.config import Settings, load_settings
from kashq.exceptions import ConfigError
from kashq.failed.base import FailedJobStore
from kashq.failed.memory import MemoryFailedJobStore
from kashq.manager import QueueManager
from kashq.names import QUEUE_NAME_RULE, is_queue_name

ConnectionOpt = Annotated[
    str | None,
    typer.Option(
        "--connection",
        "-c",
        metavar="NAME",
        help="Connection to use: database, redis or sharded (default: KASHQ_CONNECTION).",
        show_default=False,
    ),
]
"""How every command names its connection."""

ConnectionArg = Annotated[
    str | None,
    typer.Argument(
        metavar="[CONNECTION]", help="Same as --connection (Laravel's form).", show_default=False
    ),
]
"""The positional alias of ``--connection``, on commands that take no other argument."""

# Connections whose jobs live inside one process: another process sees none of them.
IN_PROCESS = ("memory", "sync")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def comma_list(*values: str | None) -> list[str]:
    """The names in comma-separated ``values``, stripped, without blanks or repeats."""
    names = (part.strip() for value in values if value for part in value.split(","))
    return list(dict.fromkeys(name for name in names if name))


def queue_list(value: str | None, option: str = "--queue") -> list[str]:
    """The queue names of a comma-separated option, each checked (none if not given).

    A name breaking the queue-name rule, or an option naming no queue at all
    (``--queue ,,``), is a one-line usage error.
    """
    names = comma_list(value)
    if value is not None and not names:
        raise output.fail(f"{option} needs at least one queue name", code=2)
    for name in names:
        if not is_queue_name(name):
            raise output.fail(f"{option}: {name!r} is not a queue name ({QUEUE_NAME_RULE})", 2)
    return names


def one_queue(value: str | None, option: str = "--queue") -> str | None:
    """The single queue name of an option (None if not given), checked like :func:`queue_list`."""
    names = queue_list(value, option)
    if len(names) > 1:
        raise output.fail(f"{option} takes one queue name, got {value!r}", code=2)
    return names[0] if names else None


def job_modules(settings: Settings, imports: list[str] | None) -> list[str]:
    """The modules holding job classes: ``KASHQ_IMPORTS`` then ``--import`` (comma lists too)."""
    return comma_list(*settings.imports, *(imports or []))


def either(positional: str | None, option: str | None) -> str | None:
    """The connection named by the positional alias or ``--connection`` (not both, differing)."""
    if positional is not None and option is not None and positional != option:
        raise output.fail(
            f"the connection is named twice: {positional!r} and --connection {option!r}", code=2
        )
    return option if option is not None else positional


def open_manager(connection: str | None = None, **overrides: Any) -> QueueManager:
    """A queue manager from the settings, with ``connection`` (and flags) on top.

    A bad connection name or setting, or a connection whose jobs live inside
    one process, raises :class:`~kashq.exceptions.ConfigError` (one line,
    turned into an exit by :func:`kashq.cli.output.friendly`).
    """
    settings = load_settings(origin="the command line", connection=connection, **overrides)
    if settings.connection in IN_PROCESS:
        raise ConfigError(
            f"the command line cannot use the {settings.connection} connection: its jobs live "
            "inside the one Python process that dispatched them (there, use "
            "kashq.start_workers(); from here, the database, redis or sharded connection)"
        )
    return QueueManager(settings)


@contextmanager
def opened(connection: str | None) -> Iterator[tuple[QueueManager, FailedJobStore]]:
    """A manager for ``connection`` and its failed-job store, both closed afterwards."""
    manager = open_manager(connection)
    try:
        yield manager, _existing_failed_store(manager)
    finally:
        manager.close()  # with the failed-job store it built


def _existing_failed_store(manager: QueueManager) -> FailedJobStore:
    """The failed-job store, creating no database: these commands use what is there.

    The database connection's queue lives in that database, so none there is
    an error line. Redis and sharded write it when a first job fails for
    good, so none there means no failed jobs (an empty memory store, with
    nothing to close).
    """
    settings = manager.settings
    from kashq.db.engine import require_existing, sqlite_path

    if settings.connection == "database":
        require_existing(settings.database_url)
    elif (path := sqlite_path(settings.database_url)) is not None and not path.exists():
        return MemoryFailedJobStore()
    return manager.failed_store()


def shown_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    from kashq.db.engine import safe_url

    return safe_url(url)


def connection_address(settings: Settings) -> str:
    """Where the configured connection's jobs live, passwords hidden (for banners)."""
    if settings.connection == "sharded":
        shards = ", ".join(shown_url(url) for url in settings.shards) or "no KASHQ_SHARDS"
        return f"{settings.shard_strategy}: {shards}"
    url = settings.redis_url if settings.connection == "redis" else settings.database_url
    return shown_url(url)
