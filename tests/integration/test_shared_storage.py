"""Locks and events share the storage their driver states (``driver.storage``).

For every kind of driver (memory, sync, Redis, sharded Redis, a database under
a table prefix), :func:`kashq.locks.backend_for` and :func:`kashq.events.store_for`
return the backend on that storage: the same one on every call, running on the
driver's clock, and seeing what a backend built by hand on the same storage
sees. What counts is the storage an object states, never its class.
"""

from __future__ import annotations

import gc
import uuid
import weakref
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import kashq
from kashq.db import migrate
from kashq.drivers.base import Storage
from kashq.drivers.database import DatabaseDriver
from kashq.drivers.memory import MemoryDriver
from kashq.drivers.redis import RedisDriver
from kashq.drivers.redis.keys import stream_key
from kashq.drivers.sync import SyncDriver
from kashq.events import Event, EventStore, MemoryEventStore, store_for
from kashq.events.database import DatabaseEventStore
from kashq.events.redis import RedisEventStore
from kashq.exceptions import ConfigError
from kashq.locks import DatabaseLocks, DistributedLock, LockBackend, MemoryLocks, backend_for
from kashq.testing import FakeClock
from tests.support.databases import database
from tests.support.redis import delete_prefix, redis_driver, sharded_driver, shared_client
from tests.support.services import REDIS_URL

SETTINGS = kashq.load_settings(connection="memory")  # events on
KINDS = ["memory", "sync", "redis", "sharded", "database"]
TABLE_PREFIX = "app_"
LONG_TTL_S = 60.0
WINDOW_S = 10.0


class Stating:
    """No driver class: only the storage it states."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage


@dataclass
class Case:
    """A driver, its clock, what should be chosen for it, and twins built by hand on its storage."""

    driver: Any
    clock: FakeClock
    locks_type: type
    events_type: type
    twin_locks: LockBackend
    twin_events: EventStore


@pytest.fixture(params=KINDS)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    kind, clock = request.param, FakeClock()
    with ExitStack() as stack:
        if kind in ("memory", "sync"):
            driver: Any = (
                MemoryDriver(clock=clock)
                if kind == "memory"
                else SyncDriver(lambda _driver, _queues: None, clock=clock)
            )
            # Memory locks and events are objects of this process: sharing the
            # storage means being given the very same ones.
            other = Stating(driver.storage)
            yield Case(
                driver,
                clock,
                MemoryLocks,
                MemoryEventStore,
                backend_for(other),
                store_for(other, SETTINGS),
            )
        elif kind in ("redis", "sharded"):
            if kind == "redis":
                driver = stack.enter_context(redis_driver(clock=clock))
                primary = driver
            else:
                driver = stack.enter_context(sharded_driver([REDIS_URL], clock=clock))
                primary = driver.primary
            twin_locks = DistributedLock(primary.client, prefix=primary.prefix)
            twin_events = RedisEventStore(primary.client, prefix=primary.prefix)
            yield Case(driver, clock, DistributedLock, RedisEventStore, twin_locks, twin_events)
        else:
            url = stack.enter_context(database("sqlite", tmp_path))
            migrate.upgrade(url, table_prefix=TABLE_PREFIX)
            driver = DatabaseDriver(url, clock=clock, table_prefix=TABLE_PREFIX)
            stack.callback(driver.close)
            twin_locks = DatabaseLocks(url, table_prefix=TABLE_PREFIX, clock=clock)
            stack.callback(twin_locks.close)
            twin_events = DatabaseEventStore(url, table_prefix=TABLE_PREFIX)
            stack.callback(twin_events.close)
            yield Case(driver, clock, DatabaseLocks, DatabaseEventStore, twin_locks, twin_events)


def test_the_lock_backend_is_the_one_on_the_drivers_storage(case: Case) -> None:
    backend = backend_for(case.driver)
    assert type(backend) is case.locks_type
    assert backend_for(case.driver) is backend

    held = backend.acquire("report", LONG_TTL_S)
    assert case.twin_locks.try_acquire("report", LONG_TTL_S) is None, "one storage, one lock"
    held.release()
    freed = case.twin_locks.try_acquire("report", LONG_TTL_S)
    assert freed is not None
    freed.release()


def test_the_lock_backend_runs_on_the_drivers_clock(case: Case) -> None:
    backend = backend_for(case.driver)
    assert backend.hit("per-window", WINDOW_S) == 1
    assert backend.hit("per-window", WINDOW_S) == 2
    case.clock.advance(WINDOW_S)  # only the driver's (fake) clock moves
    assert backend.hit("per-window", WINDOW_S) == 1


def test_the_event_store_is_the_one_on_the_drivers_storage(case: Case) -> None:
    store = store_for(case.driver, SETTINGS)
    assert type(store) is case.events_type
    if isinstance(store, MemoryEventStore):
        assert store_for(case.driver, SETTINGS) is store

    job_id = uuid.uuid4().hex
    store.append(Event("dispatched", job_id, "tests.Job", "default", at=case.clock.time()))
    seen = case.twin_events.get_job_events(job_id)
    assert [(e.type, e.job_id) for e in seen] == [("dispatched", job_id)]


def test_a_sharded_connection_keeps_its_locks_and_events_on_the_first_shard() -> None:
    with sharded_driver([REDIS_URL]) as driver:
        backend = backend_for(driver)
        assert isinstance(backend, DistributedLock)
        assert backend.client is driver.primary.client
        assert backend.prefix == driver.primary.prefix
        store = store_for(driver, SETTINGS)
        assert isinstance(store, RedisEventStore)
        assert store.client is driver.primary.client
        assert store.key == stream_key(driver.primary.prefix)


def test_anything_stating_a_storage_gets_the_backend_for_it() -> None:
    client = shared_client()
    prefix = f"kashq-test-{uuid.uuid4().hex[:10]}"
    stating = Stating(Storage("redis", client, prefix=prefix))
    try:
        backend = backend_for(stating)
        assert isinstance(backend, DistributedLock)
        assert (backend.client, backend.prefix) == (client, prefix)
        assert backend_for(stating) is backend
        store = store_for(stating, SETTINGS)
        assert isinstance(store, RedisEventStore)
        assert (store.client, store.key) == (client, stream_key(prefix))
    finally:
        delete_prefix(client, prefix)
        client.close()


def test_memory_drivers_each_get_their_own_locks_and_events() -> None:
    first, second = MemoryDriver(), MemoryDriver()
    assert backend_for(first) is not backend_for(second)
    assert store_for(first, SETTINGS) is not store_for(second, SETTINGS)


def test_a_driver_that_states_no_storage_has_no_lock_backend() -> None:
    class Bare:
        pass

    with pytest.raises(ConfigError, match=r"^no lock backend for the Bare driver$"):
        backend_for(Bare())
    bare = Bare()
    assert isinstance(store_for(bare, SETTINGS), MemoryEventStore)
    assert store_for(bare, SETTINGS) is store_for(bare, SETTINGS)


@pytest.mark.parametrize("kind", ["memory", "redis", "database"])
def test_a_dropped_driver_takes_its_backend_and_storage_with_it(kind: str, tmp_path: Path) -> None:
    if kind == "memory":
        driver: Any = MemoryDriver()
    elif kind == "redis":
        shared_client().close()  # skip (locally) or fail (CI) early if Redis is down
        driver = RedisDriver(REDIS_URL, prefix=f"kashq-test-{uuid.uuid4().hex[:10]}")
    else:
        driver = DatabaseDriver(f"sqlite:///{tmp_path / 'kashq.sqlite'}")
    handle = weakref.ref(driver.storage.handle)
    backend = weakref.ref(backend_for(driver))
    store = weakref.ref(store_for(driver, SETTINGS))

    driver.close()
    del driver
    gc.collect()
    assert backend() is None
    assert store() is None
    assert handle() is None, "the cache keeps no client, engine or driver alive"
