"""The sharded connection on real redis-servers: placement, fair consumption, a shard down.

Most tests use the session's three private servers; those that kill a shard
start three of their own.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from kashq import Job, QueueManager, Settings
from kashq.drivers.base import Reservation
from kashq.drivers.sharded import ShardedDriver
from kashq.drivers.sharded.ring import HashRing
from kashq.envelope import Envelope, new_job_id
from kashq.exceptions import DriverError
from kashq.failed.memory import MemoryFailedJobStore
from kashq.worker import Worker, WorkerOptions
from tests.support.redis import delete_prefix, sharded_driver
from tests.support.services import RedisServer

DONE: list[str] = []
DONE_LOCK = threading.Lock()


class Note(Job):
    n: int
    tries = 1

    def handle(self) -> None:
        with DONE_LOCK:
            DONE.append(self.envelope.id)


def make_envelope(queue: str = "default", job_id: str | None = None) -> Envelope:
    now = time.time()
    return Envelope(
        id=job_id or new_job_id(), type="tests.Sharded", queue=queue, payload={},
        created_at=now, available_at=now,
    )  # fmt: skip


def per_shard(driver: ShardedDriver, queue: str = "default") -> list[int]:
    counts = []
    for sizes in driver.shard_sizes([queue]):
        assert sizes is not None
        counts.append(sizes[queue].ready)
    return counts


@pytest.fixture
def own_shards(tmp_path: Path) -> Iterator[list[RedisServer]]:
    """Three private servers this test may kill (append-only, so a restart keeps jobs)."""
    servers = [RedisServer(tmp_path, appendonly=True) for _ in range(3)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


# --------------------------------------------------------------------------- placement


def test_hash_sends_an_id_to_its_ring_owner_from_every_process(redis_shards: list[str]) -> None:
    with sharded_driver(redis_shards, strategy="hash") as first:
        second = ShardedDriver(redis_shards, strategy="hash", prefix=first.prefix)
        ids = [new_job_id() for _ in range(60)]
        first.push_many([make_envelope(job_id=i) for i in ids[:30]])
        for job_id in ids[30:]:
            second.push(make_envelope(job_id=job_id))
        second.close()

        ring = HashRing([shard.name for shard in first.shards])
        expected = Counter(ring.index(i) for i in ids)
        assert per_shard(first) == [expected[0], expected[1], expected[2]]


def test_round_robin_spreads_jobs_evenly(redis_shards: list[str]) -> None:
    with sharded_driver(redis_shards, strategy="round_robin") as driver:
        driver.push_many([make_envelope() for _ in range(150)])
        for _ in range(150):
            driver.push(make_envelope())

        assert per_shard(driver) == [100, 100, 100]


def test_least_loaded_fills_the_emptier_shards_first(redis_shards: list[str]) -> None:
    with sharded_driver(redis_shards, strategy="least_loaded") as driver:
        driver.shards[0].driver.push_many([make_envelope() for _ in range(50)])

        for _ in range(60):
            driver.push(make_envelope())

        assert per_shard(driver) == [50, 30, 30]


def test_sizes_queue_names_and_clear_cover_every_shard(redis_shards: list[str]) -> None:
    with sharded_driver(redis_shards, strategy="round_robin") as driver:
        driver.push_many([make_envelope("a") for _ in range(6)] + [make_envelope("b")])

        assert driver.sizes(["a", "b"])["a"].ready == 6
        assert driver.queue_names() == ["a", "b"]
        assert driver.clear("a").count == 6
        assert driver.queue_names() == ["b"]


# --------------------------------------------------------------------------- consuming


def test_a_worker_takes_jobs_from_every_shard_in_turn(redis_shards: list[str]) -> None:
    with sharded_driver(redis_shards, strategy="hash") as driver:
        for shard in driver.shards:  # 90 jobs waiting on each shard
            shard.driver.push_many([make_envelope() for _ in range(90)])
        taken: list[int] = []
        done: Reservation | None = None
        for _ in range(90):  # as the worker does: each ack rides on the next reserve
            done = driver.reserve(["default"], lease_s=30, ack=done)
            assert done is not None
            taken.append(int(done.token.split(":")[0]))

        counts = Counter(taken)
        assert all(20 <= counts[i] <= 40 for i in range(3)), counts
        driver.ack(done)
        assert driver.sizes(["default"])["default"].total == 270 - 90


def test_an_idle_reserve_wakes_for_a_job_pushed_to_any_shard(redis_shards: list[str]) -> None:
    with sharded_driver(redis_shards, strategy="round_robin") as driver:
        pushed = make_envelope()
        timer = threading.Timer(0.3, lambda: driver.shards[2].driver.push(pushed))
        timer.start()
        started = time.monotonic()
        got = driver.reserve(["default"], lease_s=30, wait_s=10)
        timer.join()

        assert got is not None and got.id == pushed.id
        assert time.monotonic() - started < 5
        assert driver.extend(got, 30) is True
        driver.ack(got)
        assert driver.sizes(["default"])["default"].total == 0


def test_worker_and_manager_run_jobs_on_a_sharded_connection(redis_shards: list[str]) -> None:
    prefix = f"kashq-test-shm-{new_job_id()[:8]}"
    settings = Settings(
        connection="sharded", shards=redis_shards, shard_strategy="round_robin",
        prefix=prefix, events=False,
    )  # fmt: skip
    store = MemoryFailedJobStore()
    manager = QueueManager(settings, failed_store=store)
    try:
        ids = manager.dispatch_many([Note(n=i) for i in range(30)])
        worker = manager.worker(queues=("default",), stop_when_empty=True, sleep_s=0.05)
        worker.run(2)

        assert set(ids) <= set(DONE)
        assert manager.connection().sizes(["default"])["default"].total == 0
    finally:
        manager.close()
        for url in redis_shards:
            delete_prefix(redis.Redis.from_url(url), prefix)


# --------------------------------------------------------------------------- a shard down


@pytest.mark.parametrize("strategy", ["round_robin", "least_loaded"])
def test_a_down_shard_is_skipped_for_new_jobs_and_used_again_once_back(
    own_shards: list[RedisServer], strategy: str
) -> None:
    driver = ShardedDriver(
        [s.url for s in own_shards], strategy=strategy, prefix="kq", retry_down_s=0.2
    )
    try:
        own_shards[1].kill()
        for _ in range(30):
            driver.push(make_envelope())
        driver.push_many([make_envelope() for _ in range(30)])
        counts = driver.shard_sizes(["default"])
        assert counts[1] is None
        assert sum(c["default"].ready for c in counts if c is not None) == 60

        own_shards[1].start()
        time.sleep(0.7)  # past retry_down_s and the least-loaded counts' cache
        for _ in range(30):
            driver.push(make_envelope())
        assert per_shard(driver)[1] > 0
        assert driver.sizes(["default"])["default"].ready == 90
    finally:
        driver.close()


def test_hash_names_the_down_shard_and_still_stores_ids_owned_by_the_others(
    own_shards: list[RedisServer],
) -> None:
    driver = ShardedDriver([s.url for s in own_shards], strategy="hash", prefix="kq")
    try:
        own_shards[2].kill()
        ring = HashRing([shard.name for shard in driver.shards])
        ids = [new_job_id() for _ in range(40)]
        lost = [i for i in ids if ring.index(i) == 2]
        kept = [i for i in ids if ring.index(i) != 2]

        driver.push_many([make_envelope(job_id=i) for i in kept])
        with pytest.raises(DriverError, match=driver.shards[2].name) as raised:
            driver.push(make_envelope(job_id=lost[0]))
        assert "hash sharding" in str(raised.value)
        assert driver.shards[2].name in str(raised.value)
        counts = driver.shard_sizes(["default"])
        assert sum(c["default"].ready for c in counts if c is not None) == len(kept)
    finally:
        driver.close()


def test_workers_keep_consuming_from_healthy_shards_and_return_to_one_that_is_back(
    own_shards: list[RedisServer],
) -> None:
    driver = ShardedDriver(
        [s.url for s in own_shards], strategy="round_robin", prefix="kq", retry_down_s=0.2
    )
    DONE.clear()
    jobs = [Note(n=i).to_envelope(default_queue="default", now=time.time()) for i in range(30)]
    driver.push_many(jobs)
    second = driver.shards[1].driver
    on_down = {key.decode() for key in second.client.hkeys(second.keys("default").jobs)}
    assert len(on_down) == 10
    own_shards[1].kill()
    options = WorkerOptions(connection="sharded", sleep_s=0.1)
    worker = Worker(driver, MemoryFailedJobStore(), options).start(2)
    try:
        _wait(lambda: len(DONE) >= 20, "the jobs of the healthy shards")
        assert not set(DONE) & on_down
        own_shards[1].start()  # append-only: its jobs are still there
        _wait(lambda: len(DONE) >= 30, "the jobs of the shard that came back")
        assert sorted(DONE) == sorted(e.id for e in jobs)
    finally:
        worker.stop(10)
        driver.close()


def _wait(done: object, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_an_ack_for_a_down_shard_is_kept_and_sent_once_it_is_back(
    own_shards: list[RedisServer],
) -> None:
    driver = ShardedDriver(
        [s.url for s in own_shards], strategy="round_robin", prefix="kq", retry_down_s=0.1
    )
    try:
        driver.push_many([make_envelope() for _ in range(3)])
        held = [driver.reserve(["default"], lease_s=30) for _ in range(3)]
        on_first = next(r for r in held if r is not None and r.token.startswith("1:"))
        own_shards[1].kill()

        driver.ack(on_first)  # no error: kept for later

        own_shards[1].start()  # append-only: the job is still reserved there
        time.sleep(0.3)
        driver.reserve(["default"], lease_s=30)  # sends the kept ack first
        second = driver.shards[1].driver
        assert second.client.hlen(second.keys("default").jobs) == 0
    finally:
        driver.close()


def test_a_hung_shard_does_not_stop_workers_taking_jobs_from_the_others(
    own_shards: list[RedisServer],
) -> None:
    import signal

    driver = ShardedDriver(
        [s.url for s in own_shards], strategy="round_robin", prefix="kq", retry_down_s=0.2,
        reply_timeout_s=1.5,
    )  # fmt: skip
    DONE.clear()
    jobs = [Note(n=i).to_envelope(default_queue="default", now=time.time()) for i in range(60)]
    driver.push_many(jobs)
    hung = own_shards[1].process
    assert hung is not None
    hung.send_signal(signal.SIGSTOP)  # accepts connections, never answers
    worker = Worker(driver, MemoryFailedJobStore(), WorkerOptions(sleep_s=0.1)).start(2)
    try:
        _wait(lambda: len(DONE) >= 40, "the jobs of the two answering shards", timeout_s=60)
    finally:
        hung.send_signal(signal.SIGCONT)
        worker.stop(15)
        driver.close()
