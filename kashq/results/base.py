"""The result store's vocabulary: :class:`StoredResult`, :class:`Progress` and the protocol.

A job's outcome is kept by id for a while (its time-to-live) so that anyone
can ask "how did job X end?" or wait for it: the JSON of the value
``handle()`` returned, or the error and stop reason of a job that failed for
good. A job that returned ``None`` stores nothing (that costs a write per
job); its end is seen by the job leaving its queue. Progress reported by a
running job is kept in the same record, written in batches by the event
recorder, so a final outcome written later keeps it and a late progress
write never hides an outcome.

Every store expires records on the driver's clock and removes expired ones
itself, so results never grow storage without bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from kashq.exceptions import DriverError

Outcome = Literal["completed", "failed", "cancelled", "expired"]


class ResultStoreError(DriverError):
    """The result store could not complete an operation (its backend failed)."""


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress report of a running job: ``fraction`` of the work done (0 to 1)."""

    job_id: str
    fraction: float
    message: str = ""
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class StoredResult:
    """What the store holds of one job.

    ``status`` is None while only progress was reported. ``value`` is the JSON
    text ``handle()`` returned (``completed``); ``error`` a one-line error
    (``failed``; why a ``cancelled`` or ``expired`` job did not run; or why a
    completed job's value could not be kept); ``reason``
    the :class:`~kashq.StopReason` value of a failed job. Times are Unix
    seconds on the driver's clock.
    """

    job_id: str
    status: Outcome | None = None
    job_type: str = ""
    queue: str = ""
    value: str | None = None
    error: str = ""
    reason: str = ""
    attempts: int = 0
    finished_at: float | None = None
    progress: float | None = None
    message: str = ""
    progress_at: float | None = None
    expires_at: float = 0.0


class ResultStore(Protocol):
    """Where job outcomes and progress are kept, read and waited for."""

    def put(self, result: StoredResult, ttl_s: float) -> None:
        """Store ``result``'s outcome (``status`` set), kept for ``ttl_s`` seconds from now.

        Progress already stored for the job is kept; an earlier outcome of the
        same job is replaced (a job retried by hand ends again). Waiters wake.
        """
        ...

    def put_progress(self, updates: Sequence[Progress], ttl_s: float) -> None:
        """Store the latest progress of several jobs in one round trip.

        Never changes a stored outcome. An update older than the stored one
        (``at``) is ignored.
        """
        ...

    def get(self, job_id: str) -> StoredResult | None:
        """What is stored of ``job_id``, or None (nothing, or expired)."""
        ...

    def wait(self, job_id: str, timeout_s: float) -> StoredResult | None:
        """Block until ``job_id`` has an outcome or ``timeout_s`` passes; the result, or None.

        Wakes on a signal where the backend has one; never blocks longer than
        ``timeout_s``, even across a reconnect.
        """
        ...

    def prune(self) -> int:
        """Delete expired records now; returns how many (stores also do it on their own)."""
        ...

    def close(self) -> None:
        """Release what the store opened itself (never a connection it borrowed)."""
        ...
