"""The event store: every job's lifecycle recorded, per-job history, live subscription.

A worker listener and the dispatcher feed an :class:`EventRecorder`, which
writes :class:`Event` rows in batches from a background thread to the store
sharing the storage of the connection the jobs run on (:func:`store_for`, by
the driver's :class:`~kashq.drivers.base.Storage`): a Redis stream, the
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
from kashq.stores import Shelf, storage_of

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

# Memory events are state held by the store object: one per driver.
_MEMORY: Shelf[MemoryEventStore] = Shelf()


def store_for(driver: Any, settings: Settings, *, always: bool = False) -> EventStore:
    """The event store that shares ``driver``'s storage.

    Chosen by :attr:`driver.storage <kashq.drivers.base.Driver.storage>`, never
    by the driver's class: ``"redis"`` → the stream under its prefix, on its
    client (a sharded connection states its first shard's); ``"database"`` →
    the ``job_events`` table, on its engine (which carries the table prefix);
    ``"memory"``, or a driver that states no storage → one in-memory store per
    driver, the same on every call. With ``settings.events`` off this is a
    :class:`NullEventStore` (nothing is recorded), unless ``always`` (for
    reading what was recorded before).
    """
    if not settings.events and not always:
        return NullEventStore()
    storage = storage_of(driver)
    handle: Any = driver if storage is None else storage.handle
    if storage is not None and storage.kind == "redis":
        from kashq.events.redis import RedisEventStore

        return RedisEventStore(handle, prefix=storage.prefix, max_len=settings.events_max_len)
    if storage is not None and storage.kind == "database":
        from kashq.events.database import DatabaseEventStore

        return DatabaseEventStore(handle)
    return _MEMORY.get(handle, lambda: MemoryEventStore(max_len=settings.events_max_len))
