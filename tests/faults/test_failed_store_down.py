"""A failure is never dropped: the failed-job store's database goes away and comes back.

The store reaches PostgreSQL through a TCP proxy the test cuts (every open
connection reset, new ones refused) and restores. While it is cut, a job that
fails for good is parked in the driver; once it is back, the job is recorded
in ``failed_jobs`` exactly once and leaves the queue exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, select

from kashq import Job, Outcome, Worker, WorkerOptions
from kashq.db import migrate
from kashq.db.schema import failed_jobs
from kashq.drivers.base import Driver, QueueSizes
from kashq.drivers.database import DatabaseDriver
from kashq.drivers.memory import MemoryDriver
from kashq.exceptions import FailedStoreError
from kashq.failed.database import DatabaseFailedJobStore
from kashq.testing import FakeClock
from tests.support.databases import postgres_database
from tests.support.proxy import TcpProxy
from tests.support.redis import redis_driver

CALLS: list[str] = []
PARK_S = 5.0


class FailsForGood(Job):
    tries = 1

    def handle(self) -> None:
        CALLS.append("handle")
        raise RuntimeError("the payment provider said no")

    def failed(self, error: BaseException) -> None:
        CALLS.append("failed")


@contextmanager
def make_driver(kind: str, clock: FakeClock, tmp_path: Path) -> Iterator[Driver]:
    if kind == "redis":  # the production pairing: Redis queue, PostgreSQL failed_jobs
        with redis_driver(clock=clock) as on_redis:
            yield on_redis
        return
    driver: Driver
    if kind == "memory":
        driver = MemoryDriver(clock=clock)
    else:
        driver = DatabaseDriver(f"sqlite:///{tmp_path / 'queue.sqlite'}", clock=clock)
    try:
        yield driver
    finally:
        driver.close()


def recorded_rows(url: str, uuid: str) -> list[tuple[str, int]]:
    """What failed_jobs holds for ``uuid``, read directly (not through the proxy)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            query = select(failed_jobs.c.error, failed_jobs.c.attempts)
            rows = conn.execute(query.where(failed_jobs.c.uuid == uuid)).all()
            return [(row.error, row.attempts) for row in rows]
    finally:
        engine.dispose()


@pytest.mark.parametrize("driver_kind", ["memory", "sqlite", "redis"])
def test_failure_while_the_store_is_down_is_recorded_once_it_is_back(driver_kind, tmp_path):
    CALLS.clear()
    clock = FakeClock()
    with postgres_database() as url, make_driver(driver_kind, clock, tmp_path) as driver:
        migrate.upgrade(url)
        target = make_url(url)
        proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432).start()
        store = DatabaseFailedJobStore(target.set(host="127.0.0.1", port=proxy.port))
        try:
            assert store.count() == 0  # a pooled connection through the proxy exists now
            options = WorkerOptions(connection="database", tries=1, park_s=PARK_S)
            worker = Worker(driver, store, options, clock=clock)
            env = FailsForGood().to_envelope(default_queue="default", now=clock.time())
            driver.push(env)

            proxy.stop()
            assert worker.run_next() is Outcome.PARKED
            assert driver.sizes(["default"])["default"] == QueueSizes(delayed=1)
            clock.advance(PARK_S + 0.1)
            assert worker.run_next() is Outcome.PARKED, "still down: parked again, not lost"
            assert driver.sizes(["default"])["default"] == QueueSizes(delayed=1)
            assert recorded_rows(url, env.id) == []

            proxy.start()
            clock.advance(PARK_S - 1)
            assert worker.run_next() is None, "parked jobs wait out park_s"
            clock.advance(1.2)
            assert worker.run_next() is Outcome.FAILED

            assert recorded_rows(url, env.id) == [("RuntimeError: the payment provider said no", 1)]
            assert driver.sizes(["default"])["default"] == QueueSizes()
            clock.advance(3600)
            assert worker.run_next() is None
            assert CALLS == ["handle", "failed"], "the job ran once and was told once"
            assert store.count() == 1
        finally:
            proxy.stop()
            store.close()


def test_proxy_cut_makes_the_store_fail_fast_with_a_one_line_error(tmp_path):
    with postgres_database() as url:
        migrate.upgrade(url)
        target = make_url(url)
        proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432).start()
        store = DatabaseFailedJobStore(target.set(host="127.0.0.1", port=proxy.port))
        try:
            assert store.count() == 0
            proxy.stop()
            started = time.monotonic()
            with pytest.raises(FailedStoreError) as caught:
                store.count()
            assert time.monotonic() - started < 10
            assert "\n" not in str(caught.value)
            proxy.start()
            assert store.count() == 0, "and it recovers by itself"
        finally:
            proxy.stop()
            store.close()
