"""Batches run by a worker on every driver: counts, callbacks once, a chain inside, cancel.

Runs on the contract suite's ``driver`` fixture (every driver, Redis Cluster and the
sharded strategies included), with a worker in this process on that driver.
"""

from __future__ import annotations

import pytest

import kashq
from kashq.drivers.base import Driver
from kashq.failed.memory import MemoryFailedJobStore
from kashq.halts import batch_record, batch_value
from kashq.testing import FakeClock
from kashq.worker import Worker, WorkerOptions
from kashq.workflows.batch import Batch, PendingBatch
from kashq.workflows.batches import Callbacks, store_for
from kashq.workflows.batches.callbacks import sweep
from tests.integration import test_driver_contract as contract

clock, driver = contract.clock, contract.driver
RAN: list[tuple[str, object]] = []


class Row(kashq.Job):
    n: int
    tries = 1

    def handle(self) -> int:
        RAN.append(("row", self.n))
        if self.n < 0:
            raise ValueError(f"row {self.n} is bad")
        return self.n * 10


class Callback(kashq.Job):
    kind: str

    def handle(self) -> None:
        batch = self.batch()
        assert batch is not None
        values = batch.results() if self.kind == "then" else None
        RAN.append((self.kind, (batch.processed, batch.failed, batch.pending, values)))


@pytest.fixture(autouse=True)
def _fresh_log():
    RAN.clear()


def dispatch(driver: Driver, clock: FakeClock, pending: PendingBatch) -> Batch:
    def envelope_for(job):
        return job.to_envelope(default_queue="default", now=clock.time())

    record, heads, ids = pending.build(envelope_for, clock.time())
    store = store_for(driver)
    store.create(record, ids)
    driver.push_many(heads)
    return Batch(record, store, driver, envelope_for, clock.time)


def drain(driver: Driver, clock: FakeClock) -> Worker:
    worker = Worker(driver, MemoryFailedJobStore(), WorkerOptions(), clock=clock)
    for _ in range(3):  # a sharded connection skips a shard it just saw fail: look again
        worker.drain()
        if not driver.sizes(["default"])["default"].total:
            break
    return worker


def callbacks(pending: PendingBatch) -> PendingBatch:
    return (
        pending.then(Callback(kind="then"))
        .catch(Callback(kind="catch"))
        .finally_(Callback(kind="finally"))
    )


def test_then_and_finally_run_once_with_the_results_in_order(driver, clock):
    batch = dispatch(driver, clock, callbacks(kashq.batch([Row(n=1), [Row(n=2), Row(n=3)]])))
    drain(driver, clock)
    assert sorted(RAN[:3]) == [("row", 1), ("row", 2), ("row", 3)]
    assert sorted(RAN[3:]) == [("finally", (3, 0, 0, None)), ("then", (3, 0, 0, [10, 20, 30]))]
    assert (batch.fresh().finished, batch.fresh().progress()) == (True, 100)


def test_a_failure_runs_catch_once_cancels_the_rest_and_finally_still_runs(driver, clock):
    pending = callbacks(kashq.batch([Row(n=-1), [Row(n=-2), Row(n=5)], Row(n=6)]))
    batch = dispatch(driver, clock, pending)
    worker = drain(driver, clock)
    kinds = [name for name, _ in RAN if name != "row"]
    assert sorted(kinds) == ["catch", "finally"]
    fresh = batch.fresh()
    assert fresh.cancelled and fresh.finished and fresh.failed >= 1
    assert ("row", 5) not in RAN  # the chain stopped at its failed step
    assert fresh.failed + fresh.processed + fresh.record.cancelled == fresh.total == 4
    assert sorted(batch.failed_job_ids()) == sorted(f.uuid for f in worker.failed_store.all())


def test_cancelling_a_batch_ends_its_waiting_jobs_cancelled(driver, clock):
    batch = dispatch(driver, clock, callbacks(kashq.batch([Row(n=1), Row(n=2)])))
    batch.cancel()
    assert driver.get_control(batch_record(batch.id)) == {
        batch_record(batch.id): batch_value(batch.id, clock.time())
    }
    drain(driver, clock)
    assert RAN == [("finally", (0, 0, 0, None))]
    fresh = batch.fresh()
    assert (fresh.cancelled, fresh.finished, fresh.record.cancelled) == (True, True, 2)


def test_a_callback_made_due_and_not_pushed_is_pushed_by_the_sweep_once(driver, clock):
    batch = dispatch(driver, clock, callbacks(kashq.batch([Row(n=1)])))
    store = store_for(driver)
    [job_id] = batch.job_ids()
    store.count(batch.id, [job_id], "done", clock.time())  # its worker died right after
    assert sweep(driver, store, clock.time()) == 1
    assert sweep(driver, store, clock.time()) == 0
    store.mark_pushed(batch.id, Callbacks(0))
    drain(driver, clock)  # the job itself, delivered again: counted already
    assert sorted(name for name, _ in RAN) == ["finally", "row", "then"]
