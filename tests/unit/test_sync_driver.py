"""The sync driver runs jobs in the caller, with the worker's retry rules."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

import kashq
from kashq import Job
from kashq.config import load_settings
from kashq.drivers.base import Driver, Reservation
from kashq.drivers.sync import SyncDriver
from kashq.envelope import Envelope, new_job_id
from kashq.manager import QueueManager
from kashq.testing import FakeClock

RUNS: list[str] = []


class Record(Job):
    label: str

    def handle(self) -> None:
        RUNS.append(self.label)


class Parent(Job):
    def handle(self) -> None:
        RUNS.append("parent:start")
        Record(label="child").on_queue("other").dispatch()
        RUNS.append("parent:end")


class Flaky(Job):
    tries = 3

    def handle(self) -> None:
        RUNS.append(f"flaky:{self.attempts()}")
        raise RuntimeError("flaky")


@pytest.fixture
def sync() -> Iterator[FakeClock]:
    RUNS.clear()
    clock = FakeClock()
    manager = QueueManager(load_settings(connection="sync"), clock=clock)
    kashq.configure(manager)
    yield clock


def test_dispatch_runs_the_job_before_returning(sync):
    job_id = Record(label="now").dispatch()
    assert job_id
    assert RUNS == ["now"]


def test_delay_is_ignored_and_the_job_runs_now(sync):
    Record(label="later").dispatch_after(3600)
    assert RUNS == ["later"]


def test_failures_are_retried_with_backoff_then_recorded(sync):
    start = sync.time()
    Flaky().dispatch()
    assert RUNS == ["flaky:1", "flaky:2", "flaky:3"]
    slept = sync.time() - start
    assert 1 + 2 <= slept < 3.2, "slept 1 s then 2 s (fake clock, in 50 ms steps)"
    [record] = kashq.failed_jobs().all()
    assert (record.connection, record.attempts) == ("sync", 3)


def test_a_job_dispatched_from_a_job_runs_after_it_even_on_another_queue(sync):
    Parent().dispatch()
    assert RUNS == ["parent:start", "parent:end", "child"]


def test_dispatch_many_runs_each_job(sync):
    kashq.dispatch_many([Record(label="a"), Record(label="b")])
    assert RUNS == ["a", "b"]


def test_queue_names_and_control_records_are_the_inner_memory_drivers():
    clock = FakeClock()
    held: list[Reservation] = []

    def hold(driver: Driver, queues: Sequence[str]) -> None:  # reserve, never ack: jobs stay
        while (res := driver.reserve(queues, lease_s=60)) is not None:
            held.append(res)

    driver = SyncDriver(hold, clock=clock)
    for queue in ("b:low", "a"):
        now = clock.time()
        driver.push(Envelope(new_job_id(), "t.Job", queue, {}, created_at=now, available_at=now))
    assert driver.queue_names() == ["a", "b:low"]
    driver.put_control("supervisor:h:1", "{}", ttl_s=10)
    driver.put_control("restart", "t")
    assert driver.get_control("supervisor:") == {"supervisor:h:1": "{}"}
    clock.advance(11)
    assert driver.get_control() == {"restart": "t"}
    assert driver.delete_control("restart") is True
    assert driver.get_control() == {}
