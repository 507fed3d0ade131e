"""Chains: jobs that run one after another, each once the one before completed.

``kashq.chain([A(...), B(...), C(...)]).catch(Report()).dispatch()`` pushes ``A``
alone; the rest ride in its envelope's ``chain`` field (:class:`ChainState`).
When a step completes, the worker pushes the next one, before acknowledging
the step, with :meth:`~kashq.drivers.base.Driver.push_once`: each step's id is
fixed when the chain is dispatched, so a step delivered twice (its worker died
before its ack) never pushes its successor twice, even after the successor ran.
A step that fails for good ends the chain: the ``catch`` callbacks are pushed
once each (their ids derive from the chain's) and the steps after it never run.
A cancelled or expired step ends the chain too, without ``catch``.

A running step may change what follows it: :meth:`kashq.Job.prepend_to_chain`
runs a job next, :meth:`kashq.Job.append_to_chain` at the end. Those jobs' ids
derive from the running step's id and their order, so a step run twice adds
the same jobs, not new ones.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kashq.envelope import ChainState, Envelope, new_job_id
from kashq.exceptions import JobDefinitionError
from kashq.job import Dispatchable, NamedJob
from kashq.names import check_queue_name
from kashq.registry import REGISTRY

if TYPE_CHECKING:
    from kashq.middleware import JobContext
    from kashq.status import JobHandle
    from kashq.workflows.batch import PendingBatch

Callback = Dispatchable | str | Callable[..., Any]
"""What ``catch`` (and a batch's callbacks) take: a job, or the name of a
``@kashq.handler`` function, or that function itself. Never a closure: a
callback runs on a worker, which finds it in the registry by name."""

# Envelope metadata of a catch callback: the step that failed.
FAILED_JOB_ID = "kashq.failed_job_id"
FAILED_JOB_TYPE = "kashq.failed_job_type"
FAILED_ERROR = "kashq.failed_error"
CHAIN_ID = "kashq.chain_id"


def derived_id(base: str, part: str) -> str:
    """A job id made from ``base`` (a job's id) and ``part``: the same inputs always
    give the same id, shaped like a UUID (36 characters) so every driver takes it."""
    h = hashlib.sha256(f"{base}/{part}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-8{h[13:16]}-{h[16:20]}-{h[20:32]}"


@dataclass(frozen=True, slots=True)
class ChainError:
    """What a chain's ``catch`` callback caught: the job that failed for good, and why."""

    chain_id: str
    job_id: str
    job_type: str
    error: str  # one line

    @classmethod
    def of(cls, env: Envelope) -> ChainError | None:
        """The failure ``env`` (a catch callback) was pushed for; None for another job."""
        meta = env.metadata
        if CHAIN_ID not in meta:
            return None
        return cls(meta[CHAIN_ID], meta[FAILED_JOB_ID], meta[FAILED_JOB_TYPE], meta[FAILED_ERROR])


def previous_result(context: JobContext | None) -> Any:
    """What the job before ``context``'s in its chain returned (see
    :meth:`kashq.Job.previous_result`)."""
    if context is None or context.results_of is None:
        return None
    chain = context.envelope.chain
    if chain is None or chain.prev is None:
        return None
    record = context.results_of().get(chain.prev)
    if record is None or record.status != "completed" or record.value is None:
        return None
    from kashq.status import typed_value

    return typed_value(record.job_type, record.value)


class PendingChain:
    """A chain being built: ``kashq.chain([...])``; :meth:`dispatch` sends it."""

    def __init__(self, jobs: Sequence[Dispatchable | PendingBatch]) -> None:
        from kashq.workflows.batch import PendingBatch

        jobs = list(jobs)
        if not jobs:
            raise JobDefinitionError("a chain needs at least one job")
        for job in jobs:
            if not isinstance(job, (Dispatchable, PendingBatch)):
                raise JobDefinitionError(
                    f"a chain takes jobs (kashq.Job or kashq.NamedJob) and batches, got {job!r}"
                )
        self.jobs = jobs
        self.queue: str | None = None
        self.connection: str | None = None
        self.callbacks: list[Dispatchable] = []

    def on_queue(self, queue: str) -> PendingChain:
        """Run the chain's jobs on ``queue``, except jobs that name a queue of their own."""
        self.queue = check_queue_name(queue)
        return self

    def on_connection(self, connection: str) -> PendingChain:
        """Run the whole chain on the named connection (its jobs may not name another)."""
        self.connection = connection
        return self

    def catch(self, callback: Callback) -> PendingChain:
        """Run ``callback`` once if a step fails for good (see :class:`Callback`); it
        learns which step failed and why from :meth:`kashq.Job.chain_error`."""
        self.callbacks.append(callback_job(callback))
        return self

    def dispatch(self) -> JobHandle:
        """Push the first job; returns its handle (the chain's id is the first job's)."""
        from kashq.dispatcher import get_dispatcher
        from kashq.status import JobHandle

        job_id = get_dispatcher().dispatch_chain(self)
        if isinstance(job_id, JobHandle):
            return job_id
        return JobHandle(job_id, connection=self.connection_name(), dispatched=True)

    def connection_name(self) -> str | None:
        """The one connection of the chain; a job naming another is an error."""
        names = {job.target_connection() for job in self.flat()} - {None}
        names |= {self.connection} - {None}
        names |= {job.connection for job in self.jobs if not isinstance(job, Dispatchable)} - {None}
        if len(names) > 1:
            raise JobDefinitionError(
                f"a chain runs on one connection, but its jobs name {sorted(map(str, names))}"
            )
        return next(iter(names), None)

    def flat(self) -> list[Dispatchable]:
        """Every job of the chain, a batch's jobs in its place."""
        return [
            one
            for job in self.jobs
            for one in ([job] if isinstance(job, Dispatchable) else job.jobs())
        ]

    def envelopes(
        self, envelope_for: Callable[[Dispatchable], Envelope], chain_id: str | None = None
    ) -> Envelope:
        """The first job's envelope, carrying the rest of the chain.

        A batch in the chain ends the part before it: its step starts the batch
        (:func:`kashq.workflows.batch.start_batch`), whose ``then`` is the chain
        after it and whose ``catch`` the chain's ``catch``.
        """
        cut = next(
            (k for k, job in enumerate(self.jobs) if not isinstance(job, Dispatchable)), None
        )
        before = self.jobs if cut is None else self.jobs[:cut]
        steps = [self._step(job, envelope_for) for job in before if isinstance(job, Dispatchable)]
        catch = [envelope_for(job) for job in self.callbacks]
        if cut is not None:
            step_id = new_job_id()
            chain_id = chain_id or (steps[0].id if steps else step_id)
            after = None
            if cut + 1 < len(self.jobs):
                tail = PendingChain(self.jobs[cut + 1 :])
                tail.queue, tail.callbacks = self.queue, self.callbacks
                after = tail.envelopes(envelope_for, chain_id)
            batch = self.jobs[cut]
            assert not isinstance(batch, Dispatchable)
            if batch.queue is None and self.queue is not None:
                batch.queue = self.queue
            steps.append(batch.chain_step(envelope_for, step_id, after, catch, chain_id))
        head, rest = steps[0], steps[1:]
        objects = tuple(as_object(env) for env in catch)
        head.chain = ChainState(chain_id or head.id, tuple(map(as_object, rest)), objects)
        return head

    def _step(
        self, job: Dispatchable, envelope_for: Callable[[Dispatchable], Envelope]
    ) -> Envelope:
        env = envelope_for(job)
        if self.queue is not None and not (job._opts().queue or type(job).queue):
            env.queue = self.queue
        return env


def callback_job(callback: Callback) -> Dispatchable:
    """The job a callback stands for (see :data:`Callback`)."""
    if isinstance(callback, Dispatchable):
        return callback
    if isinstance(callback, str):
        name = callback
    elif callable(callback):
        found = REGISTRY.name_of(callback)
        if found is None:
            raise JobDefinitionError(
                f"callback {callback!r} is not registered: decorate it with "
                "@kashq.handler(name), or pass a job (closures cannot run on a worker)"
            )
        name = found
    else:
        raise JobDefinitionError(
            f"a callback is a job or a @kashq.handler function, got {callback!r}"
        )
    if name not in REGISTRY:
        raise JobDefinitionError(f"callback {name!r} is not a registered job type or handler")
    return NamedJob(name)


def as_object(env: Envelope) -> dict[str, Any]:
    """``env`` as the JSON object a chain carries."""
    data: dict[str, Any] = json.loads(env.encode())
    return data
