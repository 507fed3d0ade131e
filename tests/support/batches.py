"""Jobs and helpers shared by the tests of how a worker counts its batch jobs."""

from __future__ import annotations

import time
from typing import Any

import pytest

import kashq
from kashq.drivers.base import Driver
from kashq.workflows.batch import PendingBatch
from kashq.workflows.batches import BatchRecord, store_for

RAN: list[str] = []  # what ran, in order: "row" per member, then each callback's kind


class Row(kashq.Job):
    n: int

    def handle(self) -> None:
        RAN.append("row")


class Callback(kashq.Job):
    kind: str

    def handle(self) -> None:
        RAN.append(self.kind)


def dispatch(driver: Driver, pending: PendingBatch) -> BatchRecord:
    """Store ``pending`` in ``driver``'s batch store and push its jobs; its record."""
    now = time.time()
    record, heads, ids = pending.build(
        lambda job: job.to_envelope(default_queue="default", now=now), now
    )
    store_for(driver).create(record, ids)
    driver.push_many(heads)
    return record


def count_calls(monkeypatch: pytest.MonkeyPatch, store_class: Any) -> list[int]:
    """How many jobs each call of ``store_class.count`` counts, from now on."""
    calls: list[int] = []
    real_count = store_class.count

    def count(self: Any, batch_id: str, job_ids: Any, state: Any, now: float) -> Any:
        calls.append(len(job_ids))
        return real_count(self, batch_id, job_ids, state, now)

    monkeypatch.setattr(store_class, "count", count)
    return calls
