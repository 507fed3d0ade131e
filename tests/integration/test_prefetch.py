"""Prefetch on Redis and the databases: several jobs per reserve, given back when not run,
never miscounted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kashq import Job, Worker, WorkerOptions
from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.drivers.base import QueueSizes
from kashq.drivers.database import DatabaseDriver
from kashq.drivers.redis import RedisDriver
from kashq.envelope import Envelope
from kashq.failed.memory import MemoryFailedJobStore
from kashq.jobevents import EventKind
from kashq.testing import FakeClock
from kashq.worker import fetch as fetch_module
from kashq.worker import prefetch
from tests.support.databases import database
from tests.support.redis import redis_driver

Driver = RedisDriver | DatabaseDriver

RAN: list[tuple[int, str]] = []  # (n, thread name)
STARTED: set[int] = set()
_ran_lock = threading.Lock()


class Step(Job):
    n: int
    sleep_s: float = 0.0

    def handle(self) -> None:
        STARTED.add(self.n)
        time.sleep(self.sleep_s)
        with _ran_lock:
            RAN.append((self.n, threading.current_thread().name))


@pytest.fixture(params=["redis", "sqlite", "postgres", "mariadb"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Driver]:
    RAN.clear()
    STARTED.clear()
    if request.param == "redis":
        with redis_driver() as made:
            yield made
        return
    with database(request.param, tmp_path, migrated=request.param != "sqlite") as url:
        db_driver = DatabaseDriver(url, poll_interval_s=0.02)
        try:
            yield db_driver
        finally:
            db_driver.close()


def sibling(driver: Driver, clock: Clock = SYSTEM_CLOCK) -> Driver:
    """Another driver on the same queues (as another worker would have), on ``clock``."""
    if isinstance(driver, RedisDriver):
        return RedisDriver(driver.client, prefix=driver.prefix, clock=clock)
    return DatabaseDriver(driver.engine, clock=clock, poll_interval_s=0.02)


def connection_of(driver: Driver) -> str:
    return "redis" if isinstance(driver, RedisDriver) else "database"


def push_steps(driver: Driver, count: int, **fields: float) -> list[Envelope]:
    envs = [
        Step(n=n, **fields).to_envelope(default_queue="default", now=time.time())
        for n in range(count)
    ]
    driver.push_many(envs)
    return envs


def sizes(driver: Driver) -> QueueSizes:
    return driver.sizes(["default"])["default"]


def test_a_batch_is_the_queue_head_in_order_each_job_under_its_own_token(driver):
    envs = push_steps(driver, 10)
    batch = driver.reserve_batch(["default"], lease_s=30, limit=4)
    assert [r.id for r in batch] == [e.id for e in envs[:4]]
    assert [r.deliveries for r in batch] == [1, 1, 1, 1]
    first = batch[0].token
    assert "." not in first
    assert all(r.token.startswith(f"{first}.") for r in batch[1:])
    assert len({r.token for r in batch}) == 4
    assert sizes(driver) == QueueSizes(ready=6, reserved=4)

    later = driver.reserve_batch(["default"], lease_s=30, acks=batch, limit=100)
    assert [r.id for r in later] == [e.id for e in envs[4:]]
    assert sizes(driver) == QueueSizes(reserved=6)
    driver.ack_many(later)
    assert sizes(driver) == QueueSizes()


def test_acks_of_another_queue_ride_along_with_the_reserve(driver):
    other = Step(n=1).to_envelope(default_queue="other", now=time.time())
    driver.push(other)
    held = driver.reserve_batch(["other"], lease_s=30, limit=5)
    assert [r.id for r in held] == [other.id]
    push_steps(driver, 2)
    got = driver.reserve_batch(["default"], lease_s=30, acks=held, limit=5)
    assert len(got) == 2
    assert driver.sizes(["other"])["other"] == QueueSizes()


def test_jobs_given_back_keep_their_place_and_their_delivery_is_not_counted(driver):
    envs = push_steps(driver, 5)
    batch = driver.reserve_batch(["default"], lease_s=30, limit=3)
    driver.unreserve(batch[1:])
    assert sizes(driver) == QueueSizes(ready=4, reserved=1)
    again = driver.reserve_batch(["default"], lease_s=30, acks=batch[:1], limit=10)
    assert [r.id for r in again] == [e.id for e in envs[1:]]
    assert [r.deliveries for r in again] == [1, 1, 1, 1]
    driver.unreserve(batch[1:])  # stale tokens: nothing happens
    assert sizes(driver) == QueueSizes(reserved=4)


def test_prefetched_jobs_of_a_vanished_worker_come_back_uncounted_and_one_at_a_time(driver):
    clock = FakeClock()
    timed = sibling(driver, clock)
    envs = [Step(n=n).to_envelope(default_queue="default", now=clock.time()) for n in range(4)]
    timed.push_many(envs)
    first = timed.reserve_batch(["default"], lease_s=5, limit=3)
    assert len(first) == 3
    clock.advance(6)  # the worker holding them vanished: every lease lapsed

    # The job it was running counts a lost delivery; the ones waiting behind it do not,
    # and each goes out alone, so a job that kills its worker is counted next time.
    got = [timed.reserve_batch(["default"], lease_s=5, limit=10) for _ in range(4)]
    assert [[(r.id, r.deliveries) for r in batch] for batch in got] == [
        [(envs[0].id, 2)],
        [(envs[1].id, 1)],
        [(envs[2].id, 1)],
        [(envs[3].id, 1)],
    ]


def full_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's first job alone, then full batches, however long the jobs took: on a
    loaded machine a short job can take long enough to shrink the batches a test needs."""
    monkeypatch.setattr(
        fetch_module, "batch_size", lambda prefetch, last_s: 1 if last_s is None else prefetch
    )


def drain_counting_batches(driver: Driver, prefetch: int) -> list[int]:
    """Run a worker until the queue is empty; how many jobs each of its reserves took."""
    options = WorkerOptions(
        connection=connection_of(driver), prefetch=prefetch, stop_when_empty=True, sleep_s=0.1
    )
    worker = Worker(driver, MemoryFailedJobStore(), options)
    taken: list[int] = []
    reserve_batch = driver.reserve_batch

    def counting(*args, **kwargs):
        found = reserve_batch(*args, **kwargs)
        taken.append(len(found))
        return found

    driver.reserve_batch = counting  # type: ignore[method-assign]
    worker.run()
    return [n for n in taken if n]


def test_a_worker_prefetches_short_jobs_and_runs_each_once_in_order(driver):
    push_steps(driver, 200)
    taken = drain_counting_batches(driver, 8)
    assert [n for n, _ in RAN] == list(range(200))
    assert max(taken) == 8
    assert len(taken) < 200 / 4, "most reserves took a batch"
    assert sizes(driver) == QueueSizes()


def test_prefetch_1_takes_one_job_per_reserve(driver):
    push_steps(driver, 20)
    taken = drain_counting_batches(driver, 1)
    assert len(RAN) == 20
    assert taken == [1] * 20


def test_max_jobs_is_never_overshot_by_a_batch(driver):
    push_steps(driver, 30)
    options = WorkerOptions(connection=connection_of(driver), prefetch=8, max_jobs=5, sleep_s=0.1)
    Worker(driver, MemoryFailedJobStore(), options).run(2)
    assert len(RAN) == 5
    assert sizes(driver) == QueueSizes(ready=25)


def test_jobs_waiting_behind_a_long_job_are_given_to_another_worker(driver, monkeypatch):
    full_batches(monkeypatch)
    push_steps(driver, 1)  # a short job first: the worker learns jobs are short
    long_env = Step(n=1, sleep_s=1.5).to_envelope(default_queue="default", now=time.time())
    driver.push(long_env)
    later = [Step(n=n).to_envelope(default_queue="default", now=time.time()) for n in range(2, 7)]
    driver.push_many(later)
    options = WorkerOptions(connection=connection_of(driver), prefetch=8, sleep_s=0.1)
    by_second: list[str] = []
    first = Worker(driver, MemoryFailedJobStore(), options)
    first.start(1)
    try:
        deadline = time.monotonic() + 5
        while not (RAN and sizes(driver).reserved >= 6):  # ran job 0, holds 1 to 6
            assert time.monotonic() < deadline, f"never prefetched: {sizes(driver)}"
            time.sleep(0.005)
        other_driver = sibling(driver)
        second = Worker(other_driver, MemoryFailedJobStore(), options)
        second.add_listener(
            lambda event: event.kind is EventKind.STARTED and by_second.append(event.job_id)
        )
        second.start(1)
        deadline = time.monotonic() + 5
        while len(RAN) < 6:
            assert time.monotonic() < deadline, f"the waiting jobs were not handed over: {RAN}"
            time.sleep(0.01)
        second.stop(5)
        first.stop(5)
    finally:
        first.stop(5)
    assert sorted(n for n, _ in RAN) == list(range(7))
    assert by_second == [env.id for env in later], "the second worker ran those waiting"
    assert sizes(driver) == QueueSizes()


def test_a_stopping_worker_gives_its_prefetched_jobs_back_uncounted(driver, monkeypatch):
    full_batches(monkeypatch)
    push_steps(driver, 1)
    envs = [
        Step(n=n, sleep_s=0.3 if n == 1 else 0.0).to_envelope(
            default_queue="default", now=time.time()
        )
        for n in range(1, 6)
    ]
    driver.push_many(envs)
    options = WorkerOptions(connection=connection_of(driver), sleep_s=0.1)
    worker = Worker(driver, MemoryFailedJobStore(), options)
    worker.start(1)
    deadline = time.monotonic() + 5
    while 1 not in STARTED:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert sizes(driver).reserved == 5
    worker.stop(5)  # while job 1 runs, 2 to 5 wait behind it
    assert [n for n, _ in RAN] == [0, 1]
    assert sizes(driver) == QueueSizes(ready=4)
    back = driver.reserve_batch(["default"], lease_s=30, limit=10)
    assert [(r.id, r.deliveries) for r in back] == [(e.id, 1) for e in envs[1:]]


def test_batch_size_follows_the_last_jobs_duration():
    assert prefetch.batch_size(8, None) == 1
    assert prefetch.batch_size(8, 0.00001) == 8
    assert prefetch.batch_size(8, prefetch.PREFETCH_BUDGET_S / 3) == 3
    assert prefetch.batch_size(8, prefetch.PREFETCH_BUDGET_S * 2) == 1
    assert prefetch.batch_size(1, 0.00001) == 1
