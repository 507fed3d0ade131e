"""A batch's record and the one rule that counts its jobs, shared by every batch store.

A batch counts its jobs by id, each at most once per outcome: a job delivered
twice (at least once, as every job) ends twice but is counted once. A member
moves from pending to ``done`` (completed), ``failed`` (failed for good) or
``cancelled`` (cancelled or expired), and only one move comes back: from
``failed`` (or ``cancelled``: the steps of a chain that stopped at a failure)
to ``done``, when ``queue:retry-batch`` re-runs it and it completes.

The change that makes a callback due sets its bit in ``due``, atomically with
the count, so exactly one count wins each callback; the worker that won pushes
it (with ``push_once``: a retry of that push is harmless) and sets its bit in
``pushed``. A bit due and not pushed is a worker about to push it, or one that
died in between: the sweep pushes it again, harmlessly in the first case.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from kashq.exceptions import DriverError

MemberState = Literal["done", "failed", "cancelled"]


class Callbacks(enum.IntFlag):
    """A batch's callbacks, as bits of ``due`` and ``pushed``."""

    THEN = 1
    CATCH = 2
    FINALLY = 4


class BatchStoreError(DriverError):
    """The batch store failed (a one-line message naming the store)."""


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One batch as stored: its counts, its callbacks' state, its times.

    ``options`` is JSON text the store keeps as it is: the callbacks' envelopes
    and the batch's queue and connection (:class:`kashq.workflows.batch.PendingBatch`).
    """

    id: str
    name: str
    total: int
    created_at: float
    options: str = "{}"
    allow_failures: bool = False
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    due: int = 0
    pushed: int = 0
    cancelled_at: float | None = None
    finished_at: float | None = None

    @property
    def pending(self) -> int:
        """Jobs that have not ended yet (waiting or running)."""
        return self.total - self.done - self.failed - self.cancelled


@dataclass(frozen=True, slots=True)
class Counted:
    """What one count changed: the record after it, and the callbacks it made due."""

    record: BatchRecord
    due: Callbacks
    cancelled: bool  # this count cancelled the batch (a failure, failures not allowed)


def count(
    record: BatchRecord, old: MemberState | None, new: MemberState, now: float
) -> Counted | None:
    """The batch after a member moved from ``old`` (None: pending) to ``new``; None if that
    is no move (counted already). The rule every store applies, in one atomic step."""
    if old is not None and not (old != "done" and new == "done"):
        return None
    changes = {new: getattr(record, new) + 1}
    if old is not None:
        changes[old] = getattr(record, old) - 1
    after = dataclasses.replace(record, **changes)
    return settle(after, failure=new == "failed", now=now)


def count_all(
    record: BatchRecord, olds: dict[str, MemberState | None], new: MemberState, now: float
) -> Counted | None:
    """:func:`count` for several members (job id → its state before): the batch after all
    of them moved, with every callback they made due; None if none moved."""
    due, cancelled, moved = Callbacks(0), False, False
    for old in olds.values():
        counted = count(record, old, new, now)
        if counted is not None:
            record, moved = counted.record, True
            due, cancelled = due | counted.due, cancelled or counted.cancelled
    return Counted(record, due, cancelled) if moved else None


def settle(record: BatchRecord, *, failure: bool, now: float) -> Counted:
    """``record`` with the callbacks its counts now make due, once each, and its end."""
    due = Callbacks(0)
    if failure:
        due |= Callbacks.CATCH
    if record.done == record.total and record.cancelled_at is None:
        due |= Callbacks.THEN
    if record.pending == 0:
        due |= Callbacks.FINALLY
    due &= ~Callbacks(record.due)
    cancel = failure and not record.allow_failures and record.cancelled_at is None
    finished = record.finished_at if record.finished_at is not None or record.pending else now
    return Counted(
        dataclasses.replace(
            record,
            due=record.due | due,
            cancelled_at=now if cancel else record.cancelled_at,
            finished_at=finished,
        ),
        due,
        cancel,
    )


class BatchStore(Protocol):
    """Where a connection keeps its batches (see :func:`kashq.workflows.batches.store_for`)."""

    def create(self, record: BatchRecord, member_ids: list[str]) -> None:
        """Store a new batch and the ids of its jobs, in dispatch order."""
        ...

    def add(self, batch_id: str, member_ids: list[str]) -> BatchRecord:
        """Count more jobs in a batch (before they are pushed); :class:`BatchStoreError`
        if it is unknown or has finished."""
        ...

    def count(
        self, batch_id: str, job_ids: Sequence[str], state: MemberState, now: float
    ) -> Counted | None:
        """Record that members ``job_ids`` ended ``state``, atomically with the batch's
        counts and due callbacks; None if none changed (each counted already, or the batch
        is unknown). The record's ``options`` are read only when a callback fell due."""
        ...

    def mark_pushed(self, batch_id: str, callbacks: Callbacks) -> None:
        """The ``callbacks`` of the batch have been pushed."""
        ...

    def get(self, batch_id: str) -> BatchRecord | None: ...

    def member_ids(self, batch_id: str, state: MemberState | None = None) -> list[str]:
        """The batch's job ids in dispatch order; with ``state``, only those that ended so."""
        ...

    def cancel(self, batch_id: str, now: float) -> BatchRecord | None:
        """Mark the batch cancelled (nothing if it has finished); the record, None if unknown."""
        ...

    def recent(self, limit: int, before: float | None = None) -> list[BatchRecord]:
        """Batches newest first; ``before``: only those created earlier (a page's cursor)."""
        ...

    def unsettled(self) -> list[BatchRecord]:
        """Batches with a callback due and not pushed (for the sweep: pushing one a worker
        is pushing too is harmless, both go through ``push_once``)."""
        ...

    def prune(self, finished_before: float) -> int:
        """Delete the batches that finished before ``finished_before``; how many."""
        ...


@runtime_checkable
class ReadsRidingCounts(Protocol):
    """A batch store whose counts a driver's reserve can make (Redis: see
    :class:`kashq.drivers.base.RidingCounts`), and that reads their replies."""

    def counted_reply(self, batch_id: str, reply: Any) -> Counted | None:
        """What a count of ``batch_id`` made by a reserve changed; None if nothing."""
        ...

    def eventful_reply(self, reply: Any) -> bool:
        """Whether that count made a callback due or cancelled its batch (else it only
        changed counts: reading the whole record can wait for a progress event)."""
        ...
