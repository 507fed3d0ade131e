"""Redis-specific behaviour beyond the driver contract."""

from __future__ import annotations

import dataclasses
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from kashq import Job, Outcome, Worker, WorkerOptions
from kashq.drivers.redis import RedisDriver
from kashq.envelope import Envelope
from kashq.exceptions import ConfigError, DriverError
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


# --------------------------------------------------------------------------- URL and auth errors


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cr3t-pw@127.0.0.1:6379/abc",
        "redis://:s3cr3t-pw@127.0.0.1:6379/-1",
        "redis://:s3cr3t-pw@127.0.0.1:6379/99999999999",
        "rediss://:s3cr3t-pw@127.0.0.1:6379/1x",
        "redis://:s3cr3t-pw@127.0.0.1:6379/0?db=abc",
        "redis+cluster://:s3cr3t-pw@127.0.0.1:6379/3",
    ],
)
def test_a_bad_database_in_a_redis_url_is_one_config_error_naming_the_url(url: str):
    with pytest.raises(ConfigError) as raised:
        RedisDriver(url, prefix="k")  # never contacted: refused before connecting
    message = str(raised.value)
    assert url.replace("s3cr3t-pw", "***") in message
    assert "s3cr3t-pw" not in message and "\n" not in message


def test_a_database_the_server_does_not_have_is_a_config_error_naming_the_url(tmp_path: Path):
    server = RedisServer(tmp_path).start()  # 16 databases
    try:
        driver = RedisDriver(f"redis://127.0.0.1:{server.port}/99", prefix="k")
        with pytest.raises(ConfigError, match=rf"redis://127\.0\.0\.1:{server.port}/99"):
            driver.push(Noted(n=1).to_envelope(default_queue="default", now=time.time()))
        driver.close()
    finally:
        server.stop()


@pytest.fixture
def locked_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, extra_args=("--requirepass", "s3cr3t-pw")).start()
    yield server
    server.stop()


def _reached_by(url: str) -> list[str]:
    """The errors of a dispatch, a lock and an event through ``url``: one line each."""
    from kashq.events.base import Event
    from kashq.events.redis import RedisEventStore
    from kashq.locks.redis import DistributedLock

    driver = RedisDriver(url, prefix="k")
    locks = DistributedLock(url, prefix="k")
    events = RedisEventStore(url, prefix="k")
    messages = []
    for call in (
        lambda: driver.push(Noted(n=1).to_envelope(default_queue="default", now=time.time())),
        lambda: locks.try_acquire("x", 10),
        lambda: events.append(Event(type="dispatched", job_id="j", job_type="t", queue="q")),
    ):
        with pytest.raises(DriverError) as raised:
            call()
        messages.append(str(raised.value))
    for closing in (driver, locks, events):
        closing.close()
    return messages


AUTH_CASES = {  # URL, and what the error says besides the server
    "wrong password": ("redis://:s3cr3t-typo@127.0.0.1:{port}/0", "authentication failed"),
    "no password": ("redis://127.0.0.1:{port}/0", "requires a password"),
    "refused": ("redis://:s3cr3t-typo@127.0.0.1:1/0", "refused"),
    "unknown host": ("redis://:s3cr3t-typo@no-such-host.invalid:6379/0", "connecting to"),
}


@pytest.mark.parametrize("case", AUTH_CASES)
def test_redis_auth_and_connection_errors_name_the_server_with_its_password_hidden(
    locked_server: RedisServer, case: str
):
    template, said = AUTH_CASES[case]
    url = template.format(port=locked_server.port)
    for message in _reached_by(url):
        assert url.replace("s3cr3t-typo", "***") in message and said in message
        assert "s3cr3t" not in message and "\n" not in message


def test_queue_work_with_a_wrong_redis_password_stops_at_start_naming_the_server(
    locked_server: RedisServer, tmp_path: Path
):
    from tests.e2e.test_cli import _clean_env, _kashq_executable

    env = _clean_env() | {
        "KASHQ_CONNECTION": "redis",
        "KASHQ_REDIS_URL": f"redis://:s3cr3t-typo@127.0.0.1:{locked_server.port}/0",
        "KASHQ_DATABASE_URL": f"sqlite:///{tmp_path / 'kashq.sqlite'}",
    }
    run = subprocess.run(
        [str(_kashq_executable()), "queue:work", "--once"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        f"error: redis at redis://:***@127.0.0.1:{locked_server.port}/0: authentication failed: "
        "invalid username-password pair or user is disabled."
    ]
