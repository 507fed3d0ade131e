"""The in-process result store: a dict guarded by a condition, for memory/sync drivers and tests.

Records expire on the given clock (the driver's, possibly fake): an expired
one is dropped when it is read, and :meth:`~MemoryResultStore.put` sweeps them
all at most once per second of that clock (a sweep reads every record), so the
dict never outgrows the results still alive by more than a second's worth.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.results.base import Progress, StoredResult

_SWEEP_EVERY_S = 1.0


class MemoryResultStore:
    """Job results held in this process's memory (thread-safe)."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._records: dict[str, StoredResult] = {}
        self._cond = threading.Condition()
        self._swept_at = float("-inf")

    def put(self, result: StoredResult, ttl_s: float) -> None:
        if result.status is None:
            raise ValueError("put stores an outcome: result.status must be set")
        with self._cond:
            now = self._clock.time()
            if now - self._swept_at >= _SWEEP_EVERY_S:
                self._sweep(now)
            kept = self._records.get(result.job_id)
            self._records[result.job_id] = dataclasses.replace(
                result,
                progress=kept.progress if kept else None,
                message=kept.message if kept else "",
                progress_at=kept.progress_at if kept else None,
                expires_at=now + ttl_s,
            )
            self._cond.notify_all()

    def put_progress(self, updates: Sequence[Progress], ttl_s: float) -> None:
        with self._cond:
            now = self._clock.time()
            if now - self._swept_at >= _SWEEP_EVERY_S:
                self._sweep(now)
            for update in updates:
                kept = self._alive(update.job_id, now)
                if kept is None:
                    kept = StoredResult(update.job_id)
                elif kept.progress_at is not None and update.at < kept.progress_at:
                    continue  # a newer report is stored
                # Progress only lengthens a progress-only record; an outcome keeps its TTL.
                expires_at = kept.expires_at if kept.status else max(kept.expires_at, now + ttl_s)
                self._records[update.job_id] = dataclasses.replace(
                    kept,
                    progress=update.fraction,
                    message=update.message,
                    progress_at=update.at,
                    expires_at=expires_at,
                )

    def get(self, job_id: str) -> StoredResult | None:
        with self._cond:
            return self._alive(job_id, self._clock.time())

    def wait(self, job_id: str, timeout_s: float) -> StoredResult | None:
        """The outcome of ``job_id`` as soon as it is put, or None after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                found = self._alive(job_id, self._clock.time())
                if found is not None and found.status is not None:
                    return found
                left_s = deadline - time.monotonic()
                if left_s <= 0:
                    return None
                self._cond.wait(left_s)

    def prune(self) -> int:
        with self._cond:
            return self._sweep(self._clock.time())

    def close(self) -> None:
        """Nothing to release: the results stay for later readers of this store."""

    def __len__(self) -> int:
        """How many records are held, expired ones not yet dropped included."""
        with self._cond:
            return len(self._records)

    def _alive(self, job_id: str, now: float) -> StoredResult | None:
        found = self._records.get(job_id)
        if found is not None and found.expires_at <= now:
            del self._records[job_id]
            return None
        return found

    def _sweep(self, now: float) -> int:
        self._swept_at = now
        expired = [job_id for job_id, r in self._records.items() if r.expires_at <= now]
        for job_id in expired:
            del self._records[job_id]
        return len(expired)
