"""The event store: every job's lifecycle recorded, per-job history, live subscription.

A worker listener and the dispatcher feed an :class:`EventRecorder`, which
writes :class:`Event` rows in batches from a background thread to the store of
the connection the jobs run on (:func:`store_for`): a Redis stream, the
``job_events`` table, or memory for the memory and sync drivers::

    from kashq.events import EventRecorder, store_for

    recorder = EventRecorder(store_for(driver, settings))
    worker.add_listener(recorder.listener)
    ...
    recorder.close()
    for event in store_for(driver, settings).get_job_events(job_id):
        print(event.type, event.attempt, event.details)
"""

from __future__ import annotations

import sys
import threading
import weakref
from typing import Any

from kashq.config import Settings
from kashq.events.base import (
    EVENT_TYPES,
    Event,
    EventStore,
    EventStoreError,
)
from kashq.events.memory import MemoryEventStore, NullEventStore
from kashq.events.recorder import EventRecorder

__all__ = [
    "EVENT_TYPES",
    "Event",
    "EventRecorder",
    "EventStore",
    "EventStoreError",
    "MemoryEventStore",
    "NullEventStore",
    "store_for",
]

_memory_stores: weakref.WeakKeyDictionary[Any, MemoryEventStore] = weakref.WeakKeyDictionary()
_memory_lock = threading.Lock()


def store_for(driver: Any, settings: Settings, *, always: bool = False) -> EventStore:
    """The event store that goes with ``driver``, chosen by the driver's type.

    A Redis driver gets the stream under its prefix (sharing its client; a
    sharded connection, its first shard's), a
    database driver the ``job_events`` table (sharing its engine), anything
    else (memory, sync) one in-memory store per driver instance. With
    ``settings.events`` off this is a :class:`NullEventStore` (nothing is
    recorded), unless ``always`` (for reading what was recorded before).
    """
    if not settings.events and not always:
        return NullEventStore()
    if _is(driver, "kashq.drivers.sharded.driver", "ShardedDriver"):
        driver = driver.primary  # one stream, on the first shard
    if _is(driver, "kashq.drivers.redis.driver", "RedisDriver"):
        from kashq.events.redis import RedisEventStore

        return RedisEventStore(driver.client, prefix=driver.prefix, max_len=settings.events_max_len)
    if _is(driver, "kashq.drivers.database", "DatabaseDriver"):
        from kashq.events.database import DatabaseEventStore

        return DatabaseEventStore(driver.engine)
    with _memory_lock:
        store = _memory_stores.get(driver)
        if store is None:
            store = _memory_stores[driver] = MemoryEventStore(max_len=settings.events_max_len)
        return store


def _is(driver: Any, module: str, name: str) -> bool:
    """``isinstance(driver, module.name)``, without importing a module nobody loaded
    (a driver of that class cannot exist then; memory users never load redis or SQLAlchemy)."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(driver, getattr(loaded, name))
