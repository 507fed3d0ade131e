"""Built-in middleware across workers on real Redis, SQLite and PostgreSQL.

Each worker gets its own driver (its own connections) on the same storage, so
what they share is the store's locks and counters, never a Python object.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kashq import Job, MemoryFailedJobStore, Worker, WorkerOptions
from kashq.drivers.base import Driver
from kashq.drivers.database import DatabaseDriver
from kashq.drivers.redis import RedisDriver
from kashq.middleware import Middleware, RateLimited, WithoutOverlapping
from tests.support.databases import database
from tests.support.redis import redis_driver
from tests.support.services import REDIS_URL

EVENTS: list[tuple[Any, ...]] = []
EVENTS_LOCK = threading.Lock()
RATE_KEY = {"key": ""}  # set per test, so runs never share a counter


def note(*event: Any) -> None:
    with EVENTS_LOCK:
        EVENTS.append(event)


@pytest.fixture(autouse=True)
def _clear_events() -> None:
    EVENTS.clear()
    RATE_KEY["key"] = f"rate-{uuid.uuid4().hex[:8]}"


class Exclusive(Job):
    key: str
    n: int

    def middleware(self) -> list[Middleware]:
        return [WithoutOverlapping(self.key, release_after=0.05, expire_after=30)]

    def handle(self) -> None:
        note("enter", self.key, self.n)
        time.sleep(0.03)
        note("exit", self.key, self.n)


STAMP = threading.local()


class Stamp:
    """Notes the time just before the rate limit's hit, for the job to report."""

    def handle(self, job: Job, call_next: Callable[[], Any]) -> Any:
        STAMP.before = time.time()
        return call_next()


class Limited(Job):
    n: int

    def middleware(self) -> list[Middleware]:
        return [Stamp(), RateLimited(RATE_KEY["key"], 3, 1)]

    def handle(self) -> None:
        note("ran", STAMP.before, time.time())


@pytest.fixture(params=["redis", "sqlite", "postgres"])
def make_driver(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Callable[[], Driver]]:
    """Makes drivers on one fresh store (a Redis prefix or a database); closes them after."""
    made: list[Driver] = []
    if request.param == "redis":
        with redis_driver() as first:

            def make() -> Driver:
                made.append(RedisDriver(REDIS_URL, prefix=first.prefix))
                return made[-1]

            yield make
    else:
        with database(request.param, tmp_path, migrated=True) as url:

            def make() -> Driver:
                made.append(DatabaseDriver(url))
                return made[-1]

            yield make
    for driver in made:
        driver.close()


def run_two_workers(make_driver: Callable[[], Driver], queue: str) -> list[Worker]:
    options = WorkerOptions(queues=(queue,), tries=1, sleep_s=0.05, stop_when_empty=True)
    workers = [Worker(make_driver(), MemoryFailedJobStore(), options) for _ in range(2)]
    for worker in workers:
        worker.start(1)
    for worker in workers:
        worker.join(120)
        assert not worker.running, "workers did not finish in time"
    return workers


def test_without_overlapping_never_runs_one_key_twice_at_once_across_workers(make_driver):
    queue = f"q-{uuid.uuid4().hex[:8]}"
    producer = make_driver()
    jobs = [Exclusive(key=key, n=n) for key in ("a", "b") for n in range(5)]
    producer.push_many([j.to_envelope(default_queue=queue, now=time.time()) for j in jobs])
    workers = run_two_workers(make_driver, queue)
    for key in ("a", "b"):
        steps = [(kind, n) for kind, k, n in EVENTS if k == key]
        # Enter and exit of one job always follow each other: no other job of the key between.
        for i in range(0, len(steps), 2):
            assert steps[i][0] == "enter" and steps[i + 1] == ("exit", steps[i][1]), steps
        assert sorted(n for kind, n in steps if kind == "exit") == list(range(5))
    assert sum(w.stats.completed for w in workers) == 10
    assert all(w.stats.failed == 0 for w in workers)


def test_rate_limited_keeps_at_most_max_jobs_per_window_across_workers(make_driver):
    queue = f"q-{uuid.uuid4().hex[:8]}"
    producer = make_driver()
    jobs = [Limited(n=n) for n in range(8)]
    producer.push_many([j.to_envelope(default_queue=queue, now=time.time()) for j in jobs])
    workers = run_two_workers(make_driver, queue)
    assert sum(w.stats.completed for w in workers) == 8
    per_window: dict[int, int] = {}
    for _, before, ran_at in EVENTS:
        # The limit's hit happened between these two times; count a run only
        # when both lie in one window, so the count can never be too high.
        if ran_at is not None and math.floor(before) == math.floor(ran_at):
            per_window[math.floor(before)] = per_window.get(math.floor(before), 0) + 1
    assert per_window and max(per_window.values()) <= 3, per_window
