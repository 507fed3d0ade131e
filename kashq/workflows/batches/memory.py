"""Batches in this process's memory: for the memory and sync connections."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence

from kashq.workflows.batches.base import (
    BatchRecord,
    BatchStoreError,
    Callbacks,
    Counted,
    MemberState,
    count_all,
)


class MemoryBatchStore:
    """Batches in a dict, under one lock."""

    def __init__(self) -> None:
        self._batches: dict[str, BatchRecord] = {}
        self._members: dict[str, dict[str, MemberState | None]] = {}  # in dispatch order
        self._lock = threading.Lock()

    def create(self, record: BatchRecord, member_ids: list[str]) -> None:
        with self._lock:
            self._batches[record.id] = record
            self._members[record.id] = dict.fromkeys(member_ids)

    def add(self, batch_id: str, member_ids: list[str]) -> BatchRecord:
        with self._lock:
            record = self._batches.get(batch_id)
            if record is None or record.finished_at is not None:
                raise BatchStoreError(f"batch {batch_id} {_gone(record)}: no jobs can be added")
            members = self._members[batch_id]
            fresh = [job_id for job_id in dict.fromkeys(member_ids) if job_id not in members]
            members.update(dict.fromkeys(fresh))
            record = self._batches[batch_id] = dataclasses.replace(
                record, total=record.total + len(fresh)
            )
            return record

    def count(
        self, batch_id: str, job_ids: Sequence[str], state: MemberState, now: float
    ) -> Counted | None:
        with self._lock:
            record, members = self._batches.get(batch_id), self._members.get(batch_id)
            if record is None or members is None:
                return None
            olds = {job_id: members[job_id] for job_id in job_ids if job_id in members}
            counted = count_all(record, olds, state, now)
            if counted is not None:
                members.update(dict.fromkeys(olds, state))
                self._batches[batch_id] = counted.record
            return counted

    def mark_pushed(self, batch_id: str, callbacks: Callbacks) -> None:
        with self._lock:
            record = self._batches.get(batch_id)
            if record is not None:
                pushed = record.pushed | callbacks
                self._batches[batch_id] = dataclasses.replace(record, pushed=pushed)

    def get(self, batch_id: str) -> BatchRecord | None:
        with self._lock:
            return self._batches.get(batch_id)

    def member_ids(self, batch_id: str, state: MemberState | None = None) -> list[str]:
        with self._lock:
            members = self._members.get(batch_id, {})
            return [job_id for job_id, s in members.items() if state is None or s == state]

    def cancel(self, batch_id: str, now: float) -> BatchRecord | None:
        with self._lock:
            record = self._batches.get(batch_id)
            if record is not None and record.cancelled_at is None and record.finished_at is None:
                record = self._batches[batch_id] = dataclasses.replace(record, cancelled_at=now)
            return record

    def recent(self, limit: int, before: float | None = None) -> list[BatchRecord]:
        with self._lock:
            records = [r for r in self._batches.values() if before is None or r.created_at < before]
        return sorted(records, key=lambda r: (r.created_at, r.id), reverse=True)[:limit]

    def unsettled(self) -> list[BatchRecord]:
        with self._lock:
            return [r for r in self._batches.values() if r.due & ~r.pushed]

    def prune(self, finished_before: float) -> int:
        with self._lock:
            old = [
                batch_id
                for batch_id, r in self._batches.items()
                if r.finished_at is not None and r.finished_at < finished_before
            ]
            for batch_id in old:
                del self._batches[batch_id]
                del self._members[batch_id]
            return len(old)


def _gone(record: BatchRecord | None) -> str:
    return "is unknown" if record is None else "has finished"
