"""The Redis driver's cheaper paths: batched scripts, packed commands, the short push."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from kashq import Job
from kashq.drivers.base import QueueSizes
from kashq.drivers.redis import RedisDriver
from kashq.drivers.redis import connection as connection_module
from kashq.envelope import Envelope
from tests.support.redis import redis_driver

# More than one ack chunk of the scripts (1,000) and more than Lua can unpack at
# once (about 8,000): a script that unpacked the whole list would fail.
MANY = 9_000


class Step(Job):
    n: int

    def handle(self) -> None:
        return None


@pytest.fixture
def driver() -> Iterator[RedisDriver]:
    with redis_driver() as made:
        yield made


def envelopes(count: int, queue: str = "default") -> list[Envelope]:
    now = time.time()
    return [Step(n=n).to_envelope(default_queue=queue, now=now) for n in range(count)]


def sizes(driver: RedisDriver) -> QueueSizes:
    return driver.sizes(["default"])["default"]


def test_acknowledging_more_jobs_than_one_script_chunk_removes_them_all(driver):
    driver.push_many(envelopes(MANY))
    held = driver.reserve_batch(["default"], lease_s=30, limit=MANY)
    assert len(held) == MANY
    driver.ack_many(held)
    assert sizes(driver) == QueueSizes()
    assert driver.client.hlen(driver.keys("default").claims) == 0


def test_a_reserve_acknowledges_more_jobs_than_one_script_chunk_first(driver):
    driver.push_many(envelopes(MANY + 1))
    held = driver.reserve_batch(["default"], lease_s=30, limit=MANY)
    last = driver.reserve_batch(["default"], lease_s=30, limit=5, acks=held)
    assert len(last) == 1
    assert sizes(driver) == QueueSizes(reserved=1)


def test_only_the_holders_of_a_batch_have_their_jobs_acknowledged(driver):
    driver.push_many(envelopes(4))
    held = driver.reserve_batch(["default"], lease_s=30, limit=4)
    stale = [held[0], *(r.__class__(r.id, r.queue, r.raw, r.deliveries, "other") for r in held[1:])]
    driver.ack_many(stale)
    assert sizes(driver) == QueueSizes(reserved=3)


def test_a_batch_drops_stale_entries_and_still_fills_up(driver):
    envs = envelopes(6)
    driver.push_many(envs)
    ready = driver.keys("default").ready
    # Ahead of every job (a higher priority): an entry of no job, and one naming
    # a real job under a seq it does not have. Both are stale.
    driver.client.zadd(ready, {"000000000000001|ghost": -5, f"000000000000099|{envs[3].id}": -5})
    batch = driver.reserve_batch(["default"], lease_s=30, limit=4)
    assert [r.id for r in batch] == [e.id for e in envs[:4]]
    assert sizes(driver) == QueueSizes(ready=2, reserved=4)
    assert driver.client.zcard(ready) == 2


def test_a_single_push_leaves_one_wake_up_token_and_the_list_stays_bounded(driver):
    wake = driver.keys("default").wake
    driver.push(envelopes(1)[0])
    assert driver.client.llen(wake) == 1
    for env in envelopes(100):
        driver.push(env)
    assert driver.client.llen(wake) == 64
    driver.push_many(envelopes(500))
    assert driver.client.llen(wake) == 64


def test_a_command_that_cannot_be_packed_leaves_no_reply_behind(driver, monkeypatch):
    """Packing fails after an earlier command of the same stream was sent: that
    connection still owes a reply, so it is dropped, and the next call is answered
    with its own replies, not the earlier one's."""
    real = connection_module.pack_command

    def failing_second(command):
        if command[0] == "ECHO" and command[1] == "second":
            raise redis.DataError("cannot pack")
        return real(command)

    monkeypatch.setattr(connection_module, "pack_command", failing_second)
    with pytest.raises(redis.DataError):
        driver._stream(lambda: iter([["ECHO", "first"], ["ECHO", "second"]]))
    assert driver._stream(lambda: iter([["ECHO", "third"]])) == [b"third"]


def test_a_value_redis_cannot_take_is_a_data_error():
    with pytest.raises(redis.DataError):
        connection_module.pack_command(["SET", "key", None])


def recording_streams(driver: RedisDriver, monkeypatch) -> list[list[str]]:
    """The command names of each stream ``driver`` sends from this thread."""
    sent: list[list[str]] = []
    real = driver._stream
    here = threading.current_thread()

    def stream(commands):
        listed = list(commands())
        if threading.current_thread() is here:
            sent.append([str(command[0]) for command in listed])
        return real(lambda: iter(listed))

    monkeypatch.setattr(driver, "_stream", stream)
    return sent


def test_an_idle_reserve_gets_a_pushed_job_in_the_round_trip_that_waited(driver, monkeypatch):
    sent = recording_streams(driver, monkeypatch)
    env = envelopes(1)[0]
    threading.Timer(0.2, lambda: driver.push(env)).start()
    got = driver.reserve_batch(["default"], lease_s=30, wait_s=5, limit=8)
    assert [r.id for r in got] == [env.id]
    # The first look, then the wait for the wake-up with the reserve sent behind it.
    assert sent == [["EVALSHA"], ["BLPOP", "EVALSHA"]]


def test_an_idle_reserve_waits_at_most_an_eighth_of_the_lease_at_a_time(driver, monkeypatch):
    """Its reserve is sent before the wait, so its leases start that early."""
    waits: list[float] = []
    real = driver._stream

    def stream(commands):
        listed = list(commands())
        waits.extend(float(c[2]) for c in listed if c[0] == "BLPOP")
        return real(lambda: iter(listed))

    monkeypatch.setattr(driver, "_stream", stream)
    assert driver.reserve_batch(["default"], lease_s=0.8, wait_s=0.5, limit=8) == []
    assert waits and max(waits) <= 0.1


def test_a_retried_idle_reserve_does_not_wait_again(driver, monkeypatch):
    """The first try waited and then lost its script cache (a Redis restart): the
    retry reserves at once, with a fresh clock, instead of waiting a second time."""
    sent = recording_streams(driver, monkeypatch)
    env = envelopes(1)[0]
    threading.Timer(0.2, lambda: driver.push(env)).start()
    real = driver._stream
    flushed = []

    def losing_scripts_once(commands):
        listed = list(commands())
        if listed[0][0] == "BLPOP" and not flushed:
            flushed.append(True)
            result = real(lambda: iter(listed[:1]))  # the wait runs...
            driver.client.script_flush()  # ...and the script cache is lost
            return [result[0], *real(lambda: iter(listed[1:]))]
        return real(lambda: iter(listed))

    monkeypatch.setattr(driver, "_stream", losing_scripts_once)
    started = time.monotonic()
    got = driver.reserve_batch(["default"], lease_s=30, wait_s=5, limit=8)
    assert [r.id for r in got] == [env.id]
    assert time.monotonic() - started < 1.0  # not a second wait of up to 5 s
    assert sent[-1] == ["EVALSHA"]


def test_an_id_acknowledged_twice_in_one_call_counts_once(driver):
    driver.push_many(envelopes(2))
    held = driver.reserve_batch(["default"], lease_s=30, limit=2)
    keys = driver.keys("default")
    pairs = [(r.id, r.token) for r in [held[0], held[0], held[1]]]
    removed = driver._run(lambda target: driver._scripts.ack(target, keys, pairs))[0]
    assert removed == 2
    assert sizes(driver) == QueueSizes()
