"""Distributed locks and windowed counters (GoFlow's ``NewDistributedLock``).

Three backends keep one protocol (:class:`LockBackend`): :class:`DistributedLock`
on Redis, :class:`DatabaseLocks` on kashq's SQL tables, :class:`MemoryLocks` in
one process. :func:`backend_for` picks the one that shares a queue driver's
storage (by the driver's :class:`~kashq.drivers.base.Storage`, never by its
class), which is what job middleware (overlap guards, rate limits, unique
jobs) and the scheduler use.

    from kashq.locks import DistributedLock

    locks = DistributedLock("redis://localhost:6379/0")
    with locks.acquire("reports:daily", ttl_s=60, wait_s=5):
        ...  # only one process at a time runs this
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kashq.drivers.base import Storage
from kashq.exceptions import ConfigError
from kashq.locks.base import Lock, LockBackend, LockNotAcquired
from kashq.locks.held import HeldLock
from kashq.locks.memory import MemoryLocks
from kashq.stores import Shelf, storage_of

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

# Memory locks are state held by the backend object, so everyone on one storage
# must get the same object: those are kept per storage handle (the driver
# itself). Redis and database locks are state on the server; their backend is
# kept per driver object only so it is built once (keyed by the client or
# engine, which the backend holds, an entry would never be dropped). Weak keys:
# a driver that is gone takes its backend with it.
_BACKENDS: Shelf[LockBackend] = Shelf()


def backend_for(driver: object) -> LockBackend:
    """The lock backend that shares ``driver``'s storage (the same one on every call).

    Chosen by :attr:`driver.storage <kashq.drivers.base.Driver.storage>`, never
    by the driver's class: ``"redis"`` → :class:`DistributedLock` on its client
    and prefix (a sharded connection states its first shard's); ``"database"``
    → :class:`DatabaseLocks` on its engine (which carries the table prefix);
    ``"memory"`` → one :class:`MemoryLocks` per driver, valid within this
    process. Every backend runs on the storage's clock.
    """
    storage = storage_of(driver)
    if storage is None:
        raise ConfigError(f"no lock backend for the {type(driver).__name__} driver")
    owner = storage.handle if storage.kind == "memory" else driver
    return _BACKENDS.get(owner, lambda: _build(storage, driver))


def _build(storage: Storage, driver: object) -> LockBackend:
    handle: Any = storage.handle
    if storage.kind == "memory":
        return MemoryLocks(storage.clock)
    if storage.kind == "redis":
        from kashq.locks.redis import DistributedLock

        return DistributedLock(handle, prefix=storage.prefix, clock=storage.clock)
    if storage.kind == "database":
        from kashq.locks.database import DatabaseLocks

        return DatabaseLocks(handle, clock=storage.clock)
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
