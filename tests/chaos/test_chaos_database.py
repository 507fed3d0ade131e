"""Chaos on the database queue driver: SQLite and PostgreSQL as the queue itself.

The scenarios of :mod:`tests.chaos.test_chaos` with ``KASHQ_CONNECTION=database``
(``failed_jobs`` in the same database), with fewer jobs: workers SIGKILLed at
random moments and at each kill point, and a full restart of every worker, on
SQLite and on PostgreSQL; then a private PostgreSQL server restarted mid-run
(``pg_ctl restart -m immediate``, a crash and WAL recovery; never the shared
server), and the SQLite file locked by another process, once within the busy
timeout and once beyond it. Each ends with the invariant of
:mod:`tests.chaos.harness` and prints its ledger summary.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kashq.db import migrate
from kashq.db.engine import SQLITE_BUSY_TIMEOUT_MS
from kashq.drivers.database import DatabaseDriver
from kashq.failed.database import DatabaseFailedJobStore
from tests.chaos.harness import PREFETCH, Chaos
from tests.chaos.scenarios import full_restarts, mixed_jobs, progress, worker_kills
from tests.support.databases import postgres_database
from tests.support.services import PostgresServer

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

KINDS = ("sqlite", "postgres")


@contextlib.contextmanager
def queue_database(kind: str, root: Path) -> Iterator[str]:
    """The URL of a fresh, migrated queue database: a SQLite file, or a PostgreSQL schema."""
    if kind == "sqlite":
        url = f"sqlite:///{root / 'queue.sqlite'}"
        migrate.upgrade(url)
        yield url
        return
    with postgres_database() as url:
        migrate.upgrade(url)
        yield url


def on_database(
    name: str, root: Path, url: str
) -> tuple[Chaos, DatabaseDriver, DatabaseFailedJobStore]:
    chaos = Chaos.create(name, root, {"KASHQ_CONNECTION": "database", "KASHQ_DATABASE_URL": url})
    return chaos, DatabaseDriver(url), DatabaseFailedJobStore(url)


@pytest.mark.parametrize("kind", KINDS)
def test_workers_sigkilled_at_random_moments_and_at_each_kill_point(tmp_path, kind):
    """1,000 jobs; 10 of them SIGKILL their worker (between reserve and handle, during
    handle, between handle and ack) and the test SIGKILLs a random worker besides."""
    with queue_database(kind, tmp_path) as url:
        chaos, driver, store = on_database(f"db-worker-kills-{kind}", tmp_path, url)
        worker_kills(chaos, driver, store, random.Random(11), jobs=1000, kills=6, timeout_s=120)
        store.close()
        driver.close()


@pytest.mark.parametrize("kind", KINDS)
def test_delayed_and_retried_jobs_survive_a_full_restart_of_every_worker(tmp_path, kind):
    """300 jobs: delayed by up to 4 s, failing their first one or two attempts (1 s
    backoff), or plain; every process is SIGKILLed at once, then later stopped with
    SIGTERM, each time replaced by a fresh queue:work."""
    with queue_database(kind, tmp_path) as url:
        chaos, driver, store = on_database(f"db-full-restarts-{kind}", tmp_path, url)
        full_restarts(chaos, driver, store, random.Random(12), jobs=300, max_delay_s=4, between=40)
        store.close()
        driver.close()


def test_postgres_restarted_mid_run_three_times(tmp_path):
    """A private PostgreSQL holding the queue and failed_jobs is restarted as after a
    crash (``pg_ctl restart -m immediate``) three times while two workers drain 900
    jobs; 300 of them are dispatched between the restarts."""
    server = PostgresServer().start()
    try:
        migrate.upgrade(server.url)
        chaos, driver, store = on_database("db-postgres-restarts", tmp_path, server.url)
        rng = random.Random(13)
        chaos.dispatch(driver, mixed_jobs(rng, 600, ms_range=(2, 8)))
        in_flight = 2 * PREFETCH  # every worker may lose its whole batch

        workers = chaos.start_work("--workers", "2")
        try:
            for _ in range(3):
                progress(chaos, 120)
                with chaos.fault("PostgreSQL restarted (immediate)", in_flight):
                    server.restart()
                chaos.dispatch(driver, mixed_jobs(rng, 100, ms_range=(2, 8)))
            chaos.wait_settled(driver, store)
        finally:
            workers.stop()

        summary = chaos.check(driver, store)
        assert summary.faults["PostgreSQL restarted (immediate)"] == 3
        assert summary.failed == 18
        store.close()
        driver.close()
    finally:
        server.stop()


def test_sqlite_file_locked_by_another_process(tmp_path):
    """Another process holds the SQLite file's write lock twice while two workers drain
    900 jobs: for 3 s (workers wait within the 5 s busy timeout) and for 8 s (past it:
    their statements fail with "database is locked" and they back off)."""
    with queue_database("sqlite", tmp_path) as url:
        chaos, driver, store = on_database("db-sqlite-locked", tmp_path, url)
        rng = random.Random(14)
        chaos.dispatch(driver, mixed_jobs(rng, 900, ms_range=(2, 8)))
        path = tmp_path / "queue.sqlite"
        busy_s = SQLITE_BUSY_TIMEOUT_MS / 1000

        workers = chaos.start_work("--workers", "2")
        try:
            for hold_s in (busy_s - 2, busy_s + 3):
                progress(chaos, 200)
                label = f"SQLite write lock held {hold_s:g} s"
                with chaos.fault(label, 2 * PREFETCH):
                    before = chaos.completed()
                    hold_write_lock(path, hold_s)
                    assert chaos.completed() - before <= 2 * PREFETCH, "nothing was written"
            chaos.wait_settled(driver, store)
        finally:
            workers.stop()

        summary = chaos.check(driver, store)
        assert len(summary.faults) == 2
        assert summary.failed == 18
        store.close()
        driver.close()


def hold_write_lock(path: Path, hold_s: float) -> None:
    """Take the database's write lock from another connection and keep it ``hold_s``.

    What a backup tool, a migration or a stuck writer looks like to the workers.
    """
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        time.sleep(hold_s)
        conn.execute("ROLLBACK")
    finally:
        conn.close()
