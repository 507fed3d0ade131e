"""The lock contract: one suite every lock backend must pass.

Parametrised over the memory, Redis (plain and cluster) and database backends.
Every backend takes a fake clock: it places the counters' windows everywhere,
and the lock TTLs of the memory and database backends. Redis keeps lock TTLs
itself, so there expiry is real: short TTLs, and a sleep past them.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kashq.drivers.database import DatabaseDriver
from kashq.drivers.memory import MemoryDriver
from kashq.exceptions import DriverError
from kashq.locks import (
    DatabaseLocks,
    DistributedLock,
    LockBackend,
    LockNotAcquired,
    MemoryLocks,
    backend_for,
)
from kashq.testing import FakeClock
from tests.support.databases import database
from tests.support.redis import delete_prefix, redis_driver, shared_client

LONG_TTL_S = 60.0
WINDOW_S = 10.0


@dataclass
class Harness:
    """A backend under test and how to let its short-lived locks expire."""

    backend: LockBackend
    clock: FakeClock
    short_ttl_s: float
    real_expiry: bool  # Redis: TTLs run on the server's real clock

    def let_expire(self) -> None:
        """Move past ``short_ttl_s`` for the backend's lock TTLs."""
        if self.real_expiry:
            time.sleep(self.short_ttl_s + 0.1)
        else:
            self.clock.advance(self.short_ttl_s + 0.001)

    def next_window(self) -> None:
        self.clock.advance(WINDOW_S)


@contextmanager
def redis_harness(client: Any, clock: FakeClock) -> Iterator[Harness]:
    prefix = f"kashq-test-{uuid.uuid4().hex[:10]}"
    try:
        yield Harness(DistributedLock(client, prefix=prefix, clock=clock), clock, 0.2, True)
    finally:
        delete_prefix(client, prefix)
        client.close()


@pytest.fixture(params=["memory", "redis", "redis-cluster", "sqlite", "postgres", "mariadb"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    clock = FakeClock()
    kind = request.param
    if kind == "memory":
        yield Harness(MemoryLocks(clock), clock, 1.0, False)
    elif kind == "redis":
        with redis_harness(shared_client(), clock) as found:
            yield found
    elif kind == "redis-cluster":
        from kashq.drivers.redis.client import connect

        url = request.getfixturevalue("redis_cluster_url")
        with redis_harness(connect(url), clock) as found:
            yield found
    else:
        with database(kind, tmp_path, migrated=True) as url:
            backend = DatabaseLocks(url, clock=clock)
            try:
                yield Harness(backend, clock, 1.0, False)
            finally:
                backend.close()


def test_released_lock_can_be_taken_again(harness: Harness) -> None:
    lock = harness.backend.acquire("report", LONG_TTL_S)
    assert lock.key == "report" and len(lock.token) == 32
    assert lock.release() is True
    again = harness.backend.acquire("report", LONG_TTL_S)
    assert again.token != lock.token
    assert again.release() is True


def test_held_lock_refuses_a_second_holder(harness: Harness) -> None:
    lock = harness.backend.acquire("report", LONG_TTL_S)
    with pytest.raises(LockNotAcquired):
        harness.backend.acquire("report", LONG_TTL_S)
    assert harness.backend.try_acquire("report", LONG_TTL_S) is None
    other = harness.backend.try_acquire("other-key", LONG_TTL_S)
    assert other is not None
    assert lock.release() and other.release()


def test_waiting_acquire_gets_the_lock_once_the_holder_releases(harness: Harness) -> None:
    lock = harness.backend.acquire("report", LONG_TTL_S)
    releaser = threading.Timer(0.3, lock.release)
    releaser.start()
    try:
        waited = harness.backend.acquire("report", LONG_TTL_S, wait_s=30)
    finally:
        releaser.join()
    assert waited.token != lock.token
    assert waited.release() is True


def test_waiting_acquire_gives_up_at_the_deadline(harness: Harness) -> None:
    lock = harness.backend.acquire("report", LONG_TTL_S)
    started = time.monotonic()
    with pytest.raises(LockNotAcquired):
        harness.backend.acquire("report", LONG_TTL_S, wait_s=0.3)
    assert time.monotonic() - started >= 0.3
    assert lock.release() is True


def test_crashed_holders_lock_expires(harness: Harness) -> None:
    harness.backend.acquire("report", harness.short_ttl_s)  # never released: a crash
    assert harness.backend.try_acquire("report", LONG_TTL_S) is None
    harness.let_expire()
    taken = harness.backend.try_acquire("report", LONG_TTL_S)
    assert taken is not None
    assert taken.release() is True


def test_stale_release_does_not_free_the_new_holders_lock(harness: Harness) -> None:
    stale = harness.backend.acquire("report", harness.short_ttl_s)
    harness.let_expire()
    current = harness.backend.acquire("report", LONG_TTL_S)
    assert stale.release() is False
    assert harness.backend.try_acquire("report", LONG_TTL_S) is None
    assert current.release() is True


def test_release_after_expiry_reports_false(harness: Harness) -> None:
    lock = harness.backend.acquire("report", harness.short_ttl_s)
    harness.let_expire()
    assert lock.release() is False
    assert lock.release() is False


def test_extend_keeps_the_lock_for_its_holder_only(harness: Harness) -> None:
    lock = harness.backend.acquire("report", harness.short_ttl_s)
    assert lock.extend(LONG_TTL_S) is True
    harness.let_expire()
    assert harness.backend.try_acquire("report", LONG_TTL_S) is None  # still held
    assert lock.extend(harness.short_ttl_s) is True
    harness.let_expire()
    assert lock.extend(LONG_TTL_S) is False  # expired: too late
    current = harness.backend.acquire("report", LONG_TTL_S)
    assert lock.extend(LONG_TTL_S) is False  # someone else's now
    assert harness.backend.try_acquire("report", LONG_TTL_S) is None
    assert current.release() is True


def test_context_manager_releases_on_exception(harness: Harness) -> None:
    with pytest.raises(RuntimeError), harness.backend.acquire("report", LONG_TTL_S) as lock:
        assert lock.key == "report"
        raise RuntimeError("boom")
    after = harness.backend.try_acquire("report", LONG_TTL_S)
    assert after is not None
    after.release()


def test_hit_counts_per_window_and_restarts_in_the_next(harness: Harness) -> None:
    assert [harness.backend.hit("api", WINDOW_S) for _ in range(3)] == [1, 2, 3]
    assert harness.backend.hit("other", WINDOW_S) == 1
    harness.clock.advance(WINDOW_S / 2)  # the FakeClock starts on a window boundary
    assert harness.backend.hit("api", WINDOW_S) == 4
    harness.next_window()
    assert harness.backend.hit("api", WINDOW_S) == 1
    assert harness.backend.hit("api", WINDOW_S) == 2


def test_long_keys_are_distinct(harness: Harness) -> None:
    head = "k" * 300
    first = harness.backend.acquire(head + "a", LONG_TTL_S)
    second = harness.backend.acquire(head + "b", LONG_TTL_S)
    assert first.release() and second.release()


def test_bad_ttl_is_rejected(harness: Harness) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        harness.backend.acquire("report", 0)


# -- backend_for -------------------------------------------------------------
def test_memory_driver_gets_one_shared_memory_backend() -> None:
    clock = FakeClock()
    driver = MemoryDriver(clock=clock)
    backend = backend_for(driver)
    assert isinstance(backend, MemoryLocks)
    assert backend_for(driver) is backend
    assert backend_for(MemoryDriver(clock=clock)) is not backend
    lock = backend.acquire("report", 5)
    assert backend_for(driver).try_acquire("report", 5) is None
    clock.advance(6)  # the backend follows the driver's clock
    assert backend_for(driver).try_acquire("report", 5) is not None
    lock.release()


def test_redis_driver_gets_a_redis_backend_on_its_prefix() -> None:
    with redis_driver() as driver:
        backend = backend_for(driver)
        assert isinstance(backend, DistributedLock)
        assert backend.prefix == driver.prefix
        with backend.acquire("report", LONG_TTL_S):
            keys = [k.decode() for k in driver.client.scan_iter(match=f"{driver.prefix}:lock:*")]
            assert keys == [f"{driver.prefix}:lock:{{report}}"]


def test_database_driver_gets_a_database_backend_on_its_engine(tmp_path: Path) -> None:
    with database("sqlite", tmp_path, migrated=True) as url:
        driver = DatabaseDriver(url)
        try:
            backend = backend_for(driver)
            assert isinstance(backend, DatabaseLocks)
            with backend.acquire("report", LONG_TTL_S):
                assert DatabaseLocks(driver.engine).try_acquire("report", LONG_TTL_S) is None
        finally:
            driver.close()


def test_unreachable_redis_is_a_driver_error() -> None:
    locks = DistributedLock("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(DriverError, match="acquiring a lock failed on Redis"):
            locks.try_acquire("report", 1)
    finally:
        locks.close()
