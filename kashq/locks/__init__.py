"""Distributed locks and windowed counters (GoFlow's ``NewDistributedLock``).

Three backends keep one protocol (:class:`LockBackend`): :class:`DistributedLock`
on Redis, :class:`DatabaseLocks` on kashq's SQL tables, :class:`MemoryLocks` in
one process. :func:`backend_for` picks the one that shares a queue driver's
storage, which is what job middleware (overlap guards, rate limits, unique
jobs) and the scheduler use.

    from kashq.locks import DistributedLock

    locks = DistributedLock("redis://localhost:6379/0")
    with locks.acquire("reports:daily", ttl_s=60, wait_s=5):
        ...  # only one process at a time runs this
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from kashq.exceptions import ConfigError
from kashq.locks.base import Lock, LockBackend, LockNotAcquired
from kashq.locks.held import HeldLock
from kashq.locks.memory import MemoryLocks

if TYPE_CHECKING:
    from kashq.locks.database import DatabaseLocks
    from kashq.locks.redis import DistributedLock

__all__ = [
    "DatabaseLocks",
    "DistributedLock",
    "HeldLock",
    "Lock",
    "LockBackend",
    "LockNotAcquired",
    "MemoryLocks",
    "backend_for",
]

# One backend per driver object, so every thread of a process that uses one
# driver (dispatcher, workers) shares the memory backend's state. Weak keys: a
# driver that is gone takes its backend with it.
_BACKENDS: weakref.WeakKeyDictionary[Any, LockBackend] = weakref.WeakKeyDictionary()
_BACKENDS_MUTEX = threading.Lock()


def backend_for(driver: object) -> LockBackend:
    """The lock backend that shares ``driver``'s storage (the same one on every call).

    Redis driver → :class:`DistributedLock` on its client and prefix (a sharded
    connection: its first shard's); database
    driver → :class:`DatabaseLocks` on its engine; memory and sync drivers →
    one :class:`MemoryLocks` per driver (same clock), valid within this process.
    """
    with _BACKENDS_MUTEX:
        backend = _BACKENDS.get(driver)
        if backend is None:
            backend = _BACKENDS[driver] = _build(driver)
        return backend


def _build(driver: object) -> LockBackend:
    from kashq.clock import SYSTEM_CLOCK
    from kashq.drivers.memory import MemoryDriver
    from kashq.drivers.sync import SyncDriver

    # The drivers keep their clock private; the memory backend must expire on
    # the same (possibly fake) time as the jobs it guards.
    clock = getattr(driver, "_clock", SYSTEM_CLOCK)
    if isinstance(driver, MemoryDriver | SyncDriver):
        return MemoryLocks(clock)
    from kashq.drivers.redis.driver import RedisDriver
    from kashq.drivers.sharded.driver import ShardedDriver

    if isinstance(driver, ShardedDriver):
        return _build(driver.primary)  # locks live on the first shard

    if isinstance(driver, RedisDriver):
        from kashq.locks.redis import DistributedLock

        return DistributedLock(driver.client, prefix=driver.prefix, clock=clock)
    from kashq.drivers.database import DatabaseDriver

    if isinstance(driver, DatabaseDriver):
        from kashq.locks.database import DatabaseLocks

        return DatabaseLocks(driver.engine, clock=clock)
    raise ConfigError(f"no lock backend for the {type(driver).__name__} driver")


def __getattr__(name: str) -> Any:
    # The Redis and database backends load their libraries only when used.
    if name == "DistributedLock":
        from kashq.locks.redis import DistributedLock

        return DistributedLock
    if name == "DatabaseLocks":
        from kashq.locks.database import DatabaseLocks

        return DatabaseLocks
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
