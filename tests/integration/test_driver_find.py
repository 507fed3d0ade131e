"""``Driver.find``: one job looked up by id, the same on every driver.

Runs on the contract suite's ``driver`` fixture (every driver, Redis Cluster
and the sharded strategies included) with its fake clock, so delays and
leases are exercised without sleeping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from kashq.drivers.base import Driver, FoundJob, QueueSizes, is_job_id
from kashq.drivers.sharded import ShardedDriver
from kashq.drivers.sync import SyncDriver
from kashq.envelope import Envelope, decode, new_job_id
from kashq.exceptions import DriverError
from kashq.testing import FakeClock
from tests.integration import test_driver_contract as contract
from tests.integration.test_driver_contract import LEASE_S, envelope, reserve
from tests.support.redis import sharded_driver
from tests.support.services import free_port

# The contract suite's fixtures: every driver kind, each on the fake clock.
clock, driver = contract.clock, contract.driver

LETTERED_ID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0fabcdef12"  # case matters: MySQL compares ignoring it


def test_pushed_job_is_found_ready_with_its_raw_and_no_deliveries(driver, clock):
    env = envelope(clock, "emails")
    driver.push(env)
    assert driver.find(env.id) == FoundJob("emails", "ready", env.encode(), 0)


def test_delayed_job_is_found_delayed_and_ready_once_its_time_comes(driver, clock):
    env = envelope(clock, available_at=clock.time() + 10)
    driver.push(env)
    assert driver.find(env.id) == FoundJob("default", "delayed", env.encode(), 0)
    clock.advance(9.9)
    assert driver.find(env.id).state == "delayed"
    clock.advance(0.2)  # due, though no reserve has moved it yet: judged by time
    assert driver.find(env.id) == FoundJob("default", "ready", env.encode(), 0)


def test_reserved_job_is_found_reserved_with_its_lease_deadline(driver, clock):
    env = envelope(clock)
    driver.push(env)
    res = reserve(driver)
    assert res is not None
    found = driver.find(env.id)
    assert found == FoundJob("default", "reserved", res.raw, 1, clock.time() + LEASE_S)
    clock.advance(5)
    assert driver.extend(res, 60)
    assert driver.find(env.id).lease_until == pytest.approx(clock.time() + 60)


def test_job_whose_lease_lapsed_is_still_found_reserved_with_its_past_deadline(driver, clock):
    driver.push(env := envelope(clock))
    res = reserve(driver)
    assert res is not None
    deadline = clock.time() + LEASE_S
    clock.advance(LEASE_S + 1)
    assert driver.find(env.id) == FoundJob("default", "reserved", res.raw, 1, deadline)


def test_a_redelivered_job_counts_its_deliveries_as_the_reservation_does(driver, clock):
    driver.push(env := envelope(clock))
    assert reserve(driver) is not None
    clock.advance(LEASE_S + 1)
    again = reserve(driver)
    assert again is not None and again.deliveries == 2
    found = driver.find(env.id)
    assert (found.state, found.deliveries) == ("reserved", 2)
    assert found.lease_until == clock.time() + LEASE_S


def test_released_job_is_found_with_its_new_envelope_waiting_again(driver, clock):
    driver.push(env := envelope(clock))
    res = reserve(driver)
    assert res is not None
    later = dataclasses.replace(decode(res.raw), attempts=1, available_at=clock.time() + 30)
    driver.release(res, later)
    assert driver.find(env.id) == FoundJob("default", "delayed", later.encode(), 0)
    clock.advance(31)
    assert driver.find(env.id) == FoundJob("default", "ready", later.encode(), 0)
    res = reserve(driver)
    assert res is not None and res.raw == later.encode()
    now = dataclasses.replace(later, attempts=2, available_at=clock.time())
    driver.release(res, now)
    assert driver.find(env.id) == FoundJob("default", "ready", now.encode(), 0)


def test_acked_job_is_not_found(driver, clock):
    driver.push(env := envelope(clock))
    res = reserve(driver)
    assert res is not None
    driver.ack(res)
    assert driver.find(env.id) is None


def test_cleared_jobs_are_not_found_in_any_state(driver, clock):
    ready, delayed, held = (envelope(clock), envelope(clock, available_at=clock.time() + 9),
                            envelope(clock))  # fmt: skip
    driver.push_many([held])
    assert reserve(driver) is not None
    driver.push_many([ready, delayed])
    assert driver.clear("default").count == 3
    assert [driver.find(env.id) for env in (ready, delayed, held)] == [None, None, None]


def test_unknown_id_is_not_found(driver, clock):
    driver.push(envelope(clock))
    assert driver.find(new_job_id()) is None
    assert driver.find(new_job_id(), ["default"]) is None


@pytest.mark.parametrize(
    "bad",
    ["", "x", "a" * 10_000, "a" * 37, "\x00", LETTERED_ID[:-1] + "\x00", "\ud800",
     LETTERED_ID.upper(), LETTERED_ID + " ", " " + LETTERED_ID[1:], "é✓🚀", "*", "{a}:b", "%"],
)  # fmt: skip
def test_malformed_or_near_miss_ids_are_not_found_and_never_raise(driver, clock, bad):
    driver.push(envelope(clock, id=LETTERED_ID))
    assert driver.find(bad) is None
    assert driver.find(bad, ["default"]) is None
    assert driver.find(LETTERED_ID) is not None


def test_a_job_id_is_one_to_36_characters_of_utf8_text_without_nul():
    assert is_job_id(new_job_id()) and is_job_id("unknown-1") and is_job_id("é" * 36)
    for bad in ("", "a" * 37, "a\x00", "\udc80", None, 7, b"abc"):
        assert not is_job_id(bad)


def test_queue_hint_finds_the_job_in_its_queue_and_not_when_it_names_another(driver, clock):
    env = envelope(clock, "emails")
    driver.push_many([env, envelope(clock, "other")])
    assert driver.find(env.id, ["emails"]) == FoundJob("emails", "ready", env.encode(), 0)
    assert driver.find(env.id, ["other", "emails"]).queue == "emails"
    assert driver.find(env.id, ["other"]) is None
    assert driver.find(env.id, ["never-used"]) is None
    assert driver.find(env.id, []) is None


def test_a_job_is_found_among_several_queues_without_a_hint(driver, clock):
    queues = ["a", "b:c", "emails", "control", "z"]
    pushed = {q: envelope(clock, q) for q in queues}
    driver.push_many(list(pushed.values()))
    held = reserve(driver, "emails")
    assert held is not None
    for queue, env in pushed.items():
        found = driver.find(env.id)
        assert found is not None and found.queue == queue
        assert found.state == ("reserved" if queue == "emails" else "ready")


def test_many_jobs_of_mixed_priority_and_state_are_each_found_as_they_are(driver, clock):
    envs = [envelope(clock, priority=i % 5, n=i) for i in range(40)]
    envs += [envelope(clock, priority=9, n=i, available_at=clock.time() + 60) for i in range(10)]
    driver.push_many(envs)
    taken = {}
    for _ in range(7):
        res = reserve(driver)
        assert res is not None
        taken[res.id] = res
    for env in envs:
        found = driver.find(env.id)
        assert found is not None
        if env.id in taken:
            assert (found.state, found.raw, found.deliveries) == ("reserved", env.encode(), 1)
        else:
            delayed = env.available_at > clock.time()
            expected = FoundJob("default", "delayed" if delayed else "ready", env.encode(), 0)
            assert found == expected


def test_find_moves_nothing(driver, clock):
    due = envelope(clock, available_at=clock.time() + 5)
    driver.push_many([due, envelope(clock)])
    res = reserve(driver)
    assert res is not None
    clock.advance(LEASE_S + 1)  # `due` fell due and the lease lapsed: neither moved yet
    for _ in range(3):
        driver.find(due.id)
        driver.find(res.id)
    assert driver.find(res.id).state == "reserved"
    assert sorted(r.id for r in (reserve(driver), reserve(driver)) if r) == sorted([due.id, res.id])
    assert driver.sizes(["default"])["default"] == QueueSizes(reserved=2)


# --------------------------------------------------------------------------- sync driver


def test_sync_driver_finds_a_job_while_it_runs_and_none_once_done():
    clock, seen = FakeClock(), []

    def drain(inner: Driver, queues: Sequence[str]) -> None:
        while (res := inner.reserve(queues, lease_s=LEASE_S)) is not None:
            seen.append(sync.find(res.id))
            inner.ack(res)

    sync = SyncDriver(drain, clock=clock)
    env = envelope(clock, "emails")
    sync.push(env)
    assert seen == [FoundJob("emails", "reserved", env.encode(), 1, clock.time() + LEASE_S)]
    assert sync.find(env.id) is None


# --------------------------------------------------------------------------- a shard down


def _on_shard(sharded: ShardedDriver, index: int, env: Envelope) -> None:
    sharded.shards[index].driver.push(env)  # there, whatever the strategy would choose


@pytest.mark.parametrize("strategy", ["hash", "round_robin"])
def test_sharded_find_skips_a_down_shard_when_another_has_the_job(
    redis_shards: list[str], strategy: str
) -> None:
    port = free_port()
    down = f"redis://127.0.0.1:{port}/0"  # nothing listens there
    clock = FakeClock()
    with sharded_driver([down, redis_shards[0]], strategy=strategy, clock=clock) as sharded:
        env = envelope(clock, "emails")
        _on_shard(sharded, 1, env)
        assert sharded.find(env.id) == FoundJob("emails", "ready", env.encode(), 0)
        assert sharded.find(env.id, ["emails"]) is not None
        for missing, hint in ((new_job_id(), None), (env.id, ["other"])):
            with pytest.raises(DriverError, match=f"127.0.0.1:{port}"):
                sharded.find(missing, hint)  # the down shard may hold it


def test_sharded_find_looks_on_every_shard(redis_shards: list[str]) -> None:
    clock = FakeClock()
    with sharded_driver(redis_shards, strategy="hash", clock=clock) as sharded:
        envs = [envelope(clock, f"q{i}") for i in range(3)]
        for index, env in enumerate(envs):  # not where hash would put them: found all the same
            _on_shard(sharded, index, env)
        assert [sharded.find(env.id).queue for env in envs] == ["q0", "q1", "q2"]
        assert sharded.find(new_job_id()) is None
