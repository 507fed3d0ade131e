"""The failed-job store protocol; what a failed job is and how it is reached: :mod:`kashq.failed`.

The worker writes through :class:`FailedJobStore`; the memory implementation
lives beside this module and the database table (``failed_jobs``) implements
the same protocol.
``log`` keeps one record per ``uuid``: a job delivered twice and failed twice
is recorded once, and a later failure of the same job (after ``queue:retry``)
replaces the earlier record. ``forget(key, failed_at=...)`` deletes a record
only if it is still that failure, so a retry never deletes the record of the
failure that followed it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol


@dataclass(frozen=True, slots=True)
class FailedJob:
    """One permanently failed job.

    ``payload`` is the full envelope as JSON text (what ``queue:retry`` pushes
    back), or the raw stored text when that could not be decoded. ``error`` is
    a one-line message; ``exception`` the traceback; ``reason`` why it was
    not retried again (a :class:`~kashq.StopReason` value, empty for records
    from before reasons were kept). ``id`` is assigned by the store (0 before
    logging).
    """

    uuid: str
    connection: str
    queue: str
    job_type: str
    payload: str
    error: str
    exception: str
    attempts: int
    failed_at: datetime
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    id: int = 0
    reason: str = ""


NO_SUCH_ID = -1
"""What :func:`numeric_id` gives for a number too long to be any store's id."""


def numeric_id(key: int | str) -> int | None:
    """The numeric id ``key`` names (an int or a digit string), or None for a uuid.

    A digit string longer than any 64-bit id gives :data:`NO_SUCH_ID` (and
    never reaches ``int()``, which refuses thousands of digits).
    """
    if isinstance(key, int):
        return key
    if not (key.isascii() and key.isdigit()):
        return None
    return int(key) if len(key.lstrip("0")) <= 19 else NO_SUCH_ID


def utc_from_timestamp(ts: float) -> datetime:
    """A timezone-aware UTC datetime for Unix seconds."""
    return datetime.fromtimestamp(ts, tz=timezone.utc)


@dataclass(frozen=True, slots=True)
class FailedFilter:
    """Which failed jobs a listing or count takes: of one queue and job type, whose error
    contains ``error`` (any case), failed at or after ``since`` and before ``until``."""

    queue: str | None = None
    job_type: str | None = None
    error: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, job: FailedJob) -> bool:
        """Whether ``job`` is one of them."""
        return (
            (self.queue is None or job.queue == self.queue)
            and (self.job_type is None or job.job_type == self.job_type)
            and (self.error is None or self.error.casefold() in job.error.casefold())
            and (self.since is None or job.failed_at >= self.since)
            and (self.until is None or job.failed_at < self.until)
        )


class FailedJobStore(Protocol):
    """Record, list and remove failed jobs."""

    def log(self, job: FailedJob) -> FailedJob:
        """Record ``job`` with its id set; a record with its uuid is kept, or replaced if older."""
        ...

    def all(self, *, queue: str | None = None, limit: int | None = None) -> list[FailedJob]:
        """Failed jobs, newest first, optionally of one queue."""
        ...

    def find(self, key: int | str) -> FailedJob | None:
        """A failed job by numeric id or by uuid."""
        ...

    def page(
        self,
        *,
        queue: str | None = None,
        job_type: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
        where: FailedFilter | None = None,
    ) -> list[FailedJob]:
        """Up to ``limit`` failed jobs whose id is below ``before_id`` (all, when None), newest
        (highest id) first, optionally of one queue and job type, or as ``where`` says: one
        query, so a listing walks the table a page at a time."""
        ...

    def between(
        self, first_id: int, last_id: int, *, queue: str | None = None, limit: int | None = None
    ) -> list[FailedJob]:
        """Failed jobs whose ids are ``first_id`` to ``last_id`` (inclusive), by id.

        One query however wide the range (ids that do not exist cost nothing);
        ``limit`` returns the first ones only, for walking a range in chunks.
        """
        ...

    def forget(self, key: int | str, *, failed_at: datetime | None = None) -> bool:
        """Delete one failed job (only if it failed at ``failed_at``, when given); False if none."""
        ...

    def forget_many(self, ids: Sequence[int]) -> int:
        """Delete the failed jobs with these numeric ids; returns how many there were."""
        ...

    def flush(self, *, older_than_hours: float | None = None) -> int:
        """Delete all failed jobs, or those older than the given hours; returns how many."""
        ...

    def prune(self, before: datetime, *, chunk_size: int = 1000) -> int:
        """Delete failed jobs that failed before ``before``, in chunks; returns how many."""
        ...

    def count(self, *, queue: str | None = None, where: FailedFilter | None = None) -> int:
        """How many failed jobs there are, optionally in one queue, or as ``where`` says."""
        ...

    def counts_by_queue(self) -> dict[str, int]:
        """How many failed jobs each queue has (queues with none are absent)."""
        ...

    def close(self) -> None:
        """Release the connections the store opened; a store holding none does nothing."""
        ...
