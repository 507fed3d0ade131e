"""``Driver.remove``: one waiting job taken out by id, the same on every driver.

Runs on the contract suite's ``driver`` fixture (every driver, Redis Cluster
and the sharded strategies included) with its fake clock, as
``test_driver_find`` does. What ``kashq.cancel`` relies on: a job is either
removed (and never handed out afterwards) or reported reserved, never both.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import event

from kashq.drivers.base import Driver, FoundJob, QueueSizes
from kashq.drivers.sync import SyncDriver
from kashq.envelope import decode, new_job_id
from kashq.exceptions import DriverError
from kashq.testing import FakeClock
from tests.integration import test_driver_contract as contract
from tests.integration.test_driver_contract import LEASE_S, drain_ids, envelope, reserve
from tests.integration.test_driver_find import LETTERED_ID
from tests.support.redis import sharded_driver
from tests.support.services import free_port

# The contract suite's fixtures: every driver kind, each on the fake clock.
clock, driver = contract.clock, contract.driver


def test_a_ready_job_is_removed_and_returned_as_find_saw_it(driver, clock):
    env, other = envelope(clock, "emails"), envelope(clock, "emails")
    driver.push_many([env, other])
    seen = driver.find(env.id)
    assert driver.remove(env.id) == seen == FoundJob("emails", "ready", env.encode(), 0)
    assert driver.find(env.id) is None
    assert driver.remove(env.id) is None
    assert driver.sizes(["emails"])["emails"] == QueueSizes(ready=1)
    assert drain_ids(driver, "emails") == [other.id]


def test_delayed_jobs_are_removed_as_delayed_or_as_ready_once_due(driver, clock):
    due = envelope(clock, available_at=clock.time() + 5)
    later = envelope(clock, available_at=clock.time() + 60)
    driver.push_many([due, later])
    clock.advance(6)  # `due` fell due, though no reserve has moved it yet
    assert driver.remove(due.id) == FoundJob("default", "ready", due.encode(), 0)
    assert driver.remove(later.id) == FoundJob("default", "delayed", later.encode(), 0)
    assert driver.sizes(["default"])["default"] == QueueSizes()
    clock.advance(60)
    assert reserve(driver) is None


def test_a_reserved_job_is_reported_and_left_with_its_worker(driver, clock):
    driver.push(env := envelope(clock))
    res = reserve(driver)
    assert res is not None
    held = FoundJob("default", "reserved", res.raw, 1, clock.time() + LEASE_S)
    assert driver.remove(env.id) == held
    assert driver.find(env.id) == held
    assert driver.sizes(["default"])["default"] == QueueSizes(reserved=1)
    assert driver.extend(res, 60)
    driver.ack(res)
    assert driver.remove(env.id) is None
    assert driver.queue_names() == []


def test_a_job_whose_lease_lapsed_is_reported_reserved_and_not_removed(driver, clock):
    driver.push(env := envelope(clock))
    res = reserve(driver)
    assert res is not None
    deadline = clock.time() + LEASE_S
    clock.advance(LEASE_S + 1)
    assert driver.remove(env.id) == FoundJob("default", "reserved", res.raw, 1, deadline)
    again = reserve(driver)  # reclaimed as usual
    assert again is not None and (again.id, again.deliveries) == (env.id, 2)


def test_unknown_ids_and_text_that_is_no_job_id_remove_nothing(driver, clock):
    driver.push(envelope(clock, id=LETTERED_ID))
    near_misses = [LETTERED_ID.upper(), LETTERED_ID + " ", LETTERED_ID[:-1] + "\x00"]
    for bad in [new_job_id(), "", "a" * 37, "\ud800", "*", *near_misses]:
        assert driver.remove(bad) is None
        assert driver.remove(bad, ["default"]) is None
    assert driver.find(LETTERED_ID) is not None


def test_queue_hint_removes_only_from_the_queues_it_names(driver, clock):
    env = envelope(clock, "emails")
    driver.push_many([env, envelope(clock, "other")])
    for hint in (["other"], ["never-used"], []):
        assert driver.remove(env.id, hint) is None
    assert driver.find(env.id) is not None
    assert driver.remove(env.id, ["other", "emails"]) == FoundJob(
        "emails", "ready", env.encode(), 0
    )
    assert driver.find(env.id) is None


@pytest.mark.ordered
def test_the_jobs_left_keep_their_priority_and_fifo_order(driver, clock):
    envs = [envelope(clock, priority=p, n=i) for i, p in enumerate([0, 5, 0, 5, 0, 5, 0])]
    driver.push_many(envs)
    for gone in (envs[2], envs[3]):
        assert driver.remove(gone.id) is not None
    expected = [envs[1], envs[5], envs[0], envs[4], envs[6]]
    assert drain_ids(driver) == [env.id for env in expected]


def test_emptied_queues_are_no_longer_listed_or_counted(driver, clock):
    queues = ["a", "b:c", "control", "emails"]
    pushed = {q: envelope(clock, q) for q in queues}
    delayed = envelope(clock, "emails", available_at=clock.time() + 30)
    driver.push_many([*pushed.values(), delayed])
    for queue in queues[:3]:  # no hint: looked for in every queue
        assert driver.remove(pushed[queue].id).queue == queue
    assert driver.queue_names() == ["emails"]
    assert driver.remove(pushed["emails"].id, ["emails"]).state == "ready"
    assert driver.remove(delayed.id).state == "delayed"
    assert driver.queue_names() == []
    assert driver.sizes(queues) == {q: QueueSizes() for q in queues}


def test_with_a_worker_reserving_meanwhile_each_job_is_removed_or_reserved_never_both(
    driver, clock
):
    envs = [envelope(clock, n=i) for i in range(30)]
    driver.push_many(envs)
    reserved: list[str] = []

    def work() -> None:
        while (res := reserve(driver)) is not None:
            reserved.append(res.id)

    worker = threading.Thread(target=work)
    worker.start()
    # From the back while the worker takes from the front: they meet midway.
    answers = {env.id: driver.remove(env.id, ["default"]) for env in reversed(envs)}
    worker.join()
    assert None not in answers.values()  # none was acked: each was removed or is held
    held = {job_id for job_id, found in answers.items() if found.state == "reserved"}
    assert held == set(reserved) and len(reserved) == len(held)
    assert reserve(driver) is None
    assert driver.sizes(["default"])["default"] == QueueSizes(reserved=len(held))


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
def test_a_database_remove_waits_for_a_release_under_way_and_removes_the_released_job(
    kind: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    with contract.FACTORIES[kind](clock, tmp_path) as db:
        db.push(env := envelope(clock))
        res = reserve(db)
        assert res is not None
        later = dataclasses.replace(decode(res.raw), attempts=1)
        releasing = threading.Thread(target=db.release, args=(res, later))
        committing = threading.Event()

        def slow_release_commit(conn: object) -> None:  # its row locks stay held meanwhile
            if threading.current_thread() is releasing:
                committing.set()
                time.sleep(0.3)

        event.listen(db.engine, "commit", slow_release_commit)
        releasing.start()
        assert committing.wait(10)  # the job's row is deleted and re-inserted, uncommitted
        assert db.remove(env.id) == FoundJob("default", "ready", later.encode(), 0)
        releasing.join()
        assert db.find(env.id) is None


# --------------------------------------------------------------------------- sync driver


def test_sync_driver_removes_a_job_still_waiting_behind_the_one_that_runs():
    clock, ran, answers = FakeClock(), [], []
    child = envelope(clock, "emails")

    def drain(inner: Driver, queues: Sequence[str]) -> None:
        while (res := inner.reserve(queues, lease_s=LEASE_S)) is not None:
            ran.append(res.id)
            if res.id != child.id:
                sync.push(child)  # dispatched by the running job: it waits its turn
                answers.extend([sync.remove(child.id), sync.remove(res.id)])
            inner.ack(res)

    sync = SyncDriver(drain, clock=clock)
    sync.push(parent := envelope(clock, "emails"))
    assert ran == [parent.id]
    assert [found.state for found in answers] == ["ready", "reserved"]


# --------------------------------------------------------------------------- a shard down


@pytest.mark.parametrize("strategy", ["hash", "round_robin"])
def test_sharded_remove_skips_a_down_shard_when_another_has_the_job(
    redis_shards: list[str], strategy: str
) -> None:
    port = free_port()
    clock = FakeClock()
    down = f"redis://127.0.0.1:{port}/0"  # nothing listens there
    with sharded_driver([down, redis_shards[0]], strategy=strategy, clock=clock) as sharded:
        env = envelope(clock, "emails")
        sharded.shards[1].driver.push(env)  # there, whatever the strategy would choose
        assert sharded.remove(env.id) == FoundJob("emails", "ready", env.encode(), 0)
        with pytest.raises(DriverError, match=f"127.0.0.1:{port}"):
            sharded.remove(env.id)  # gone from the shard that answered; the down one may hold it
