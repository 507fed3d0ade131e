"""Counting how batch jobs end, for one worker: before each job's ack.

A worker that sends its acks with its next reserve (``queue:work``) counts its
completed batch jobs the same way: they wait in :meth:`BatchCounter.later` and
are counted together, one call per batch, just before those acks are sent
(:meth:`BatchCounter.flush`), or on plain Redis by that very reserve, in the
script that sends the acks (:meth:`BatchCounter.reserve`). A worker process
that dies with some of them waiting leaves them completed in its slot, and
whoever acknowledges them for it counts them first
(:func:`kashq.supervisor.control.settle_left_behind`).

A count that makes callbacks due pushes them (:mod:`kashq.workflows.batches.callbacks`);
one that cancels its batch (a failure, failures not allowed) writes the batch's
halt record, so its jobs not yet started end ``cancelled`` on every worker.
A store that cannot be reached raises: the caller leaves the job unacknowledged
(or parks its failure), so it is counted when it comes back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from kashq.clock import Clock
from kashq.drivers.base import (
    BatchReserving,
    CountingReserve,
    Driver,
    Reservation,
    RidingCounts,
)
from kashq.envelope import Envelope
from kashq.events import base as events
from kashq.exceptions import DriverError
from kashq.halts import CANCEL_MARK_TTL_S, batch_record, batch_value
from kashq.workflows.batches import BatchStore, Callbacks, Counted, MemberState
from kashq.workflows.batches.base import ReadsRidingCounts
from kashq.workflows.batches.callbacks import push_due, sweep
from kashq.workflows.batches.steps import StepSink, step

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 1.0  # a batch's progress events from one worker: at most one a second
_SEEN_MAX = 1024  # batches whose last progress event a worker remembers
HOLD_JOBS = 50  # completed batch jobs one thread holds to count as a group (see hold)...
HOLD_S = 0.1  # ...at most, and for at most this long


class BatchCounter:
    """Counts the end of each batch job a worker settles."""

    def __init__(self, driver: Driver, store_of: Callable[[], BatchStore], clock: Clock) -> None:
        self._driver = driver
        self._store_of = store_of
        self._clock = clock
        self.steps: StepSink | None = None  # the event log's, when it is on
        self._waiting = threading.local()  # each thread's completed jobs, by batch, to count
        self._progress_at: dict[str, float] = {}  # batch id -> its last progress event

    def ended(self, env: Envelope, state: MemberState) -> None:
        """Count that batch job ``env`` ended ``state`` (nothing for a job of no batch)."""
        if env.batch is not None:
            self.count(env.batch, [env.id], state)

    def counted(self, env: Envelope) -> bool:
        """Count completed batch job ``env`` now; False (logged) if its store cannot be
        reached: the job is then left unacknowledged, and counted when it comes back."""
        try:
            self.ended(env, "done")
        except DriverError as exc:
            log.warning(
                "could not count job %s in batch %s (%s); it will be delivered again",
                env.id, env.batch, exc,
            )  # fmt: skip
            return False
        return True

    def sweep(self) -> None:
        """Push the batch callbacks a worker made due and died before pushing."""
        try:
            if pushed := sweep(self._driver, self._store_of(), self._clock.time()):
                log.info("pushed the due callbacks of %d batch(es) left unpushed", pushed)
        except DriverError as exc:
            log.warning("could not sweep the batches (%s); the next sweep tries again", exc)

    def later(self, env: Envelope) -> None:
        """Count completed batch job ``env`` at this thread's next :meth:`flush`."""
        waiting = getattr(self._waiting, "jobs", None)
        if waiting is None:
            waiting = self._waiting.jobs = {}
            self._waiting.fresh, self._waiting.held = [], []
        waiting.setdefault(env.batch, []).append(env.id)
        self._waiting.fresh.append(env.id)

    def hold(self, acks: list[Reservation]) -> list[Reservation]:
        """Take this thread's batch jobs completed since the last call out of ``acks``,
        and hold them; the jobs held.

        For a driver that acknowledges one job per reserve (a database): the held jobs
        are counted and acknowledged as a group, once :meth:`hold_left_s` says so
        (:meth:`release`), so their counts cost a transaction per group, not per job.
        """
        fresh: list[str] | None = getattr(self._waiting, "fresh", None)
        if not fresh:
            return getattr(self._waiting, "held", None) or []
        held: list[Reservation] = self._waiting.held
        if not held:
            self._waiting.since = time.monotonic()
        ids = set(fresh)
        fresh.clear()
        held += [res for res in acks if res.id in ids]
        acks[:] = [res for res in acks if res.id not in ids]
        return held

    def hold_left_s(self) -> float | None:
        """How much longer this thread's held jobs may wait (0: :meth:`release` them
        now); None if it holds none."""
        held = getattr(self._waiting, "held", None)
        if not held:
            return None
        if len(held) >= HOLD_JOBS:
            return 0.0
        since: float = self._waiting.since
        return max(0.0, HOLD_S - (time.monotonic() - since))

    def release(self) -> list[Reservation]:
        """Count the held jobs (one call per batch); those counted, to acknowledge now
        (one that could not be counted is left unacknowledged: counted when it comes back)."""
        acks: list[Reservation] = []
        self.flush(acks)
        return acks

    def flush(self, acks: list[Reservation]) -> None:
        """Count this thread's completed batch jobs, one call per batch, before ``acks``
        are sent (the held ones join ``acks``); one that could not be counted (its store
        is unreachable) is taken out of ``acks``: not acknowledged, it is delivered again
        and counted then."""
        waiting: dict[str, list[str]] | None = getattr(self._waiting, "jobs", None)
        if not waiting:
            return
        acks += self._waiting.held
        self._reset()
        missed: set[str] = set()
        for batch_id, job_ids in waiting.items():
            try:
                self.count(batch_id, job_ids, "done")
            except DriverError as exc:
                log.warning(
                    "could not count %d job(s) in batch %s (%s); they will be delivered again",
                    len(job_ids), batch_id, exc,
                )  # fmt: skip
                missed.update(job_ids)
        if missed:
            acks[:] = [res for res in acks if res.id not in missed]

    def reserve(
        self,
        driver: BatchReserving,
        queues: Sequence[str],
        acks: list[Reservation],
        *,
        lease_s: float,
        wait_s: float,
        limit: int,
    ) -> list[Reservation]:
        """``driver.reserve_batch``, acknowledging ``acks``, with this thread's completed
        batch jobs counted first: in the reserve's own step where the driver can (plain
        Redis: no extra round trip), else by :meth:`flush` just before it."""
        waiting: dict[str, list[str]] | None = getattr(self._waiting, "jobs", None)
        if waiting:
            jobs = sum(map(len, waiting.values()))
            if isinstance(driver, CountingReserve) and driver.counts_ride(queues[0], acks, jobs):
                counts = RidingCounts(waiting, self._clock.time())
                found = driver.reserve_batch(
                    queues, lease_s=lease_s, wait_s=wait_s, acks=acks, limit=limit, counts=counts
                )
                self._rode(counts)
                return found
            self.flush(acks)
        return driver.reserve_batch(queues, lease_s=lease_s, wait_s=wait_s, acks=acks, limit=limit)

    def _reset(self) -> None:
        """Nothing of this thread's waits to be counted any more."""
        self._waiting.jobs, self._waiting.fresh, self._waiting.held = {}, [], []

    def _rode(self, counts: RidingCounts) -> None:
        """A reserve counted ``counts`` (and acknowledged their jobs): push the callbacks
        that made due (if that fails, the sweep pushes them)."""
        self._reset()
        store = self._store_of()
        if counts.replies is None or not isinstance(store, ReadsRidingCounts):
            raise TypeError("a reserve that counts batch jobs, for a store that reads its replies")
        for batch_id, reply in counts.replies.items():
            if reply is None or not (
                store.eventful_reply(reply) or self._progress_due(batch_id, counts.now)
            ):
                continue  # counts changed, nothing to act on or tell
            try:
                self._counted(batch_id, store.counted_reply(batch_id, reply), counts.now)
            except DriverError as exc:
                log.warning(
                    "could not push the callbacks of batch %s (%s); the sweep will", batch_id, exc
                )

    def count(self, batch_id: str, job_ids: list[str], state: MemberState) -> None:
        """Count ``job_ids`` of ``batch_id`` ended ``state``; push what that made due."""
        now = self._clock.time()
        self._counted(batch_id, self._store_of().count(batch_id, job_ids, state, now), now)

    def _counted(self, batch_id: str, counted: Counted | None, now: float) -> None:
        """Act on a count: halt a batch it cancelled, push the callbacks it made due."""
        if counted is None:
            return
        store = self._store_of()
        if counted.cancelled:
            value = batch_value(batch_id, now)
            self._driver.put_control(batch_record(batch_id), value, CANCEL_MARK_TTL_S)
        if counted.due:
            push_due(self._driver, store, counted.record, counted.due, now)
        if self.steps is not None:
            self._record(counted, now)

    def _progress_due(self, batch_id: str, now: float) -> bool:
        """Whether the event log (if on) is due a progress event of ``batch_id``."""
        last = self._progress_at.get(batch_id, -PROGRESS_EVERY_S)
        return self.steps is not None and now - last >= PROGRESS_EVERY_S

    def _record(self, counted: Counted, now: float) -> None:
        """Tell the event log: the batch finished or was cancelled now, or (at most once a
        second per batch) how far it got."""
        record, sink = counted.record, self.steps
        assert sink is not None
        if counted.cancelled:
            sink(step(events.BATCH_CANCELLED, record, now))
        if counted.due & Callbacks.FINALLY:  # due exactly when its last job ended
            self._progress_at.pop(record.id, None)
            sink(step(events.BATCH_FINISHED, record, now))
        elif self._progress_due(record.id, now):
            if len(self._progress_at) >= _SEEN_MAX:
                self._progress_at.clear()
            self._progress_at[record.id] = now
            sink(step(events.BATCH_PROGRESS, record, now))
