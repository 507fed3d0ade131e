"""The result store: each job's outcome and progress, kept by id for a while, and waited for.

:func:`store_for` gives the store sharing the storage of the connection the
jobs run on (by the driver's :class:`~kashq.drivers.base.Storage`): a hash per
job in Redis, the ``job_results`` table, or memory for the memory and sync
drivers::

    from kashq.results import store_for

    store = store_for(driver)
    result = store.wait(job_id, timeout_s=30)
    if result is not None and result.status == "completed":
        print(result.value)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kashq.results.base import Outcome, Progress, ResultStore, ResultStoreError, StoredResult
from kashq.results.memory import MemoryResultStore
from kashq.stores import Shelf, storage_of

if TYPE_CHECKING:
    from kashq.results.database import DatabaseResultStore
    from kashq.results.redis import RedisResultStore

__all__ = [
    "DatabaseResultStore",
    "MemoryResultStore",
    "Outcome",
    "Progress",
    "RedisResultStore",
    "ResultStore",
    "ResultStoreError",
    "StoredResult",
    "store_for",
]

# Memory results are state held by the store object: one per driver.
_MEMORY: Shelf[MemoryResultStore] = Shelf()


def store_for(driver: Any) -> ResultStore:
    """The result store that shares ``driver``'s storage, on the storage's clock.

    Chosen by :attr:`driver.storage <kashq.drivers.base.Driver.storage>`, never
    by the driver's class: ``"redis"`` → hashes under its prefix, on its client
    (a sharded connection states its first shard's); ``"database"`` → the
    ``job_results`` table, on its engine (which carries the table prefix);
    ``"memory"``, or a driver that states no storage → one in-memory store per
    driver, the same on every call.
    """
    storage = storage_of(driver)
    if storage is None:
        return _MEMORY.get(driver, MemoryResultStore)
    handle: Any = storage.handle
    if storage.kind == "redis":
        from kashq.results.redis import RedisResultStore

        return RedisResultStore(handle, prefix=storage.prefix, clock=storage.clock)
    if storage.kind == "database":
        from kashq.results.database import DatabaseResultStore

        return DatabaseResultStore(handle, clock=storage.clock)
    return _MEMORY.get(handle, lambda: MemoryResultStore(storage.clock))


def __getattr__(name: str) -> Any:
    # The Redis and database stores load their libraries only when used.
    if name == "RedisResultStore":
        from kashq.results.redis import RedisResultStore

        return RedisResultStore
    if name == "DatabaseResultStore":
        from kashq.results.database import DatabaseResultStore

        return DatabaseResultStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
