"""On plain Redis a worker's reserve counts its completed batch jobs, in the script that
acknowledges them: no round trip of its own, and no job acknowledged before its count."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator

import pytest

import kashq
from kashq.drivers.base import QueueSizes, Reservation, RidingCounts
from kashq.drivers.redis import RedisDriver
from kashq.events import base as events
from kashq.exceptions import DriverError
from kashq.failed.memory import MemoryFailedJobStore
from kashq.worker import Worker, WorkerOptions
from kashq.workflows.batches import BatchRecord, Callbacks, store_for
from kashq.workflows.batches.redis import RedisBatchStore
from tests.support.batches import RAN, Callback, Row, count_calls, dispatch
from tests.support.redis import redis_driver


@pytest.fixture
def driver() -> Iterator[RedisDriver]:
    RAN.clear()
    with redis_driver() as made:
        yield made


def sizes(driver: RedisDriver) -> QueueSizes:
    return driver.sizes(["default"])["default"]


def held_batch(driver: RedisDriver, n: int = 3) -> tuple[RedisBatchStore, str, list[Reservation]]:
    """A batch of ``n`` jobs, all reserved."""
    envs = [Row(n=i).to_envelope(default_queue="default", now=time.time()) for i in range(n)]
    batch_id, store = str(uuid.uuid4()), store_for(driver)
    assert isinstance(store, RedisBatchStore)
    store.create(BatchRecord(batch_id, "import", n, time.time()), [env.id for env in envs])
    driver.push_many(envs)
    return store, batch_id, driver.reserve_batch(["default"], lease_s=30, limit=n)


def test_a_reserve_counts_its_batch_jobs_and_acknowledges_them_in_one_script(driver):
    store, batch_id, held = held_batch(driver)
    counts = RidingCounts({batch_id: [res.id for res in held]}, time.time())
    assert driver.counts_ride("default", held, 3)
    assert driver.reserve_batch(["default"], lease_s=30, acks=held, limit=8, counts=counts) == []
    assert sizes(driver) == QueueSizes()
    assert counts.replies is not None
    counted = store.counted_reply(batch_id, counts.replies[batch_id])
    assert counted is not None and counted.due == Callbacks.THEN | Callbacks.FINALLY
    assert (counted.record.done, counted.record.pending) == (3, 0)
    again = RidingCounts({batch_id: [held[0].id]}, time.time())  # a job delivered twice
    driver.reserve_batch(["default"], lease_s=30, limit=8, counts=again)
    assert again.replies == {batch_id: None}
    record = store.get(batch_id)
    assert record is not None and (record.done, record.due) == (3, counted.due)


def test_a_count_that_fails_leaves_every_job_unacknowledged(driver):
    store, batch_id, held = held_batch(driver)
    jobs_key = store.keys(batch_id).jobs
    driver.client.delete(jobs_key)
    driver.client.set(jobs_key, "not a hash")  # the count's HMGET fails
    counts = RidingCounts({batch_id: [res.id for res in held]}, time.time())
    with pytest.raises(DriverError):
        driver.reserve_batch(["default"], lease_s=30, acks=held, limit=8, counts=counts)
    assert sizes(driver) == QueueSizes(reserved=3)


def test_counts_ride_only_with_acks_the_reserve_script_sends_itself(driver):
    _, _, held = held_batch(driver, 2)
    tagged = Reservation(held[0].id, "default", '{"tags": ["a"]}', 1, held[0].token)
    assert not driver.counts_ride("other", held, 2)
    assert not driver.counts_ride("default", [tagged], 2)
    assert not driver.counts_ride("default", held, 1001)
    with pytest.raises(ValueError, match="cannot ride"):
        counts = RidingCounts({"b": [held[0].id]}, time.time())
        driver.reserve_batch(["other"], lease_s=30, acks=held, counts=counts)


@pytest.mark.parametrize(
    ("where", "tags"),
    [("redis", ()), ("redis", ("import",)), ("cluster", ())],
    ids=["in-the-reserve", "tagged-apart", "cluster-apart"],
)
def test_a_worker_counts_a_batch_once_whichever_way_it_counts(request, monkeypatch, where, tags):
    """Untagged jobs on plain Redis are counted by the worker's reserves, never by a
    count of their own; tagged ones (acknowledged beside the reserve script) and those
    on a cluster (where a batch's keys are another slot) by a count just before."""
    RAN.clear()
    if where == "cluster":
        stack = contextlib.ExitStack()
        request.addfinalizer(stack.close)
        driver = stack.enter_context(redis_driver(request.getfixturevalue("redis_cluster_url")))
    else:
        driver = request.getfixturevalue("driver")
    apart = count_calls(monkeypatch, RedisBatchStore)
    rows = [Row(n=n).with_tags(*tags) for n in range(20)]
    pending = kashq.batch(rows).then(Callback(kind="then")).finally_(Callback(kind="finally"))
    record = dispatch(driver, pending)
    options = WorkerOptions(stop_when_empty=True, prefetch=8, sleep_s=0.05)
    Worker(driver, MemoryFailedJobStore(), options).run(1)
    assert sorted(RAN) == ["finally", *["row"] * 20, "then"]
    assert sum(apart) == (0 if where == "redis" and not tags else 20)
    record = store_for(driver).get(record.id)
    assert record is not None and (record.done, record.pending) == (20, 0)


def test_counts_made_by_reserves_still_tell_the_event_log(driver):
    """Progress (at most once a second per batch) and the end, from the counts' replies."""
    pending = kashq.batch([Row(n=n) for n in range(20)]).then(Callback(kind="then"))
    dispatch(driver, pending)
    worker = Worker(driver, MemoryFailedJobStore(), WorkerOptions(stop_when_empty=True, prefetch=8))
    steps: list[tuple[str, int]] = []
    worker.send_batch_steps_to(lambda step: steps.append((step.kind, step.details["processed"])))
    worker.run(1)
    assert steps[0][0] == events.BATCH_PROGRESS and 0 < steps[0][1] < 20
    assert steps[-1] == (events.BATCH_FINISHED, 20)
    assert RAN.count("then") == 1
