"""Pushing a batch's due callbacks: by the worker whose count made them due, or the sweep.

Each callback is pushed with ``push_once`` under an id derived from the batch's
(``<batch id>/then.0``...), so pushing it again (the sweep meeting a callback a
worker is pushing, or a worker that died before marking it pushed) stores
nothing: each callback is pushed once.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from kashq.drivers.base import Driver
from kashq.envelope import decode
from kashq.workflows.batches.base import BatchRecord, BatchStore, Callbacks
from kashq.workflows.chain import derived_id

BATCH_ID = "kashq.batch_id"
"""Envelope metadata of a batch's callback: the batch it was pushed for."""
KINDS = (Callbacks.THEN, Callbacks.CATCH, Callbacks.FINALLY)


def callback_key(kind: Callbacks) -> str:
    """The key of ``kind``'s callbacks in a batch's options: ``then``, ``catch``, ``finally``."""
    return {Callbacks.THEN: "then", Callbacks.CATCH: "catch", Callbacks.FINALLY: "finally"}[kind]


def push_due(
    driver: Driver, store: BatchStore, record: BatchRecord, due: Callbacks, now: float
) -> None:
    """Push the callbacks of ``due`` (once each), then note them pushed."""
    options: dict[str, Any] = json.loads(record.options)
    for kind in KINDS:
        if not due & kind:
            continue
        key = callback_key(kind)
        for number, callback in enumerate(options.get(key, [])):
            job = decode(json.dumps(callback))
            delay_s = max(job.available_at - job.created_at, 0.0)
            job_id = derived_id(record.id, f"{key}.{number}")
            metadata = {**job.metadata, BATCH_ID: record.id}
            job = dataclasses.replace(job, id=job_id, metadata=metadata, created_at=now)
            driver.push_once(dataclasses.replace(job, available_at=now + delay_s))
    store.mark_pushed(record.id, due)


def sweep(driver: Driver, store: BatchStore, now: float) -> int:
    """Push every callback due and not marked pushed (a worker died between); how many
    batches had one."""
    unsettled = store.unsettled()
    for record in unsettled:
        push_due(driver, store, record, Callbacks(record.due & ~record.pushed), now)
    return len(unsettled)
