"""Batches: many jobs run at once, watched as one, with callbacks when they are done.

``kashq.batch([...]).name("import").then(cb).catch(cb).finally_(cb).dispatch()``
stores the batch (:mod:`kashq.workflows.batches`), then pushes its jobs, each
carrying the batch's id (the envelope's ``batch`` field). Every job's end is
counted by id before its ack; the count that makes a callback due pushes it
(:mod:`kashq.workflows.batches.callbacks`):

- ``then``: every job completed (not after a cancel);
- ``catch``: the first job failed for good (and, unless ``allow_failures()``,
  the batch is cancelled: its jobs not yet started end ``cancelled``);
- ``finally``: every job has ended, whichever way.

A chain in the list (``[A(), [B(), C()]]`` or ``kashq.chain([...])``) runs as a
chain inside the batch; each of its jobs counts. ``finally`` is a Python keyword,
hence ``finally_``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from kashq import tracing
from kashq.envelope import Envelope, decode, new_job_id
from kashq.events.base import BATCH_CANCELLED, BATCH_TYPE
from kashq.exceptions import JobDefinitionError, KashqError
from kashq.job import Dispatchable, NamedJob
from kashq.names import check_queue_name
from kashq.registry import REGISTRY
from kashq.workflows.batches.base import BatchRecord, BatchStore
from kashq.workflows.batches.steps import StepSink, step
from kashq.workflows.chain import (
    CHAIN_ID,
    FAILED_ERROR,
    FAILED_JOB_ID,
    FAILED_JOB_TYPE,
    Callback,
    PendingChain,
    as_object,
    callback_job,
    derived_id,
)

if TYPE_CHECKING:
    from kashq.drivers.base import Driver
    from kashq.middleware import JobContext
    from kashq.results.base import ResultStore

Member = Dispatchable | PendingChain | Sequence[Dispatchable]
"""What a batch holds: jobs, and chains (a list of jobs, or ``kashq.chain([...])``)."""
EnvelopeFor = Callable[[Dispatchable], Envelope]
START_BATCH = "kashq.start_batch"
"""The job type of a chain step that starts a batch."""


class PendingBatch:
    """A batch being built: ``kashq.batch([...])``; :meth:`dispatch` sends it."""

    def __init__(self, jobs: Sequence[Member]) -> None:
        self.members = [_member(job) for job in jobs]
        self.label = ""
        self.queue: str | None = None
        self.connection: str | None = None
        self.failures_allowed = False
        self.callbacks: dict[str, list[Dispatchable]] = {"then": [], "catch": [], "finally": []}

    def name(self, name: str) -> PendingBatch:
        """A name to tell the batch by (``queue:batches`` shows it)."""
        if not isinstance(name, str) or len(name) > 255:
            raise JobDefinitionError(f"a batch name is text of up to 255 characters, got {name!r}")
        self.label = name
        return self

    def then(self, callback: Callback) -> PendingBatch:
        """Run ``callback`` once every job of the batch has completed."""
        self.callbacks["then"].append(callback_job(callback))
        return self

    def catch(self, callback: Callback) -> PendingBatch:
        """Run ``callback`` once, when the first job of the batch fails for good."""
        self.callbacks["catch"].append(callback_job(callback))
        return self

    def finally_(self, callback: Callback) -> PendingBatch:
        """Run ``callback`` once every job has ended, completed or not (Laravel's ``finally``)."""
        self.callbacks["finally"].append(callback_job(callback))
        return self

    def allow_failures(self, allow: bool = True) -> PendingBatch:
        """Keep running the batch's other jobs after one fails for good (by default the
        first failure cancels the batch)."""
        self.failures_allowed = allow
        return self

    def on_queue(self, queue: str) -> PendingBatch:
        """Run the batch's jobs and callbacks on ``queue``, except those naming their own."""
        self.queue = check_queue_name(queue)
        return self

    def on_connection(self, connection: str) -> PendingBatch:
        """Run the whole batch on the named connection (its jobs may not name another)."""
        self.connection = connection
        return self

    def dispatch(self) -> Batch:
        """Store the batch, then push its jobs; the :class:`Batch`, to watch it."""
        from kashq.dispatcher import get_dispatcher

        return get_dispatcher().dispatch_batch(self)  # type: ignore[no-any-return]

    def jobs(self) -> list[Dispatchable]:
        """Every job of the batch, a chain's steps in order."""
        return [job for chain in self.members for job in chain.flat()]

    # -- for dispatchers ------------------------------------------------
    def connection_name(self) -> str | None:
        """The one connection of the batch; a job naming another is an error."""
        names = {job.target_connection() for job in self.jobs()} - {None}
        names |= {self.connection} - {None}
        if len(names) > 1:
            raise JobDefinitionError(
                f"a batch runs on one connection, but its jobs name {sorted(map(str, names))}"
            )
        return next(iter(names), None)

    def build(
        self, envelope_for: EnvelopeFor, now: float
    ) -> tuple[BatchRecord, list[Envelope], list[str]]:
        """The batch's record, its jobs' envelopes (a chain: its first job's) and the ids
        of all its jobs (a chain's every step), in dispatch order."""
        if not self.members:
            raise JobDefinitionError("a batch needs at least one job")
        batch_id = new_job_id()
        heads = [self._chain(chain, envelope_for, batch_id) for chain in self.members]
        record = BatchRecord(
            batch_id, self.label, 0, now, options=self.options(envelope_for),
            allow_failures=self.failures_allowed,
        )  # fmt: skip
        ids = member_ids(heads)
        return dataclasses.replace(record, total=len(ids)), heads, ids

    def chain_step(
        self,
        envelope_for: EnvelopeFor,
        step_id: str,
        after: Envelope | None,
        catch: list[Envelope],
        chain_id: str,
    ) -> Envelope:
        """The step of a chain that starts this batch (:func:`start_batch`): the chain goes on
        with ``after`` as the batch's ``then``, and runs ``catch`` if one of its jobs fails."""
        batch_id = derived_id(step_id, "batch")
        heads = [self._chain(chain, envelope_for, batch_id) for chain in self.members]
        options = json.loads(self.options(envelope_for))
        if after is not None:
            options.setdefault("then", []).append(as_object(after))
        for env in catch:
            env.metadata.update({
                CHAIN_ID: chain_id, FAILED_JOB_ID: batch_id, FAILED_JOB_TYPE: BATCH_TYPE,
                FAILED_ERROR: "a job of the batch failed for good",
            })  # fmt: skip
            options.setdefault("catch", []).append(as_object(env))
        spec = {
            "id": batch_id, "name": self.label, "allow_failures": self.failures_allowed,
            "options": json.dumps(options, separators=(",", ":")),
            "jobs": [as_object(env) for env in heads], "ids": member_ids(heads),
        }  # fmt: skip
        env = envelope_for(NamedJob(START_BATCH, spec))
        env.id = step_id
        if self.queue is not None:
            env.queue = self.queue
        return env

    def options(self, envelope_for: EnvelopeFor) -> str:
        data: dict[str, Any] = {
            key: [as_object(self._queued(job, envelope_for)) for job in jobs]
            for key, jobs in self.callbacks.items()
            if jobs
        }
        if self.queue is not None:
            data["queue"] = self.queue
        return json.dumps(data, separators=(",", ":"))

    def _queued(self, job: Dispatchable, envelope_for: EnvelopeFor) -> Envelope:
        env = envelope_for(job)
        if self.queue is not None and not (job._opts().queue or type(job).queue):
            env.queue = self.queue
        return env

    def _chain(self, chain: PendingChain, envelope_for: EnvelopeFor, batch_id: str) -> Envelope:
        def in_batch(job: Dispatchable) -> Envelope:
            env = self._queued(job, envelope_for)
            env.batch = batch_id
            return env

        if chain.queue is None and self.queue is not None:
            chain.queue = self.queue
        first = chain.jobs[0]
        if len(chain.jobs) == 1 and not chain.callbacks and isinstance(first, Dispatchable):
            return in_batch(first)
        return chain.envelopes(in_batch)


class Batch:
    """A dispatched batch, as last read: ``kashq.find_batch(id)``, ``dispatch()``'s answer,
    or ``self.batch()`` inside one of its jobs. :meth:`fresh` reads it again."""

    def __init__(
        self,
        record: BatchRecord,
        store: BatchStore,
        driver: Driver,
        envelope_for: EnvelopeFor,
        now: Callable[[], float],
        *,
        steps: StepSink | None = None,
        results: Callable[[], ResultStore] | None = None,
    ) -> None:
        """``steps`` takes the batch's cancel to the event log (the manager's recorder);
        ``results`` gives the connection's result store (default: the driver's)."""
        self.record = record
        self._store = store
        self._driver = driver
        self._envelope_for = envelope_for
        self._now = now
        self._steps = steps
        self._results = results

    id = property(lambda self: self.record.id)
    name = property(lambda self: self.record.name)
    total = property(lambda self: self.record.total, doc="Jobs in the batch.")
    pending = property(lambda self: self.record.pending, doc="Jobs not ended yet.")
    processed = property(lambda self: self.record.done, doc="Jobs that completed.")
    failed = property(lambda self: self.record.failed, doc="Jobs failed for good (now).")
    created_at = property(lambda self: self.record.created_at)
    finished_at = property(lambda self: self.record.finished_at)
    cancelled_at = property(lambda self: self.record.cancelled_at)

    @property
    def finished(self) -> bool:
        """Every job has ended (completed, failed or cancelled)."""
        return self.record.finished_at is not None

    @property
    def cancelled(self) -> bool:
        """The batch was cancelled (``cancel()``, or a failure without ``allow_failures``)."""
        return self.record.cancelled_at is not None

    def progress(self) -> int:
        """The share of jobs that completed, in percent (0-100), as Laravel's ``progress()``."""
        return 100 if self.total == 0 else self.processed * 100 // self.total

    def fresh(self) -> Batch:
        """The batch as stored now."""
        record = self._store.get(self.id)
        if record is None:
            raise KashqError(f"batch {self.id} is gone (pruned)")
        return Batch(
            record, self._store, self._driver, self._envelope_for, self._now,
            steps=self._steps, results=self._results,
        )  # fmt: skip

    def failed_job_ids(self) -> list[str]:
        """The ids of the jobs that failed for good (in ``failed_jobs``), in dispatch order."""
        return self._store.member_ids(self.id, "failed")

    def job_ids(self) -> list[str]:
        """The ids of every job of the batch, in dispatch order."""
        return self._store.member_ids(self.id)

    def results(self) -> list[Any]:
        """What each job returned, in dispatch order (None for a job that returned nothing,
        has not completed, or whose result is no longer kept): a chord's input."""
        from kashq.results import store_for
        from kashq.status import typed_value

        results = store_for(self._driver) if self._results is None else self._results()
        values = []
        for job_id in self.job_ids():
            record = results.get(job_id)
            done = record is not None and record.status == "completed" and record.value is not None
            values.append(typed_value(record.job_type, record.value) if done else None)  # type: ignore[union-attr, arg-type]
        return values

    def cancel(self) -> Batch:
        """Cancel the batch: its jobs not yet started end ``cancelled`` (on every worker
        within about a second); running ones see ``self.batch().cancelled``."""
        from kashq.halts import CANCEL_MARK_TTL_S, batch_record, batch_value

        now = self._now()
        record = self._store.cancel(self.id, now)
        if record is None:
            raise KashqError(f"batch {self.id} is gone (pruned)")
        if record.finished_at is None:
            self._driver.put_control(
                batch_record(self.id), batch_value(self.id, now), CANCEL_MARK_TTL_S
            )
            if self._steps is not None:
                self._steps(step(BATCH_CANCELLED, record, now))
        self.record = record
        return self

    def add(self, jobs: Sequence[Member]) -> Batch:
        """Add jobs (or chains) to the batch while it runs: counted first, then pushed."""
        adding = PendingBatch(jobs)
        options = json.loads(self.record.options)
        adding.queue = options.get("queue")
        heads = [adding._chain(chain, self._envelope_for, self.id) for chain in adding.members]
        self.record = self._store.add(self.id, member_ids(heads))
        self._driver.push_many(heads)
        return self

    def __repr__(self) -> str:
        r = self.record
        counts = f"total={r.total}, pending={r.pending}, failed={r.failed}"
        return f"Batch({r.id!r}, name={r.name!r}, {counts})"


def start_batch(envelope: Envelope) -> None:
    """The chain step that starts a batch (``kashq.chain([A(), kashq.batch([...]), B()])``):
    stores the batch unless a delivery before did, and pushes its jobs once each."""
    from kashq.middleware import current
    from kashq.workflows.batches import store_for

    context = current()
    spec: dict[str, Any] = envelope.payload
    store = store_for(context.driver) if context.batches_of is None else context.batches_of()
    now = context.clock.time()
    if store.get(spec["id"]) is None:
        record = BatchRecord(
            spec["id"], spec["name"], len(spec["ids"]), now, options=spec["options"],
            allow_failures=spec["allow_failures"],
        )  # fmt: skip
        store.create(record, list(spec["ids"]))
    heads = []
    for head in spec["jobs"]:
        job = decode(json.dumps(head))
        delay_s = max(job.available_at - job.created_at, 0.0)
        heads.append(dataclasses.replace(job, created_at=now, available_at=now + delay_s))
    tracing.forward(heads, lambda: [context.driver.push_once(job) for job in heads])


REGISTRY.add(START_BATCH, start_batch, is_handler=True)


def batch_of(context: JobContext | None) -> Batch | None:
    """The batch of the job running in ``context`` (see :meth:`kashq.Job.batch`)."""
    from kashq.manager import manager
    from kashq.workflows.batches.callbacks import BATCH_ID

    if context is None or context.batches_of is None:
        return None
    env = context.envelope
    batch_id = env.batch or env.metadata.get(BATCH_ID)
    if batch_id is None:
        return None
    store = context.batches_of()
    record = store.get(batch_id)
    if record is None:
        return None
    return Batch(
        record, store, context.driver, manager().envelope_for, context.clock.time,
        results=context.results_of,
    )  # fmt: skip


def member_ids(heads: Sequence[Envelope]) -> list[str]:
    """The ids of the jobs ``heads`` start: each one's, then its chain's steps'."""
    ids = []
    for env in heads:
        ids.append(env.id)
        ids += [str(step["id"]) for step in (env.chain.next if env.chain else ())]
    return ids


def _member(job: object) -> PendingChain:
    if isinstance(job, PendingChain):
        return job
    if isinstance(job, Dispatchable):
        return PendingChain([job])
    if isinstance(job, (list, tuple)):
        return PendingChain(job)
    raise JobDefinitionError(f"a batch takes jobs and chains (lists of jobs), got {job!r}")
