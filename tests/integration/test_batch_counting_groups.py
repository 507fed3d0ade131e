"""A database worker counts its completed batch jobs a reserve at a time: one count of the
jobs of its last prefetched group, then their acks ride with the next claim."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

import kashq
from kashq.drivers.base import QueueSizes
from kashq.drivers.database import DatabaseDriver
from kashq.failed.memory import MemoryFailedJobStore
from kashq.worker import Worker, WorkerOptions
from kashq.workflows.batches import store_for
from kashq.workflows.batches.database import DatabaseBatchStore
from tests.support.batches import RAN, Callback, Row, count_calls, dispatch
from tests.support.databases import database


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DatabaseDriver]:
    RAN.clear()
    with database(request.param, tmp_path, migrated=request.param != "sqlite") as url:
        made = DatabaseDriver(url, poll_interval_s=0.01)
        try:
            yield made
        finally:
            made.close()


def sizes(driver: DatabaseDriver) -> QueueSizes:
    return driver.sizes(["default"])["default"]


def tag_rows(driver: DatabaseDriver) -> int:
    table = driver._db.tables.job_tags
    return driver._db.run(
        lambda conn: conn.execute(select(func.count()).select_from(table)).scalar_one(),
        what="counting tag rows",
        atomic=False,
    )


def test_ack_many_acknowledges_the_jobs_still_held_under_their_tokens(driver):
    envs = [Row(n=n).with_tags(*(("t",) if n % 2 else ())) for n in range(4)]
    driver.push_many([job.to_envelope(default_queue="default", now=time.time()) for job in envs])
    held = [driver.reserve(["default"], lease_s=30) for _ in range(4)]
    assert all(held)
    stale = held[0].__class__(held[0].id, "default", held[0].raw, 1, held[1].token)
    driver.ack_many([stale, *held[1:]])  # job 0 under job 1's token: not its holder
    assert sizes(driver) == QueueSizes(reserved=1)
    assert tag_rows(driver) == 0  # the tagged jobs' tag rows went with them


@pytest.mark.parametrize("tags", [(), ("import",)], ids=["plain", "tagged"])
def test_a_worker_counts_a_batch_a_group_at_a_time(driver, monkeypatch, tags):
    groups = count_calls(monkeypatch, DatabaseBatchStore)
    rows = [Row(n=n).with_tags(*tags) for n in range(120)]
    pending = kashq.batch(rows).then(Callback(kind="then")).finally_(Callback(kind="finally"))
    record = dispatch(driver, pending)
    options = WorkerOptions(stop_when_empty=True, sleep_s=0.05)
    Worker(driver, MemoryFailedJobStore(), options).run(1)
    assert sorted(RAN) == ["finally", *["row"] * 120, "then"]
    assert sum(groups) == 120
    assert max(groups) == WorkerOptions().prefetch, "a prefetched group is counted at once"
    assert len(groups) < 120 / 4
    assert sizes(driver) == QueueSizes()
    counted = store_for(driver).get(record.id)
    assert counted is not None and (counted.done, counted.pending) == (120, 0)
