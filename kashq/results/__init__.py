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

import threading
import weakref
from typing import TYPE_CHECKING, Any

from kashq.drivers.base import Storage
from kashq.results.base import Outcome, Progress, ResultStore, ResultStoreError, StoredResult
from kashq.results.memory import MemoryResultStore

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

# Memory results are state held by the store object, so everyone on one storage
# must get the same store: one per storage handle (the driver itself). Weak
# keys: a driver that is gone takes its results with it.
_memory_stores: weakref.WeakKeyDictionary[Any, MemoryResultStore] = weakref.WeakKeyDictionary()
_memory_lock = threading.Lock()


def store_for(driver: Any) -> ResultStore:
    """The result store that shares ``driver``'s storage, on the storage's clock.

    Chosen by :attr:`driver.storage <kashq.drivers.base.Driver.storage>`, never
    by the driver's class: ``"redis"`` → hashes under its prefix, on its client
    (a sharded connection states its first shard's); ``"database"`` → the
    ``job_results`` table, on its engine (which carries the table prefix);
    ``"memory"``, or a driver that states no storage → one in-memory store per
    driver, the same on every call.
    """
    storage = getattr(driver, "storage", None)
    if not isinstance(storage, Storage):
        return _memory_store(driver, None)
    handle: Any = storage.handle
    if storage.kind == "redis":
        from kashq.results.redis import RedisResultStore

        return RedisResultStore(handle, prefix=storage.prefix, clock=storage.clock)
    if storage.kind == "database":
        from kashq.results.database import DatabaseResultStore

        return DatabaseResultStore(handle, clock=storage.clock)
    return _memory_store(handle, storage)


def _memory_store(owner: Any, storage: Storage | None) -> MemoryResultStore:
    with _memory_lock:
        store = _memory_stores.get(owner)
        if store is None:
            store = MemoryResultStore(storage.clock) if storage else MemoryResultStore()
            _memory_stores[owner] = store
        return store


def __getattr__(name: str) -> Any:
    # The Redis and database stores load their libraries only when used.
    if name == "RedisResultStore":
        from kashq.results.redis import RedisResultStore

        return RedisResultStore
    if name == "DatabaseResultStore":
        from kashq.results.database import DatabaseResultStore

        return DatabaseResultStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
