"""Regressions: each test pins a bug found in review, fixed at its root."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pytest
from pydantic import field_validator

import kashq
from kashq import Job, Outcome, Worker, WorkerOptions
from kashq.config import load_settings
from kashq.drivers.base import QueueSizes
from kashq.drivers.memory import MemoryDriver
from kashq.failed.memory import MemoryFailedJobStore
from kashq.manager import QueueManager
from kashq.testing import memory_queue

RAN: list[Any] = []


@pytest.fixture(autouse=True)
def _clear() -> None:
    RAN.clear()


class ValidatorExplodes(Job):
    value: int

    @field_validator("value")
    @classmethod
    def _boom(cls, value: int) -> int:
        if value < 0:
            raise TypeError("negative values break this validator")
        return value

    def handle(self) -> None:
        RAN.append(self.value)


class FailsOnce(Job):
    tries = 2
    backoff = 0.3

    def handle(self) -> None:
        RAN.append(self.attempts())
        if self.attempts() == 1:
            raise RuntimeError("first attempt fails")


class Quick(Job):
    n: int

    def handle(self) -> None:
        RAN.append(self.n)


class SlowInThread(Job):
    seconds: float

    def handle(self) -> None:
        RAN.append(("start", threading.current_thread().name))
        time.sleep(self.seconds)
        RAN.append(("end", threading.current_thread().name))


class Parent(Job):
    def handle(self) -> None:
        RAN.append("parent")
        Quick(n=1).on_queue("brand-new-queue").dispatch()


def envelope(job: Job) -> kashq.Envelope:
    return job.to_envelope(default_queue="default", now=time.time())


def test_a_validator_raising_a_non_validation_error_fails_the_job_not_the_worker():
    driver = MemoryDriver()
    store = MemoryFailedJobStore()
    bad = dataclasses.replace(envelope(ValidatorExplodes(value=1)), payload={"value": -1})
    driver.push(bad)
    driver.push(envelope(ValidatorExplodes(value=2)))
    worker = Worker(driver, store, WorkerOptions(stop_when_empty=True)).start(1)
    worker.join(10)
    assert RAN == [2]
    [record] = store.all()
    assert "could not be loaded: TypeError: negative values break this validator" in record.error


def test_stop_when_empty_waits_for_a_delayed_retry_before_stopping():
    driver = MemoryDriver()
    store = MemoryFailedJobStore()
    driver.push(envelope(FailsOnce()))
    worker = Worker(driver, store, WorkerOptions(stop_when_empty=True, sleep_s=0.1)).start(1)
    worker.join(10)
    assert not worker.running
    assert RAN == [1, 2]
    assert driver.sizes(["default"])["default"] == QueueSizes()


def test_max_jobs_is_exact_with_several_threads():
    driver = MemoryDriver()
    for n in range(20):
        driver.push(envelope(Quick(n=n)))
    worker = Worker(driver, MemoryFailedJobStore(), WorkerOptions(max_jobs=3, sleep_s=0.05))
    worker.start(4)
    worker.join(10)
    assert len(RAN) == 3
    assert worker.stats.processed == 3


def test_run_next_renews_the_lease_of_a_long_job():
    driver = MemoryDriver()
    driver.push(envelope(SlowInThread(seconds=1.0)))
    worker = Worker(driver, MemoryFailedJobStore(), WorkerOptions(lease_s=0.3))
    stolen: list[object] = []

    def thief() -> None:
        while not RAN:
            time.sleep(0.01)
        for _ in range(8):
            time.sleep(0.1)
            res = driver.reserve(["default"], lease_s=0.3)
            if res is not None:
                stolen.append(res)

    other = threading.Thread(target=thief)
    other.start()
    assert worker.run_next() is Outcome.COMPLETED
    other.join()
    assert stolen == []


def test_sync_dispatch_from_two_threads_returns_only_after_its_own_job_ran():
    kashq.configure(QueueManager(load_settings(connection="sync")))
    finished: dict[str, bool] = {}

    def dispatch(name: str) -> None:
        SlowInThread(seconds=0.2).dispatch()
        ends = [entry for entry in RAN if entry == ("end", name)]
        finished[name] = bool(ends)

    threads = [threading.Thread(target=dispatch, args=(f"t{i}",), name=f"t{i}") for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert finished == {"t0": True, "t1": True, "t2": True}, "each job ran in its own caller"


def test_testing_drain_runs_jobs_dispatched_onto_new_queues_during_the_drain():
    with memory_queue() as q:
        Parent().dispatch()
        q.drain()
    assert RAN == ["parent", 1]


def test_an_explicit_none_override_turns_a_worker_option_off():
    manager = QueueManager(load_settings(connection="memory"))
    assert manager.worker_options().timeout_s == 25.0
    assert manager.worker_options(timeout_s=None).timeout_s is None


def test_prefetch_defaults_to_the_connection_s_own_and_a_setting_wins_everywhere():
    # A database claim is a transaction: 64 jobs per claim by default; Redis takes 8.
    assert WorkerOptions(connection="database").prefetch == 64
    assert WorkerOptions(connection="redis").prefetch == 8
    assert WorkerOptions(connection="database", prefetch=3).prefetch == 3
    manager = QueueManager(load_settings(connection="database"))
    assert manager.worker_options().prefetch == 64
    assert manager.worker_options(connection="redis").prefetch == 8  # the named connection's
    assert manager.worker_options(connection="sharded", prefetch=2).prefetch == 2
    assert QueueManager(load_settings(connection="redis")).worker_options().prefetch == 8
    for connection in ("database", "redis"):
        fixed = QueueManager(load_settings(connection=connection, prefetch=5))
        assert fixed.worker_options().prefetch == 5
    assert load_settings(prefetch="none").prefetch is None
    with pytest.raises(kashq.ConfigError, match="prefetch"):
        load_settings(prefetch="0")
