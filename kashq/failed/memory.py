"""An in-process failed-job store, for the memory and sync drivers and tests."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from kashq.failed.base import FailedFilter, FailedJob, numeric_id


class MemoryFailedJobStore:
    """Failed jobs in a dict, newest first on read; thread-safe."""

    def __init__(self) -> None:
        self._jobs: dict[int, FailedJob] = {}
        self._by_uuid: dict[str, int] = {}
        self._next_id = 1
        self._lock = threading.Lock()

    def log(self, job: FailedJob) -> FailedJob:
        with self._lock:
            existing = self._by_uuid.get(job.uuid)
            if existing is not None:
                kept = self._jobs[existing]
                if job.failed_at <= kept.failed_at:
                    return kept  # the same failure again (a duplicate delivery)
                newer = self._jobs[existing] = dataclasses.replace(job, id=existing)
                return newer
            stored = dataclasses.replace(job, id=self._next_id)
            self._next_id += 1
            self._jobs[stored.id] = stored
            self._by_uuid[stored.uuid] = stored.id
            return stored

    def all(self, *, queue: str | None = None, limit: int | None = None) -> list[FailedJob]:
        with self._lock:
            jobs = [j for j in self._jobs.values() if queue is None or j.queue == queue]
        jobs.sort(key=lambda j: (j.failed_at, j.id), reverse=True)
        return jobs if limit is None else jobs[:limit]

    def page(
        self,
        *,
        queue: str | None = None,
        job_type: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
        where: FailedFilter | None = None,
    ) -> list[FailedJob]:
        wanted, also = FailedFilter(queue, job_type), where or FailedFilter()
        with self._lock:
            jobs = [
                j
                for j in self._jobs.values()
                if wanted.matches(j) and also.matches(j) and (before_id is None or j.id < before_id)
            ]
        jobs.sort(key=lambda j: j.id, reverse=True)
        return jobs[:limit]

    def find(self, key: int | str) -> FailedJob | None:
        with self._lock:
            job_id = self._resolve(key)
            return None if job_id is None else self._jobs[job_id]

    def between(
        self, first_id: int, last_id: int, *, queue: str | None = None, limit: int | None = None
    ) -> list[FailedJob]:
        with self._lock:
            jobs = sorted(
                (j for j in self._jobs.values() if first_id <= j.id <= last_id),
                key=lambda j: j.id,
            )
        jobs = [j for j in jobs if queue is None or j.queue == queue]
        return jobs if limit is None else jobs[:limit]

    def forget_many(self, ids: Sequence[int]) -> int:
        with self._lock:
            found = [self._jobs.pop(i) for i in set(ids) if i in self._jobs]
            for job in found:
                del self._by_uuid[job.uuid]
            return len(found)

    def forget(self, key: int | str, *, failed_at: datetime | None = None) -> bool:
        with self._lock:
            job_id = self._resolve(key)
            if job_id is None:
                return False
            if failed_at is not None and self._jobs[job_id].failed_at != failed_at:
                return False
            del self._by_uuid[self._jobs.pop(job_id).uuid]
            return True

    def flush(self, *, older_than_hours: float | None = None) -> int:
        if older_than_hours is None:
            with self._lock:
                removed = len(self._jobs)
                self._jobs.clear()
                self._by_uuid.clear()
                return removed
        cutoff = datetime.now(timezone.utc) - timedelta(hours=older_than_hours)
        return self.prune(cutoff)

    def prune(self, before: datetime, *, chunk_size: int = 1000) -> int:
        with self._lock:
            old = [j for j in self._jobs.values() if j.failed_at < before]
            for job in old:
                del self._jobs[job.id]
                del self._by_uuid[job.uuid]
            return len(old)

    def count(self, *, queue: str | None = None, where: FailedFilter | None = None) -> int:
        wanted, also = FailedFilter(queue), where or FailedFilter()
        with self._lock:
            if queue is None and where is None:
                return len(self._jobs)
            return sum(1 for j in self._jobs.values() if wanted.matches(j) and also.matches(j))

    def counts_by_queue(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(j.queue for j in self._jobs.values()))

    def close(self) -> None:
        """Nothing to release: the failed jobs live in this object and stay readable."""

    def _resolve(self, key: int | str) -> int | None:
        job_id = numeric_id(key)
        if job_id is None:
            return self._by_uuid.get(key) if isinstance(key, str) else None
        return job_id if job_id in self._jobs else None
