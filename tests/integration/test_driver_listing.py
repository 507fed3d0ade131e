"""``Driver.list_jobs`` and ``Driver.oldest_ready``, and the tag index behind them.

Runs on the contract suite's ``driver`` fixture (every driver, Redis Cluster and
the sharded strategies included) with its fake clock, as ``test_driver_find``
does. What ``kashq.jobs()`` and ``queue:monitor`` rely on: each state listed in
its order, pages that never skip nor repeat a job that stays put, a tag index
that holds exactly the jobs still queued, and the oldest ready job read exactly.
"""

from __future__ import annotations

import base64
import dataclasses

import pytest
from sqlalchemy import select

from kashq.db.schema import job_tags
from kashq.drivers.base import Driver, FoundJob, ListedJob, Reservation
from kashq.drivers.database import DatabaseDriver
from kashq.drivers.memory import MemoryDriver
from kashq.drivers.redis import RedisDriver
from kashq.drivers.sharded import ShardedDriver
from kashq.envelope import decode
from kashq.exceptions import DriverError
from kashq.testing import FakeClock
from tests.integration import test_driver_contract as contract
from tests.integration.test_driver_contract import LEASE_S, drain_ids, envelope, reserve
from tests.support.redis import redis_driver, sharded_driver
from tests.support.services import free_port

# The contract suite's fixtures: every driver kind, each on the fake clock.
clock, driver = contract.clock, contract.driver


def walk(driver: Driver, state: str, *, limit: int, queue: str = "default", tag=None) -> list[str]:
    """The ids of every page of a listing, in order."""
    ids: list[str] = []
    cursor = None
    while True:
        page = driver.list_jobs(queue, state, limit=limit, cursor=cursor, tag=tag)  # type: ignore[arg-type]
        assert len(page.jobs) <= limit
        ids += [job.id for job in page.jobs]
        if page.cursor is None:
            return ids
        cursor = page.cursor


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def tag_index(driver: Driver, queue: str) -> set[tuple[str, str]]:
    """Every (tag, job id) entry of ``queue``'s tag index, read from the storage itself."""
    if isinstance(driver, ShardedDriver):
        return set().union(*(tag_index(shard.driver, queue) for shard in driver.shards))
    if isinstance(driver, RedisDriver):
        keys, client = driver.keys(queue), driver.client
        stored = {text(key) for key in client.scan_iter(match=f"{keys.tags}*")} - {keys.tags}
        assert {text(key) for key in client.smembers(keys.tags)} == stored, "clear finds them"
        start = len(keys.tags) + 1
        return {(key[start:], text(m)) for key in stored for m in client.zrange(key, 0, -1)}
    if isinstance(driver, DatabaseDriver):
        with driver.engine.connect() as conn:
            rows = conn.execute(
                select(job_tags.c.tag, job_tags.c.job_id).where(job_tags.c.queue == queue)
            )
            return {(tag, job_id) for tag, job_id in rows}
    assert isinstance(driver, MemoryDriver)
    indexes = driver._queues[queue].tags if queue in driver._queues else {}
    return {(tag, key[1]) for tag, index in indexes.items() for key in index}


def take(driver: Driver, lease_s: float = LEASE_S) -> Reservation:
    res = reserve(driver, lease_s=lease_s)
    assert res is not None
    return res


@pytest.mark.ordered
def test_ready_jobs_are_listed_in_the_order_workers_take_them(driver, clock):
    now = clock.time()
    due = envelope(clock, available_at=now + 5)  # pushed first: its place once it is due
    driver.push(due)
    low = [envelope(clock, n=i) for i in range(3)]
    high = [envelope(clock, priority=5, n=i) for i in range(2)]
    driver.push_many([low[0], high[0], low[1], high[1], low[2]])
    driver.push(envelope(clock, available_at=now + 60))
    clock.advance(10)
    listed = walk(driver, "ready", limit=2)
    assert listed == [high[0].id, high[1].id, due.id, low[0].id, low[1].id, low[2].id]
    first = driver.list_jobs("default", "ready", limit=1)
    assert first.jobs == [ListedJob(high[0].id, FoundJob("default", "ready", high[0].encode(), 0))]
    assert drain_ids(driver) == listed


@pytest.mark.ordered
def test_delayed_jobs_come_soonest_first_and_reserved_ones_by_lease_deadline(driver, clock):
    now = clock.time()
    later, soon, soonest = (envelope(clock, available_at=now + s) for s in (300, 60, 30))
    driver.push_many([later, soon, soonest])
    assert walk(driver, "delayed", limit=1) == [soonest.id, soon.id, later.id]
    driver.push_many([envelope(clock, n=i) for i in range(3)])
    held = [take(driver, lease_s) for lease_s in (90, 30, 60)]
    assert walk(driver, "reserved", limit=2) == [held[i].id for i in (1, 2, 0)]
    assert driver.extend(held[1], 120)  # a renewed lease moves the job to its new deadline
    clock.advance(61)  # held[2]'s lease lapsed: still reserved until a reserve reclaims it
    assert walk(driver, "reserved", limit=2) == [held[i].id for i in (2, 0, 1)]
    lapsed = driver.list_jobs("default", "reserved", limit=1).jobs[0]
    assert lapsed.job == FoundJob("default", "reserved", held[2].raw, 1, now + 60)
    assert walk(driver, "delayed", limit=5) == [later.id]  # the others fell due
    assert walk(driver, "ready", limit=5) == [soon.id, soonest.id]  # by push order


def test_walking_every_page_lists_each_job_of_a_state_once(driver, clock):
    now = clock.time()
    held = [envelope(clock, priority=9, tags=("t",)) for _ in range(3)]
    driver.push_many(held)
    assert {take(driver).id for _ in held} == {env.id for env in held}
    ready = [envelope(clock, priority=i % 3, tags=("t",) * (i % 2)) for i in range(7)]
    delayed = [envelope(clock, available_at=now + 100 + i % 2, tags=("t",)) for i in range(5)]
    driver.push_many([*ready, *delayed])
    for state, jobs in (("ready", ready), ("delayed", delayed), ("reserved", held)):
        for limit in (1, 2, 1000):
            listed = walk(driver, state, limit=limit)
            assert sorted(listed) == sorted(env.id for env in jobs), (state, limit)
        tagged = walk(driver, state, limit=2, tag="t")
        assert sorted(tagged) == sorted(env.id for env in jobs if env.tags), state


def test_paging_is_stable_while_other_jobs_come_and_go(driver, clock):
    now = clock.time()
    pushed = [envelope(clock, n=i) for i in range(9)]
    driver.push_many(pushed)
    first = driver.list_jobs("default", "ready", limit=3)
    listed = [job.id for job in first.jobs]
    leaving = next(env.id for env in pushed if env.id not in listed)
    driver.push_many([envelope(clock, priority=7), envelope(clock, priority=-1)])
    assert driver.remove(listed[-1]) is not None  # the cursor's own job leaves
    assert driver.remove(leaving) is not None  # and one not listed yet
    listed += walk_on(driver, "ready", first.cursor)
    assert leaving not in listed and len(listed) == len(set(listed))
    assert {env.id for env in pushed} - {leaving} <= set(listed)

    waiting = [envelope(clock, available_at=now + 50 + i // 2) for i in range(6)]  # ties
    driver.push_many(waiting)
    first = driver.list_jobs("default", "delayed", limit=2)
    listed = [job.id for job in first.jobs]
    driver.push_many(
        [envelope(clock, available_at=now + 40), envelope(clock, available_at=now + 99)]
    )
    driver.remove(listed[-1])
    listed += walk_on(driver, "delayed", first.cursor)
    assert len(listed) == len(set(listed)) and {env.id for env in waiting} <= set(listed)

    driver.clear("default")
    driver.push_many([envelope(clock, n=i) for i in range(7)])
    held = {}
    for _ in range(5):
        res = take(driver)
        held[res.id] = res
        clock.advance(1)  # each lease ends a second after the one before
    first = driver.list_jobs("default", "reserved", limit=2)
    listed = [job.id for job in first.jobs]
    leaving = next(job_id for job_id in held if job_id not in listed)
    driver.ack(held[listed[-1]])  # the cursor's own job leaves
    driver.ack(held[leaving])  # and one not listed yet
    take(driver)  # a newer one, which may or may not be listed
    listed += walk_on(driver, "reserved", first.cursor)
    assert len(listed) == len(set(listed)) and leaving not in listed
    assert set(held) - {leaving} <= set(listed)


def walk_on(driver: Driver, state: str, cursor: str | None, limit: int = 3) -> list[str]:
    ids: list[str] = []
    while cursor is not None:
        page = driver.list_jobs("default", state, limit=limit, cursor=cursor)  # type: ignore[arg-type]
        ids += [job.id for job in page.jobs]
        cursor = page.cursor
    return ids


@pytest.mark.ordered
def test_a_tag_lists_only_its_jobs_in_the_order_they_were_pushed(driver, clock):
    held = envelope(clock, tags=("a",))
    driver.push(held)
    running = take(driver)
    one, both, other = (envelope(clock, tags=t) for t in (("a", "a"), ("b", "a"), ("b",)))
    later = envelope(clock, tags=("a",), available_at=clock.time() + 60)
    driver.push_many([one, envelope(clock), later, both, other])
    assert walk(driver, "ready", limit=1, tag="a") == [one.id, both.id]
    assert walk(driver, "ready", limit=5, tag="a") == [one.id, both.id]  # its tag once
    assert walk(driver, "ready", limit=5, tag="b") == [both.id, other.id]
    assert walk(driver, "delayed", limit=5, tag="a") == [later.id]
    page = driver.list_jobs("default", "reserved", tag="a")
    assert page.jobs == [ListedJob(held.id, driver.find(held.id))] and page.cursor is None
    assert walk(driver, "ready", limit=5, tag="nobody") == []
    assert tag_index(driver, "default") == {
        ("a", held.id), ("a", one.id), ("a", both.id), ("b", both.id), ("b", other.id),
        ("a", later.id),
    }  # fmt: skip
    driver.ack(running)
    assert ("a", held.id) not in tag_index(driver, "default")


@pytest.mark.ordered
def test_a_job_leaves_its_tags_index_with_the_queue_and_moves_with_a_release(driver, clock):
    acked = envelope(clock, "emails", tags=("user:1", "video:7"))
    lookalike = envelope(clock, "emails", payload={"tags": ["user:1"]})  # no tags of its own
    driver.push_many([acked, lookalike])
    first = take_from(driver)
    second = driver.reserve(["emails"], lease_s=LEASE_S, ack=first)  # the ack rides along
    assert second is not None
    driver.ack(second)
    assert tag_index(driver, "emails") == set()

    released = envelope(clock, "emails", tags=("user:1", "video:8"))
    driver.push(released)
    res = take_from(driver)
    back = dataclasses.replace(decode(res.raw), attempts=1, available_at=clock.time() + 30)
    driver.release(res, back)
    assert walk(driver, "delayed", limit=5, queue="emails", tag="user:1") == [released.id]
    assert walk(driver, "reserved", limit=5, queue="emails", tag="user:1") == []
    removed, kept = (envelope(clock, "emails", tags=("user:1",)) for _ in range(2))
    driver.push_many([removed, kept])
    assert driver.remove(removed.id) is not None
    clock.advance(31)
    res = take_from(driver)
    assert res.id == released.id
    driver.release(res, dataclasses.replace(decode(res.raw), tags=("user:1", "retried")))
    assert tag_index(driver, "emails") == {
        ("user:1", released.id),
        ("retried", released.id),
        ("user:1", kept.id),
    }
    assert walk(driver, "ready", limit=1, queue="emails", tag="user:1") == [kept.id, released.id]
    assert driver.clear("emails").count == 2
    assert tag_index(driver, "emails") == set()
    assert walk(driver, "ready", limit=5, queue="emails", tag="user:1") == []


def take_from(driver: Driver) -> Reservation:
    res = reserve(driver, "emails")
    assert res is not None
    return res


def test_a_bad_state_limit_tag_or_cursor_is_a_one_line_value_error(driver, clock):
    driver.push_many([envelope(clock) for _ in range(3)])
    ready = driver.list_jobs("default", "ready", limit=1).cursor
    assert ready is not None
    forged = base64.urlsafe_b64encode(b'["ready",1]').decode()
    cursors = ["", "%%%", "bm90IGpzb24", forged, ready[:-3], ready + "AAAA"]
    for cursor in cursors:
        with pytest.raises(ValueError, match="cursor") as caught:
            driver.list_jobs("default", "ready", cursor=cursor)
        assert "\n" not in str(caught.value)
    for state, kwargs in (("delayed", {}), ("ready", {"tag": "a"})):  # another listing's cursor
        with pytest.raises(ValueError, match="cursor"):
            driver.list_jobs("default", state, cursor=ready, **kwargs)
    for limit in (0, 1001, True, "5", 2.0):
        with pytest.raises(ValueError, match="limit"):
            driver.list_jobs("default", "ready", limit=limit)
    with pytest.raises(ValueError, match="state"):
        driver.list_jobs("default", "running")
    with pytest.raises(ValueError, match="tag"):
        driver.list_jobs("default", "ready", tag=" padded ")


@pytest.mark.ordered
def test_oldest_ready_is_the_time_of_the_job_that_waited_longest(driver, clock):
    start = clock.time()
    assert driver.oldest_ready(["default", "empty"]) == {"default": None, "empty": None}
    driver.push(envelope(clock))
    clock.advance(5)
    driver.push_many(
        [envelope(clock, priority=9), envelope(clock), envelope(clock, available_at=start + 8)]
    )
    driver.push(envelope(clock, "later", available_at=start + 100))
    assert driver.oldest_ready(["default", "later"]) == {"default": start, "later": None}
    clock.advance(5)  # the delayed job is due (at start + 8): still not the oldest
    assert driver.oldest_ready(["default"]) == {"default": start}
    driver.ack(take(driver))  # the priority 9 job
    driver.ack(take(driver))  # the first one
    assert driver.oldest_ready(["default"]) == {"default": start + 5}
    driver.ack(take(driver))
    assert driver.oldest_ready(["default"]) == {"default": start + 8}
    take(driver)
    assert driver.oldest_ready(["default"]) == {"default": None}, (
        "a reserved job is no longer waiting"
    )
    clock.advance(LEASE_S + 1)
    assert driver.oldest_ready(["default"]) == {"default": None}, "nor is one whose lease lapsed"
    clock.advance(100)  # due, and no reserve has moved it
    assert driver.oldest_ready(["later"]) == {"later": start + 100}


def test_many_due_delayed_jobs_and_tagged_jobs_of_other_states_page_through(driver, clock):
    bulk = [envelope(clock, available_at=clock.time() + 1, tags=("bulk",)) for _ in range(1003)]
    last = envelope(clock, tags=("bulk",))
    driver.push_many([*bulk, envelope(clock), last])
    assert walk(driver, "ready", limit=1000, tag="bulk") == [last.id]  # walks past 1003
    clock.advance(2)
    assert len(set(walk(driver, "ready", limit=1000))) == 1005
    assert len(set(walk(driver, "ready", limit=1000, tag="bulk"))) == 1004
    assert driver.sizes(["default"])["default"].ready == 1005


def test_sharded_listings_go_shard_by_shard_and_name_a_shard_that_is_down(
    redis_shards: list[str],
) -> None:
    clock = FakeClock()
    with sharded_driver(redis_shards[:2], strategy="round_robin", clock=clock) as sharded:
        older, newer = envelope(clock, available_at=clock.time() - 5), envelope(clock)
        sharded.shards[0].driver.push(older)
        sharded.shards[1].driver.push(newer)
        assert walk(sharded, "ready", limit=1) == [older.id, newer.id]
        assert sharded.oldest_ready(["default"]) == {"default": clock.time() - 5}
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with sharded_driver([redis_shards[0], down], strategy="round_robin", clock=clock) as sharded:
        sharded.shards[0].driver.push(env := envelope(clock))
        page = sharded.list_jobs("default", "ready", limit=1)
        assert [job.id for job in page.jobs] == [env.id] and page.cursor is not None
        with pytest.raises(DriverError, match=sharded.shards[1].name):
            sharded.list_jobs("default", "ready", limit=1, cursor=page.cursor)
        with pytest.raises(DriverError, match=sharded.shards[1].name):
            sharded.oldest_ready(["default"])


def test_redis_clear_reads_the_tag_indexes_again_when_one_appeared_meanwhile(monkeypatch):
    clock = FakeClock()
    with redis_driver(clock=clock) as driver:
        driver.push(envelope(clock, tags=("a",)))
        real, calls = driver.client.smembers, []

        def stale_first(key: str) -> set[bytes]:  # as if the job was pushed after the read
            calls.append(key)
            return set() if len(calls) == 1 else real(key)

        monkeypatch.setattr(driver.client, "smembers", stale_first)
        assert driver.clear("default").count == 1
        assert len(calls) == 2 and tag_index(driver, "default") == set()
