"""What several commands share: the connection argument and opening the configured queues."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from kashq.config import Settings, load_settings
from kashq.failed.base import FailedJobStore
from kashq.failed.memory import MemoryFailedJobStore
from kashq.manager import QueueManager

ConnectionArg = Annotated[
    str | None,
    typer.Argument(
        help="Connection to use: database, redis, sharded (default: KASHQ_CONNECTION).",
        show_default=False,
    ),
]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def comma_list(*values: str | None) -> list[str]:
    """The names in comma-separated ``values``, stripped, without blanks or repeats."""
    names = (part.strip() for value in values if value for part in value.split(","))
    return list(dict.fromkeys(name for name in names if name))


def job_modules(settings: Settings, imports: list[str] | None) -> list[str]:
    """The modules holding job classes: ``KASHQ_IMPORTS`` then ``--import`` (comma lists too)."""
    return comma_list(*settings.imports, *(imports or []))


def open_manager(connection: str | None = None, **overrides: Any) -> QueueManager:
    """A queue manager from the settings, with ``connection`` (and flags) on top.

    A bad connection name or setting raises :class:`~kashq.exceptions.ConfigError`
    (one line, turned into an exit by :func:`kashq.cli.output.friendly`).
    """
    settings: Settings = load_settings(connection=connection, **overrides)
    return QueueManager(settings)


@contextmanager
def opened(connection: str | None) -> Iterator[tuple[QueueManager, FailedJobStore]]:
    """A manager for ``connection`` and its failed-job store, both closed afterwards."""
    manager = open_manager(connection)
    try:
        store = _existing_failed_store(manager)
    except BaseException:
        manager.close()
        raise
    try:
        yield manager, store
    finally:
        manager.close()
        close = getattr(store, "close", None)  # not part of the protocol
        if callable(close):
            close()


def _existing_failed_store(manager: QueueManager) -> FailedJobStore:
    """The failed-job store, creating no database: these commands use what is there.

    The database connection's queue lives in that database, so none there is
    an error line. Redis and sharded write it when a first job fails for
    good, so none there means no failed jobs.
    """
    settings = manager.settings
    if settings.connection in ("memory", "sync"):
        return manager.failed_store()
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
