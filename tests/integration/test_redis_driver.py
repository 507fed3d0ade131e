"""Redis-specific behaviour beyond the driver contract."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from kashq import Job, Outcome, Worker, WorkerOptions
from kashq.drivers.redis import RedisDriver
from kashq.envelope import Envelope
from kashq.exceptions import DriverError
from kashq.failed.memory import MemoryFailedJobStore
from tests.support.redis import redis_driver
from tests.support.services import REDIS_URL, RedisServer

DONE: list[int] = []


class Noted(Job):
    n: int

    def handle(self) -> None:
        DONE.append(self.n)


@pytest.fixture
def driver() -> Iterator[RedisDriver]:
    DONE.clear()
    with redis_driver() as made:
        yield made


def push(driver: RedisDriver, job: Job, queue: str = "default") -> Envelope:
    env = job.to_envelope(default_queue=queue, now=time.time())
    driver.push(env)
    return env


def test_every_key_of_a_queue_shares_its_hash_tag(driver):
    push(driver, Noted(n=1), "emails")
    push(driver, Noted(n=2).delay(60), "emails")
    res = driver.reserve(["emails"], lease_s=30)
    assert res is not None
    keys = [k.decode() for k in driver.client.scan_iter(match=f"{driver.prefix}:*")]
    assert keys, "the queue wrote keys"
    assert all(k.startswith(f"{driver.prefix}:{{emails}}:") for k in keys), keys


def test_garbage_written_straight_into_redis_is_failed_and_the_worker_goes_on(driver):
    keys = driver.keys("default")
    good = push(driver, Noted(n=1))
    valid = Noted(n=2).to_envelope(default_queue="default", now=time.time())
    unknown = dataclasses.replace(valid, type="nowhere.Nothing")  # valid envelope, unknown type
    driver.push(unknown)
    # Raw bytes that are not an envelope at all, placed the way push would place them.
    driver.client.hset(keys.jobs, "garbage-1", b"\xff\xfenot json")
    driver.client.hset(keys.state, "garbage-1", "0|999999|0|")
    driver.client.zadd(keys.ready, {"000000000999999|garbage-1": 0})

    store = MemoryFailedJobStore()
    worker = Worker(driver, store, WorkerOptions(connection="redis"))
    outcomes = [worker.run_next() for _ in range(3)]
    assert outcomes == [Outcome.COMPLETED, Outcome.FAILED, Outcome.FAILED]
    assert DONE == [1]
    errors = {f.uuid: f.error for f in store.all()}
    assert "unknown job type 'nowhere.Nothing'" in errors[unknown.id]
    assert "not valid JSON" in errors["garbage-1"]
    assert good.id not in errors
    assert driver.sizes(["default"])["default"].total == 0


def test_idle_reserve_on_several_queues_wakes_for_a_push_to_any_of_them(driver):
    env = Noted(n=1).to_envelope(default_queue="second", now=time.time())
    timer = threading.Timer(0.2, driver.push, args=(env,))
    timer.start()
    started = time.monotonic()
    res = driver.reserve(["first", "second"], lease_s=30, wait_s=10)
    assert res is not None and res.id == env.id
    assert time.monotonic() - started < 5, "woken by the push, not by the timeout"


def test_a_wait_longer_than_the_reply_timeout_is_no_error(driver):
    """An idle reserve blocks in slices shorter than the reply timeout (here 1 s)."""
    waiting = RedisDriver(f"{REDIS_URL}?socket_timeout=1", prefix=driver.prefix)
    try:
        started = time.monotonic()
        assert waiting.reserve(["default"], lease_s=30, wait_s=2.5) is None
        assert time.monotonic() - started >= 2.4
        env = Noted(n=1).to_envelope(default_queue="default", now=time.time())
        timer = threading.Timer(1.5, driver.push, args=(env,))
        timer.start()
        found = waiting.reserve(["default"], lease_s=30, wait_s=5)
        assert found is not None and found.id == env.id, "a push still wakes a sliced wait"
    finally:
        waiting.close()


def test_redis_errors_become_driver_errors(tmp_path: Path):
    server = RedisServer(tmp_path).start()
    driver = RedisDriver(server.url, prefix="k")
    server.kill()
    with pytest.raises(DriverError, match="redis"):
        driver.push(Noted(n=1).to_envelope(default_queue="default", now=time.time()))
    driver.close()


def test_worker_reconnects_after_its_connections_are_killed(tmp_path: Path):
    DONE.clear()
    server = RedisServer(tmp_path).start()
    try:
        driver = RedisDriver(server.url, prefix="k")
        worker = Worker(driver, MemoryFailedJobStore(), WorkerOptions(sleep_s=0.2)).start(1)
        push(driver, Noted(n=1))
        _wait_for(lambda: DONE == [1])
        admin = redis.Redis.from_url(server.url)
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
        push(driver, Noted(n=2))
        _wait_for(lambda: DONE == [1, 2])
        worker.stop()
    finally:
        server.stop()


def test_worker_keeps_going_through_a_redis_restart(tmp_path: Path):
    DONE.clear()
    server = RedisServer(tmp_path, appendonly=True).start()
    try:
        driver = RedisDriver(server.url, prefix="k")
        worker = Worker(driver, MemoryFailedJobStore(), WorkerOptions(sleep_s=0.2)).start(1)
        server.restart()
        push(driver, Noted(n=3))
        _wait_for(lambda: DONE == [3])
        worker.stop()
    finally:
        server.stop()


def _wait_for(condition, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_connects_over_a_unix_socket(tmp_path: Path):
    socket_path = tmp_path / "redis.sock"
    server = RedisServer(tmp_path, extra_args=("--unixsocket", str(socket_path))).start()
    try:
        driver = RedisDriver(f"unix://{socket_path}?db=2", prefix="k")
        env = push(driver, Noted(n=1))
        res = driver.reserve(["default"], lease_s=30)
        assert res is not None and res.id == env.id
        driver.close()
    finally:
        server.stop()


def test_connects_with_a_password_and_refuses_without_it(tmp_path: Path):
    server = RedisServer(tmp_path, extra_args=("--requirepass", "s3cret")).start()
    try:
        driver = RedisDriver(f"redis://:s3cret@127.0.0.1:{server.port}/3", prefix="k")
        push(driver, Noted(n=1))
        assert driver.sizes(["default"])["default"].ready == 1
        driver.close()
        anonymous = RedisDriver(server.url, prefix="k")
        with pytest.raises(DriverError) as info:
            anonymous.sizes(["default"])
        assert "s3cret" not in str(info.value)
        anonymous.close()
    finally:
        server.stop()


def test_scripts_are_reloaded_after_redis_loses_its_script_cache(driver):
    push(driver, Noted(n=1))
    driver.client.script_flush()
    push(driver, Noted(n=2))
    assert driver.sizes(["default"])["default"].ready == 2


def test_bulk_push_across_chunks_and_queues_keeps_each_queues_order(driver):
    now = time.time()
    envelopes = [
        Noted(n=i).to_envelope(default_queue="a" if i % 3 else "b", now=now) for i in range(2500)
    ]
    driver.push_many(envelopes)
    for queue in ("a", "b"):
        expected = [e.id for e in envelopes if e.queue == queue]
        got = []
        while (res := driver.reserve([queue], lease_s=30)) is not None:
            got.append(res.id)
            driver.ack(res)
        assert got == expected


def test_bulk_push_after_the_script_cache_was_lost_stores_every_job_once(driver):
    driver.client.script_flush()
    now = time.time()
    driver.push_many([Noted(n=i).to_envelope(default_queue="a", now=now) for i in range(1500)])
    assert driver.sizes(["a"])["a"].ready == 1500


def test_a_repeated_reserve_with_the_same_token_returns_the_same_job(driver):
    """A reserve whose reply was lost is sent again with its token: no second job is taken."""
    push(driver, Noted(n=1))
    push(driver, Noted(n=2))
    push(driver, Noted(n=3))
    first = driver._reserve_one("default", 30, "retry-token", (), 2)
    again = driver._reserve_one("default", 30, "retry-token", (), 2)
    assert first[0] == again[0]
    assert len(first) == 8, "a batch of two"
    assert len(again) == 4, "the repeat returns the first job; the prefetched one waits"
    assert int(again[2]) == 1, "the repeat is not another delivery"
    assert driver.sizes(["default"])["default"].ready == 1
