"""Fault tests with real worker processes: killed workers, a job that kills its worker,
a long job beside a second worker (on Redis, SQLite and PostgreSQL), and a restarted
Redis. The ledger the jobs write to lives in the machine's Redis, which no test here
disturbs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kashq import QueueManager
from kashq.config import load_settings
from kashq.drivers.base import Driver, QueueSizes
from kashq.drivers.database import DatabaseDriver
from kashq.drivers.redis import RedisDriver
from kashq.envelope import decode
from kashq.testing import FakeClock
from tests.faults.jobs import KillsItsWorker, LedgerJob
from tests.support.databases import database
from tests.support.redis import delete_prefix, shared_client
from tests.support.services import REDIS_URL, RedisServer

ROOT = Path(__file__).resolve().parents[2]


class Ledger:
    def __init__(self) -> None:
        self.client = shared_client()
        self.key = f"kashq-test-ledger-{uuid.uuid4().hex[:10]}"

    def started(self) -> list[int]:
        return [int(n) for n in self.client.lrange(f"{self.key}:start", 0, -1)]

    def done(self) -> list[int]:
        return [int(n) for n in self.client.lrange(f"{self.key}:done", 0, -1)]

    def job(self, n: int, sleep_s: float = 0.0) -> LedgerJob:
        return LedgerJob(n=n, ledger_url=REDIS_URL, ledger_key=self.key, sleep_s=sleep_s)

    def close(self) -> None:
        self.client.delete(f"{self.key}:start", f"{self.key}:done")


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    made = Ledger()
    yield made
    made.close()


@dataclass
class Queue:
    """A durable driver under test, and the arguments a worker process needs for it."""

    driver: Driver
    worker_args: list[str]

    def sizes(self) -> QueueSizes:
        return self.driver.sizes(["default"])["default"]


@pytest.fixture(params=["redis", "sqlite", "postgres"])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Queue]:
    if request.param == "redis":
        shared_client()
        driver = RedisDriver(REDIS_URL, prefix=f"kashq-test-{uuid.uuid4().hex[:10]}")
        yield Queue(driver, ["redis", REDIS_URL, "--prefix", driver.prefix])
        delete_prefix(driver.client, driver.prefix)
        driver.close()
        return
    with database(request.param, tmp_path, migrated=True) as url:
        db_driver = DatabaseDriver(url)
        yield Queue(db_driver, ["database", url])
        db_driver.close()


def start_worker(queue: Queue, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.faults.worker_main", *queue.worker_args, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def wait_for(condition: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(10)


def test_jobs_of_a_killed_worker_are_finished_by_a_new_worker_and_none_is_lost(queue, ledger):
    total, concurrency = 200, 4
    queue.driver.push_many([
        ledger.job(n, sleep_s=0.01).to_envelope(default_queue="default", now=time.time())
        for n in range(total)
    ])  # fmt: skip
    first = start_worker(queue, "--lease", "2", "--concurrency", str(concurrency))
    try:
        wait_for(lambda: len(ledger.done()) >= 50)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        stop(first)
    # In flight = reserved and not yet acknowledged when the worker died: those
    # are the only jobs that may run again.
    in_flight = queue.sizes().reserved
    assert len(set(ledger.done())) < total, "the kill came mid-run"

    second = start_worker(queue, "--lease", "2", "--concurrency", str(concurrency))
    try:
        wait_for(lambda: set(ledger.done()) == set(range(total)))
        wait_for(lambda: queue.sizes() == QueueSizes())
    finally:
        stop(second)
    duplicates = len(ledger.done()) - total
    print(f"killed with {in_flight} job(s) in flight; {duplicates} completed twice")
    assert 0 <= duplicates <= in_flight <= concurrency


def test_job_that_keeps_killing_its_worker_ends_failed_as_worker_lost(queue, tmp_path):
    from kashq.failed.database import DatabaseFailedJobStore

    failed_db = f"sqlite:///{tmp_path / 'failed.sqlite'}"
    env = KillsItsWorker().to_envelope(default_queue="default", now=time.time())
    queue.driver.push(env)
    store = DatabaseFailedJobStore(failed_db)
    deaths = 0
    deadline = time.monotonic() + 60
    while store.find(env.id) is None:
        assert time.monotonic() < deadline, "the job never ended in failed_jobs"
        worker = start_worker(queue, "--lease", "0.5", "--failed-db", failed_db)
        try:
            # Recorded, then acknowledged: wait for both before the worker is killed.
            wait_for(
                lambda w=worker: (
                    w.poll() is not None
                    or (store.find(env.id) is not None and queue.sizes() == QueueSizes())
                )
            )
        finally:
            if worker.poll() is not None:
                deaths += worker.returncode == -signal.SIGKILL
            stop(worker)
    record = store.find(env.id)
    assert record is not None
    assert record.error.startswith("worker lost: delivered 3 times")
    assert deaths == 2, "tries=2 allows two deliveries; the third is failed"
    assert queue.sizes() == QueueSizes()


def test_a_job_killing_its_worker_among_prefetched_jobs_fails_alone(tmp_path, ledger):
    """Short jobs are prefetched (several per reserve): the killer lands in a batch, and
    the jobs waiting behind it when it kills the worker are neither lost nor counted."""
    from kashq.failed.database import DatabaseFailedJobStore

    shared_client()
    driver = RedisDriver(REDIS_URL, prefix=f"kashq-test-{uuid.uuid4().hex[:10]}")
    queue = Queue(driver, ["redis", REDIS_URL, "--prefix", driver.prefix])
    failed_db = f"sqlite:///{tmp_path / 'failed.sqlite'}"
    now = time.time()
    before = [ledger.job(n).to_envelope(default_queue="default", now=now) for n in range(20)]
    killer = KillsItsWorker().to_envelope(default_queue="default", now=now)
    after = [ledger.job(n).to_envelope(default_queue="default", now=now) for n in range(20, 40)]
    driver.push_many([*before, killer, *after])
    store = DatabaseFailedJobStore(failed_db)
    deaths = 0
    try:
        deadline = time.monotonic() + 90
        while not (store.find(killer.id) and set(ledger.done()) == set(range(40))):
            assert time.monotonic() < deadline, f"stuck: {sorted(set(ledger.done()))}"
            worker = start_worker(queue, "--lease", "0.5", "--failed-db", failed_db)
            try:
                wait_for(
                    lambda w=worker: w.poll() is not None or queue.sizes() == QueueSizes(),
                    timeout_s=30,
                )
            finally:
                if worker.poll() is not None:
                    deaths += worker.returncode == -signal.SIGKILL
                stop(worker)
        assert [f.uuid for f in store.all()] == [killer.id], "only the killer failed"
        record = store.find(killer.id)
        assert record is not None
        assert record.error.startswith("worker lost: delivered 3 times")
        print(f"the killer killed {deaths} worker(s)")
        # Killed first while prefetched (uncounted), then twice counted.
        assert deaths in (2, 3)
        assert queue.sizes() == QueueSizes()
    finally:
        delete_prefix(driver.client, driver.prefix)
        driver.close()


def test_long_job_is_never_handed_to_a_second_worker(queue, ledger):
    queue.driver.push(
        ledger.job(1, sleep_s=3.0).to_envelope(default_queue="default", now=time.time())
    )
    workers = [start_worker(queue, "--lease", "0.5") for _ in range(2)]
    try:
        wait_for(lambda: ledger.done() == [1], timeout_s=30)
        time.sleep(1.0)  # two more lease lengths: nobody picks it up again
    finally:
        for worker in workers:
            stop(worker)
    assert ledger.started() == [1]
    assert ledger.done() == [1]


def test_redis_restarted_with_aof_keeps_pending_and_delayed_jobs(tmp_path):
    server = RedisServer(tmp_path, appendonly=True).start()
    clock = FakeClock()
    try:
        driver = RedisDriver(server.url, prefix="k", clock=clock)
        ready = [LedgerJob(n=n, ledger_url="-", ledger_key="-") for n in range(10)]
        delayed = [LedgerJob(n=n, ledger_url="-", ledger_key="-").delay(60) for n in range(5)]
        envelopes = [j.to_envelope(default_queue="default", now=clock.time()) for j in ready]
        envelopes += [j.to_envelope(default_queue="default", now=clock.time()) for j in delayed]
        driver.push_many(envelopes)
        server.restart()  # SIGKILL, then start again from the append-only file
        driver = RedisDriver(server.url, prefix="k", clock=clock)
        assert driver.sizes(["default"])["default"] == QueueSizes(ready=10, delayed=5)
        got = []
        while (res := driver.reserve(["default"], lease_s=30)) is not None:
            got.append(decode(res.raw).id)
            driver.ack(res)
        assert got == [e.id for e in envelopes[:10]]
        clock.advance(60)
        later = [driver.reserve(["default"], lease_s=30) for _ in range(5)]
        assert {decode(r.raw).id for r in later if r} == {e.id for e in envelopes[10:]}
    finally:
        server.stop()


def _manager_on(queue: Queue, tmp_path: Path) -> QueueManager:
    """A manager on the storage of ``queue``'s driver, as another process would open it."""
    if isinstance(queue.driver, RedisDriver):
        settings = load_settings(
            connection="redis", redis_url=REDIS_URL, prefix=queue.driver.prefix,
            database_url=f"sqlite:///{tmp_path / 'failed.sqlite'}",
        )  # fmt: skip
    else:
        url = queue.worker_args[1]
        settings = load_settings(connection="database", database_url=url)
    return QueueManager(settings)


def test_the_status_of_a_job_whose_worker_is_killed_goes_back_to_queued(queue, ledger, tmp_path):
    manager = _manager_on(queue, tmp_path)
    try:
        handle = manager.dispatch(ledger.job(1, sleep_s=3))
        assert handle is not None and handle.status().state == "queued"
        first = start_worker(queue, "--lease", "1")
        try:
            wait_for(lambda: ledger.started() == [1])
            assert handle.status().state == "reserved"  # no event log in that worker
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            stop(first)
        wait_for(lambda: handle.status().state == "queued", 10)  # its lease lapsed
        second = start_worker(queue, "--lease", "10")
        try:
            assert handle.wait(timeout=60).state == "completed"
            assert ledger.done() == [1]
        finally:
            stop(second)
    finally:
        manager.close()
