"""A current queue manager on one kind of the driver contract suite (memory, sqlite,
postgres, mariadb, redis, redis-cluster, sharded), on a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from kashq import QueueManager
from kashq.config import load_settings
from kashq.drivers.base import Driver
from kashq.drivers.database import DatabaseDriver
from kashq.manager import swap_manager
from kashq.testing import FakeClock
from tests.integration.test_driver_contract import open_driver

KINDS = ["memory", "sqlite", "postgres", "mariadb", "redis", "redis-cluster", "sharded"]


def connection_name(kind: str) -> str:
    """The connection a kind is served as (the databases are ``database``)."""
    if kind in ("sqlite", "postgres", "mariadb"):
        return "database"
    return {"redis-cluster": "redis"}.get(kind, kind)


def failed_store_url(driver: Driver, tmp_path: Path) -> str:
    """The database of the failed jobs: the driver's own, or a SQLite file beside the test."""
    if isinstance(driver, DatabaseDriver):
        return driver.engine.url.render_as_string(hide_password=False)
    return f"sqlite:///{tmp_path / 'failed.sqlite'}"


@contextmanager
def current_manager(
    request: pytest.FixtureRequest, kind: str, tmp_path: Path, clock: FakeClock, **settings: Any
) -> Iterator[QueueManager]:
    """A manager made current, its default connection ``kind`` (with ``settings``)."""
    with open_driver(request, kind, clock, tmp_path) as driver:
        name = connection_name(kind)
        made = QueueManager(
            load_settings(connection=name, database_url=failed_store_url(driver, tmp_path),
                          **settings),
            clock=clock,
        )  # fmt: skip
        made.add_connection(name, driver)
        previous = swap_manager(made)
        try:
            yield made
        finally:
            swap_manager(previous)
            made.close()
