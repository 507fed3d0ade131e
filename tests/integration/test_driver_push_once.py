"""``Driver.push_once``: a job stored at most once per id while its id is remembered.

Runs on the contract suite's ``driver`` fixture (every driver, Redis Cluster and
the sharded strategies included) with its fake clock. What workflows rely on: a
chain step or callback pushed again (its predecessor delivered twice) is never
stored twice, even after the first copy ran and left its queue.
"""

from __future__ import annotations

import dataclasses
import threading

from kashq.drivers.base import QueueSizes
from kashq.drivers.sync import SyncDriver
from kashq.testing import FakeClock
from tests.integration import test_driver_contract as contract
from tests.integration.test_driver_contract import drain_ids, envelope, reserve, same_storage

# The contract suite's fixtures: every driver kind, each on the fake clock.
clock, driver = contract.clock, contract.driver


def test_an_id_is_stored_once_even_after_its_job_ran_and_left(driver, clock):
    env = envelope(clock, "steps")
    assert driver.push_once(env) is True
    assert driver.push_once(dataclasses.replace(env, payload={"n": 2})) is False
    assert drain_ids(driver, "steps") == [env.id]
    assert driver.push_once(env) is False  # ran and acknowledged: still remembered
    assert drain_ids(driver, "steps") == []
    assert driver.push_once(envelope(clock, "steps")) is True  # another id is another job


def test_an_id_is_forgotten_after_its_keep_time(driver, clock):
    env = envelope(clock, "steps")
    assert driver.push_once(env, keep_s=60) is True
    assert drain_ids(driver, "steps") == [env.id]
    clock.advance(59)
    assert driver.push_once(env, keep_s=60) is False
    clock.advance(2)
    assert driver.push_once(env, keep_s=60) is True
    assert drain_ids(driver, "steps") == [env.id]


def test_another_process_sees_the_same_memory(driver, clock):
    env = envelope(clock, "steps", tags=("orders",))
    assert driver.push_once(env) is True
    other = same_storage(driver, clock)
    assert other.push_once(env) is False
    assert driver.sizes(["steps"])["steps"] == QueueSizes(ready=1)
    assert [job.id for job in other.list_jobs("steps", "ready", tag="orders").jobs] == [env.id]


def test_a_delayed_job_waits_for_its_time(driver, clock):
    env = envelope(clock, "steps", available_at=clock.time() + 30)
    assert driver.push_once(env) is True
    assert reserve(driver, "steps") is None
    clock.advance(31)
    assert drain_ids(driver, "steps") == [env.id]


def test_racing_callers_store_one_job(driver, clock):
    env = envelope(clock, "steps")
    callers = [same_storage(driver, clock) for _ in range(4)]
    answers: list[bool] = []
    start = threading.Barrier(len(callers))

    def push(caller) -> None:
        start.wait()
        answers.append(caller.push_once(env))

    threads = [threading.Thread(target=push, args=(c,)) for c in callers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [False, False, False, True]
    assert drain_ids(driver, "steps") == [env.id]


def test_the_sync_driver_runs_a_job_pushed_once_and_only_once():
    ran: list[str] = []

    def drain(inner, queues) -> None:
        while (res := inner.reserve(queues, lease_s=30)) is not None:
            ran.append(res.id)
            inner.ack(res)

    clock = FakeClock()
    sync = SyncDriver(drain, clock=clock)
    env = envelope(clock, "steps")
    assert sync.push_once(env) is True
    assert sync.push_once(env) is False
    assert ran == [env.id]
