"""The driver contract: one suite every driver must pass.

Parametrised over drivers; each test gets a fresh driver and a fake clock, so
delays and leases are exercised without sleeping. A factory is a context
manager: it builds the driver (and whatever private storage it needs), and
cleans both up when the test ends.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from kashq.drivers.base import Cleared, Driver, QueueSizes, Reservation
from kashq.drivers.database import DatabaseDriver
from kashq.drivers.memory import MemoryDriver
from kashq.drivers.redis import RedisDriver
from kashq.drivers.sharded import ShardedDriver
from kashq.envelope import UNIQUE_KEY, UNIQUE_TOKEN, Envelope, decode, new_job_id
from kashq.testing import FakeClock
from tests.support.databases import database
from tests.support.redis import redis_driver, sharded_driver

DriverFactory = Callable[[FakeClock, Path], AbstractContextManager[Driver]]


@contextmanager
def memory_driver(clock: FakeClock, tmp_path: Path) -> Iterator[Driver]:
    driver = MemoryDriver(clock=clock)
    try:
        yield driver
    finally:
        driver.close()


def database_driver(kind: str) -> DriverFactory:
    @contextmanager
    def factory(clock: FakeClock, tmp_path: Path) -> Iterator[Driver]:
        with database(kind, tmp_path, migrated=kind != "sqlite") as url:
            driver = DatabaseDriver(url, clock=clock, poll_interval_s=0.01)
            try:
                yield driver
            finally:
                driver.close()

    return factory


def shared_redis_driver(clock: FakeClock, tmp_path: Path) -> AbstractContextManager[Driver]:
    return redis_driver(clock=clock)


FACTORIES: dict[str, DriverFactory] = {
    "memory": memory_driver,
    "sqlite": database_driver("sqlite"),
    "postgres": database_driver("postgres"),
    "mariadb": database_driver("mariadb"),
    "redis": shared_redis_driver,
}
CLUSTER = "redis-cluster"  # needs the session's local cluster, so built in the fixture
SHARDED = "sharded"  # three private redis-servers (session fixture), hash strategy
SHARDED_KINDS = (SHARDED, f"{SHARDED}-round_robin", f"{SHARDED}-least_loaded")
LEASE_S = 30.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def open_driver(
    request: pytest.FixtureRequest, kind: str, clock: FakeClock, tmp_path: Path
) -> AbstractContextManager[Driver]:
    if kind == CLUSTER:
        return redis_driver(request.getfixturevalue("redis_cluster_url"), clock=clock)
    if kind.startswith(SHARDED):
        urls = request.getfixturevalue("redis_shards")
        strategy = kind.partition("-")[2] or "hash"
        # Order among several jobs holds within a shard, not across shards; and only
        # hash sends a repeated id to the shard holding its first copy.
        marker = request.node.get_closest_marker
        one = marker("ordered") or (marker("same_id") and strategy != "hash")
        return sharded_driver(urls[:1] if one else urls, strategy=strategy, clock=clock)
    return FACTORIES[kind](clock, tmp_path)


@pytest.fixture(params=sorted([*FACTORIES, CLUSTER, *SHARDED_KINDS]))
def driver(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> Iterator[Driver]:
    with open_driver(request, request.param, clock, tmp_path) as made:
        yield made


@pytest.fixture
def another_driver(
    request: pytest.FixtureRequest, driver: Driver, clock: FakeClock, tmp_path: Path
) -> Iterator[Driver]:
    """A second driver of the kind under test, with storage of its own (prefix, database)."""
    kind = request.node.callspec.params["driver"]
    (tmp_path / "another").mkdir()
    with open_driver(request, kind, clock, tmp_path / "another") as made:
        yield made


def same_storage(driver: Driver, clock: FakeClock) -> Driver:
    """Another driver on ``driver``'s storage, as another process would open it."""
    if isinstance(driver, ShardedDriver):
        shards = [
            RedisDriver(s.driver.client, prefix=driver.prefix, clock=clock) for s in driver.shards
        ]
        return ShardedDriver(shards, strategy=driver.strategy, prefix=driver.prefix, clock=clock)
    if isinstance(driver, RedisDriver):
        return RedisDriver(driver.client, prefix=driver.prefix, clock=clock)
    if isinstance(driver, DatabaseDriver):
        return DatabaseDriver(driver.engine, clock=clock)
    return driver  # the memory driver's storage is the driver itself


def envelope(clock: FakeClock, queue: str = "default", **fields: Any) -> Envelope:
    now = clock.time()
    base = Envelope(
        id=new_job_id(),
        type="tests.Contract",
        queue=queue,
        payload={"n": fields.pop("n", 0)},
        created_at=now,
        available_at=now,
    )
    return dataclasses.replace(base, **fields)


def reserve(driver: Driver, *queues: str, lease_s: float = LEASE_S) -> Reservation | None:
    return driver.reserve(queues or ("default",), lease_s=lease_s)


def drain_ids(driver: Driver, *queues: str) -> list[str]:
    ids = []
    while (res := reserve(driver, *queues)) is not None:
        ids.append(res.id)
        driver.ack(res)
    return ids


def test_pushed_job_is_reserved_with_its_envelope_and_gone_after_ack(driver, clock):
    env = envelope(clock, metadata={"trace": "t-1"})
    driver.push(env)
    res = reserve(driver)
    assert res is not None
    assert (res.id, res.queue, res.deliveries) == (env.id, "default", 1)
    assert decode(res.raw) == env
    assert driver.sizes(["default"])["default"] == QueueSizes(reserved=1)
    driver.ack(res)
    assert driver.sizes(["default"])["default"] == QueueSizes()
    assert reserve(driver) is None


def test_reserve_on_an_empty_queue_returns_none(driver):
    assert reserve(driver, "nothing-here") is None


@pytest.mark.ordered
def test_higher_priority_is_reserved_first(driver, clock):
    for priority in (0, 10, 5, -3):
        driver.push(envelope(clock, priority=priority, n=priority))
    order = []
    while (res := reserve(driver)) is not None:
        order.append(decode(res.raw).priority)
        driver.ack(res)
    assert order == [10, 5, 0, -3]


@pytest.mark.ordered
def test_jobs_of_equal_priority_are_reserved_in_push_order(driver, clock):
    pushed = [envelope(clock, n=i) for i in range(25)]
    for env in pushed:
        driver.push(env)
        clock.advance(0.001)
    assert drain_ids(driver) == [env.id for env in pushed]


def test_delayed_job_becomes_available_at_its_time(driver, clock):
    env = envelope(clock, available_at=clock.time() + 10)
    driver.push(env)
    assert driver.sizes(["default"])["default"] == QueueSizes(delayed=1)
    clock.advance(9.9)
    assert reserve(driver) is None
    clock.advance(0.2)
    res = reserve(driver)
    assert res is not None and res.id == env.id


@pytest.mark.ordered
def test_delayed_job_keeps_priority_once_due(driver, clock):
    late = envelope(clock, priority=9, available_at=clock.time() + 5)
    early = envelope(clock, priority=1)
    driver.push(late)
    driver.push(early)
    clock.advance(5)
    assert drain_ids(driver) == [late.id, early.id]


def test_release_with_delay_makes_the_job_wait_then_returns_new_envelope(driver, clock):
    driver.push(envelope(clock))
    res = reserve(driver)
    assert res is not None
    retried = dataclasses.replace(decode(res.raw), attempts=1, available_at=clock.time() + 5)
    driver.release(res, retried)
    assert driver.sizes(["default"])["default"] == QueueSizes(delayed=1)
    clock.advance(4.9)
    assert reserve(driver) is None
    clock.advance(0.1)
    again = reserve(driver)
    assert again is not None
    assert decode(again.raw).attempts == 1
    assert again.deliveries == 1, "a release records an outcome, so deliveries start over"


def test_release_without_delay_makes_the_job_ready_again(driver, clock):
    driver.push(envelope(clock))
    res = reserve(driver)
    assert res is not None
    driver.release(res, decode(res.raw))
    assert driver.sizes(["default"])["default"] == QueueSizes(ready=1)


def test_job_whose_lease_lapses_is_handed_out_again_with_its_delivery_counted(driver, clock):
    env = envelope(clock)
    driver.push(env)
    first = reserve(driver)
    assert first is not None
    clock.advance(LEASE_S - 1)
    assert reserve(driver) is None
    clock.advance(2)
    second = reserve(driver)
    assert second is not None
    assert (second.id, second.deliveries) == (env.id, 2)
    assert second.token != first.token


def test_ack_from_a_holder_whose_lease_lapsed_does_not_remove_the_new_holders_job(driver, clock):
    driver.push(envelope(clock))
    stale = reserve(driver)
    clock.advance(LEASE_S + 1)
    current = reserve(driver)
    assert stale is not None and current is not None
    driver.ack(stale)
    assert driver.sizes(["default"])["default"] == QueueSizes(reserved=1)
    driver.ack(current)
    assert driver.sizes(["default"])["default"] == QueueSizes()


def test_extending_a_lease_keeps_the_job_from_being_handed_out(driver, clock):
    driver.push(envelope(clock))
    res = reserve(driver)
    assert res is not None
    for _ in range(5):
        clock.advance(LEASE_S - 5)
        assert driver.extend(res, LEASE_S) is True
        assert reserve(driver) is None
    clock.advance(LEASE_S + 1)
    assert reserve(driver) is not None
    assert driver.extend(res, LEASE_S) is False, "the lease was lost to another holder"


def test_sizes_count_each_state_per_queue(driver, clock):
    driver.push(envelope(clock, "a"))
    driver.push(envelope(clock, "a"))
    driver.push(envelope(clock, "a", available_at=clock.time() + 60))
    driver.push(envelope(clock, "b"))
    assert reserve(driver, "a") is not None
    sizes = driver.sizes(["a", "b", "unused"])
    assert sizes == {
        "a": QueueSizes(ready=1, delayed=1, reserved=1),
        "b": QueueSizes(ready=1),
        "unused": QueueSizes(),
    }
    assert sizes["a"].total == 3


def test_clear_removes_every_state_of_one_queue_only(driver, clock):
    driver.push(envelope(clock, "a"))
    driver.push(envelope(clock, "a", available_at=clock.time() + 60))
    driver.push(envelope(clock, "a"))
    driver.push(envelope(clock, "b"))
    assert reserve(driver, "a") is not None
    assert driver.clear("a").count == 3
    assert driver.sizes(["a", "b"]) == {"a": QueueSizes(), "b": QueueSizes(ready=1)}
    assert reserve(driver, "a") is None


def test_clear_reports_the_unique_claims_of_the_jobs_it_removed(driver, clock):
    def claiming(n: int, queue: str = "a", **fields: Any) -> Envelope:
        metadata = {UNIQUE_KEY: f"unique:tests.Contract:{n}", UNIQUE_TOKEN: f"token-{n}"}
        return envelope(clock, queue, n=n, metadata=metadata, **fields)

    driver.push(claiming(1))
    driver.push(claiming(2, available_at=clock.time() + 60))
    driver.push(claiming(3))
    driver.push(envelope(clock, "a", metadata={"trace": "kashq.unique_key"}))
    driver.push(claiming(4, queue="b"))
    assert reserve(driver, "a") is not None

    cleared = driver.clear("a")

    assert cleared.count == 4
    assert sorted(cleared.claims) == [
        (f"unique:tests.Contract:{n}", f"token-{n}") for n in (1, 2, 3)
    ]
    assert driver.clear("a") == Cleared(0, ())


@pytest.mark.ordered
def test_bulk_push_stores_every_job_in_order(driver, clock):
    pushed = [envelope(clock, n=i) for i in range(500)]
    driver.push_many(pushed)
    assert driver.sizes(["default"])["default"] == QueueSizes(ready=500)
    assert drain_ids(driver) == [env.id for env in pushed]


def test_bulk_push_mixes_queues_and_delays(driver, clock):
    driver.push_many(
        [
            envelope(clock, "a"),
            envelope(clock, "b", available_at=clock.time() + 3),
            envelope(clock, "b"),
        ]
    )
    assert driver.sizes(["a", "b"]) == {
        "a": QueueSizes(ready=1),
        "b": QueueSizes(ready=1, delayed=1),
    }


@pytest.mark.ordered
def test_queues_are_tried_in_strict_order(driver, clock):
    low = envelope(clock, "low", priority=100)
    high = envelope(clock, "high")
    driver.push(low)
    driver.push(high)
    assert drain_ids(driver, "high", "low") == [high.id, low.id]


def test_waiting_reserve_returns_a_job_pushed_meanwhile(driver, clock):
    env = envelope(clock)
    pusher = threading.Timer(0.1, driver.push, args=(env,))
    pusher.start()
    try:
        res = driver.reserve(["default"], lease_s=LEASE_S, wait_s=10)
    finally:
        pusher.cancel()
    assert res is not None and res.id == env.id


@pytest.mark.same_id
def test_pushing_an_id_that_is_queued_replaces_the_job_instead_of_duplicating_it(driver, clock):
    first = envelope(clock, n=1)
    driver.push(first)
    driver.push(dataclasses.replace(first, payload={"n": 2}))
    driver.push_many([dataclasses.replace(first, payload={"n": 3})])
    assert driver.sizes(["default"])["default"] == QueueSizes(ready=1)
    res = reserve(driver)
    assert res is not None and decode(res.raw).payload == {"n": 3}
    driver.ack(res)
    assert reserve(driver) is None


@pytest.mark.same_id
def test_pushing_an_id_that_a_worker_holds_leaves_the_running_job_alone(driver, clock):
    first = envelope(clock, n=1)
    driver.push(first)
    held = reserve(driver)
    assert held is not None
    driver.push(dataclasses.replace(first, payload={"n": 2}))  # e.g. a repeated push
    assert reserve(driver) is None, "never handed to a second worker"
    assert driver.sizes(["default"])["default"] == QueueSizes(reserved=1)
    driver.ack(held)
    assert driver.sizes(["default"])["default"] == QueueSizes()


def test_one_bulk_push_holding_an_id_twice_stores_one_job_the_last_copy(driver, clock):
    first = envelope(clock, n=1)
    driver.push_many([first, envelope(clock, n=7), dataclasses.replace(first, payload={"n": 2})])
    assert driver.sizes(["default"])["default"] == QueueSizes(ready=2)
    got = []
    while (res := reserve(driver)) is not None:
        got.append(decode(res.raw).payload["n"])
        driver.ack(res)
    assert sorted(got) == [2, 7]


@pytest.mark.ordered
def test_reserve_acks_the_finished_job_it_is_given_first(driver, clock):
    first, second, third = (envelope(clock, n=i) for i in range(3))
    driver.push_many([first, second, third])
    held = reserve(driver)
    assert held is not None and held.id == first.id

    nxt = driver.reserve(["default"], lease_s=LEASE_S, ack=held)
    assert nxt is not None and nxt.id == second.id
    assert driver.sizes(["default"])["default"] == QueueSizes(ready=1, reserved=1)

    stale = dataclasses.replace(nxt, token="not-the-token")
    last = driver.reserve(["default"], lease_s=LEASE_S, ack=stale)
    assert last is not None and last.id == third.id
    assert driver.sizes(["default"])["default"] == QueueSizes(reserved=2), "a stale ack is a no-op"

    clock.advance(LEASE_S + 1)  # both leases lapse: the acked job must not come back
    again = driver.reserve(["default"], lease_s=LEASE_S, ack=last)
    assert again is not None and again.id == second.id
    assert driver.reserve(["default"], lease_s=LEASE_S, ack=again) is None
    assert driver.sizes(["default"])["default"] == QueueSizes()


# --------------------------------------------------------------------------- queue names


def test_queue_names_lists_exactly_the_queues_holding_ready_delayed_or_reserved_jobs(driver, clock):
    assert driver.queue_names() == []
    driver.push(envelope(clock, "ready"))
    driver.push(envelope(clock, "delayed", available_at=clock.time() + 60))
    driver.push(envelope(clock, "held"))
    assert reserve(driver, "held") is not None
    driver.sizes(["only-asked-about"])
    assert reserve(driver, "only-reserved-from") is None
    assert driver.queue_names() == ["delayed", "held", "ready"]


def test_a_cleared_or_drained_queue_leaves_the_queue_names(driver, clock):
    driver.push_many([envelope(clock, "a"), envelope(clock, "b"), envelope(clock, "c")])
    assert driver.clear("a").count == 1
    assert len(drain_ids(driver, "b")) == 1
    res = reserve(driver, "c")
    assert res is not None
    driver.release(res, dataclasses.replace(decode(res.raw), available_at=clock.time() + 5))
    assert driver.queue_names() == ["c"], "a released job keeps its queue listed"
    clock.advance(LEASE_S + 10)
    assert driver.queue_names() == ["c"]
    assert len(drain_ids(driver, "c")) == 1
    assert driver.queue_names() == []


def test_queue_names_holding_colons_are_listed_whole_and_control_records_never(driver, clock):
    driver.put_control("control", "x")
    assert driver.queue_names() == []
    names = ["emails:high", "a:b:c", "emails", "control"]
    driver.push_many([envelope(clock, name) for name in names])
    assert driver.queue_names() == sorted(names)
    assert driver.clear("control").count == 1
    assert driver.get_control() == {"control": "x"}


# --------------------------------------------------------------------------- control records


def test_control_record_is_set_overwritten_read_and_deleted(driver):
    assert driver.get_control() == {}
    driver.put_control("restart", "1700000000.5")
    assert driver.get_control() == {"restart": "1700000000.5"}
    driver.put_control("restart", "1700000001.25")
    assert driver.get_control("restart") == {"restart": "1700000001.25"}
    assert driver.delete_control("restart") is True
    assert driver.delete_control("restart") is False
    assert driver.get_control() == {}


def test_get_control_returns_the_records_whose_names_start_with_the_prefix(driver):
    records = {
        "supervisor:web-1:10": '{"jobs": 3}',
        "supervisor:web-2:11": "{}",
        "Supervisor:upper": "case counts",
        "supervisor_x": "underscore",
        "supervisor%y": "percent",
        "super": "shorter",
        "restart": "1",
    }
    for name, value in records.items():
        driver.put_control(name, value)
    assert driver.get_control("supervisor:") == {
        "supervisor:web-1:10": '{"jobs": 3}',
        "supervisor:web-2:11": "{}",
    }
    assert driver.get_control("supervisor_") == {"supervisor_x": "underscore"}
    assert driver.get_control("supervisor%") == {"supervisor%y": "percent"}
    assert driver.get_control("nothing") == {}
    assert driver.get_control() == records


def test_control_record_with_a_ttl_expires_and_one_without_stays(driver, clock):
    driver.put_control("supervisor:h:1", "{}", ttl_s=10)
    driver.put_control("restart", "t")
    clock.advance(9.9)
    assert driver.get_control() == {"supervisor:h:1": "{}", "restart": "t"}
    clock.advance(0.2)
    assert driver.get_control() == {"restart": "t"}
    driver.put_control("supervisor:h:2", "{}", ttl_s=1)
    clock.advance(2)
    assert driver.delete_control("supervisor:h:2") is False, "an expired record is gone"
    clock.advance(10**6)
    assert driver.get_control("restart") == {"restart": "t"}


def test_overwriting_a_control_record_resets_its_ttl(driver, clock):
    driver.put_control("stats", "1", ttl_s=10)
    clock.advance(8)
    driver.put_control("stats", "2", ttl_s=10)
    clock.advance(8)
    assert driver.get_control() == {"stats": "2"}
    driver.put_control("stats", "3")
    clock.advance(100)
    assert driver.get_control() == {"stats": "3"}


def test_control_values_and_names_keep_any_text(driver):
    value = json.dumps({"host": "wörker-✓", "queues": ["a", "b"], "rate": 1.5}) + "x" * 20_000
    driver.put_control("supervisor:hôst:1", value)
    driver.put_control("n" * 191, "")
    assert driver.get_control() == {"supervisor:hôst:1": value, "n" * 191: ""}
    for bad in ("", "n" * 192):
        with pytest.raises(ValueError, match="control record name"):
            driver.put_control(bad, "x")


def test_control_records_are_private_to_their_prefix_or_database(driver, another_driver, clock):
    driver.put_control("restart", "mine")
    another_driver.put_control("other", "theirs", ttl_s=5)
    assert driver.get_control() == {"restart": "mine"}
    assert another_driver.get_control() == {"other": "theirs"}
    assert another_driver.delete_control("restart") is False
    assert driver.get_control() == {"restart": "mine"}


def test_control_records_are_shared_by_drivers_on_the_same_storage(driver, clock):
    other = same_storage(driver, clock)
    driver.put_control("supervisor:h:1", "{}", ttl_s=10)
    assert other.get_control("supervisor:") == {"supervisor:h:1": "{}"}
    other.put_control("restart", "t")
    assert driver.get_control() == {"restart": "t", "supervisor:h:1": "{}"}
    clock.advance(11)
    assert other.get_control() == {"restart": "t"}
    assert driver.delete_control("restart") is True
    assert other.get_control() == {}
