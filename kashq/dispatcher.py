"""Dispatching: jobs become envelopes and are pushed; ``job.dispatch()`` finds where.

:class:`QueueDispatcher` is the pipeline every dispatch runs through: envelope,
unique claim, push (one ``push_many`` per connection for several jobs), then
counting (``kashq_jobs_dispatched_total`` and the event store). The queue
manager builds one on its connections. ``job.dispatch()`` and the functions
below go to the current manager (:func:`kashq.configure`), or to the fake a
test installed (:func:`kashq.testing.fake`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from kashq import dispatch_counts
from kashq.clock import Clock
from kashq.drivers.base import Driver
from kashq.envelope import Envelope
from kashq.exceptions import ConfigError, JobDefinitionError
from kashq.job import Delay, Dispatchable, Job, NamedJob
from kashq.locks.base import LockBackend
from kashq.locks.unique import Claim, UniqueLock
from kashq.tracing import UNTRACED

if TYPE_CHECKING:
    from kashq.events.recorder import EventRecorder
    from kashq.tracing.spans import Tracing
    from kashq.transactions import Transaction
    from kashq.workflows.batch import PendingBatch
    from kashq.workflows.batches import BatchRecord, BatchStore
    from kashq.workflows.chain import PendingChain


class Dispatcher(Protocol):
    """Anything that can take jobs: the queue manager, or a test fake."""

    def dispatch(self, job: Dispatchable, *, using: object = None) -> str | None: ...

    def dispatch_many(
        self, jobs: Iterable[Dispatchable], *, using: object = None
    ) -> Sequence[str | None]: ...

    def dispatch_chain(self, chain: PendingChain) -> Any: ...

    def dispatch_batch(self, batch: PendingBatch) -> Any: ...


Outboxing = Callable[[str | None, "Transaction", Sequence[Envelope]], None]
"""Writes jobs of a connection to the outbox, in the caller's transaction."""


class QueueDispatcher:
    """Turns jobs into envelopes and pushes them onto their connections.

    ``connection``, ``locks`` and ``recorder`` give a connection's driver,
    lock backend and event recorder (None: events are off) by connection name
    (None: the default connection); ``default_queue`` is where a job naming no
    queue goes; ``clock`` stamps envelopes. ``handle`` makes what ``dispatch``
    returns from the pushed envelope (default: its id). ``outbox`` writes the jobs
    dispatched in a caller's transaction for a connection other than the database;
    ``after_commit`` is ``KASHQ_AFTER_COMMIT`` (see :meth:`_push_in`). ``tracing``
    (:func:`kashq.tracing.build`) pushes each dispatch in a producer span.
    """

    def __init__(
        self,
        *,
        connection: Callable[[str | None], Driver],
        locks: Callable[[str | None], LockBackend],
        recorder: Callable[[str | None], EventRecorder | None],
        default_queue: str,
        clock: Clock,
        handle: Callable[[Envelope, str | None], str] | None = None,
        batches: Callable[[str | None], BatchStore] | None = None,
        outbox: Outboxing | None = None,
        after_commit: bool = False,
        tracing: Tracing | None = None,
    ) -> None:
        self._handle = handle
        self._tracing = tracing
        self._outbox = outbox
        self._after_commit = after_commit
        self._batches = batches
        self._connection = connection
        self._locks = locks
        self._recorder = recorder
        self._default_queue = default_queue
        self._clock = clock

    def envelope_for(self, job: Dispatchable) -> Envelope:
        """The envelope ``job`` would be pushed as."""
        return job.to_envelope(default_queue=self._default_queue, now=self._clock.time())

    def dispatch(self, job: Dispatchable, *, using: object = None) -> str | None:
        """Push one job; returns its id, or None for a unique job already queued.

        ``using``: the caller's open transaction to write the job in (see
        :meth:`_push_in`)."""
        envelope = self.envelope_for(job)
        name = job.target_connection()
        if using is None and _ambient is not None:
            using = _ambient()
        claim = None
        if isinstance(job, Job) and job.unique_for is not None:
            claim = self._claim_unique(job, job.unique_for, name, envelope)
            if claim is None:
                return None
        claims = [] if claim is None else [claim]
        try:
            if self._tracing is not None and self._tracing.active():
                self._tracing.publish(
                    [envelope], lambda: self._push_one(envelope, name, using, claims, job)
                )
            else:
                self._push_one(envelope, name, using, claims, job)
        except BaseException:
            UniqueLock.unclaim(claims)
            raise
        if using is None:
            self._record_dispatched(name, [envelope])
        return envelope.id if self._handle is None else self._handle(envelope, name)

    def dispatch_many(
        self, jobs: Iterable[Dispatchable], *, using: object = None
    ) -> list[str | None]:
        """Push many jobs, one ``push_many`` per connection; returns their ids in order.

        A unique job whose equal is already queued (or earlier in ``jobs``) is
        skipped: its place in the list holds None.
        """
        if using is None and _ambient is not None:
            using = _ambient()
        by_connection: dict[str | None, list[Envelope]] = {}
        claimed: dict[str | None, list[Claim]] = {}
        ids: list[str | None] = []
        after_commit: dict[str | None, bool | None] = {}
        try:
            for job in jobs:
                envelope = self.envelope_for(job)
                name = job.target_connection()
                if isinstance(job, Job) and job.unique_for is not None:
                    claim = self._claim_unique(job, job.unique_for, name, envelope)
                    if claim is None:
                        ids.append(None)
                        continue
                    claimed.setdefault(name, []).append(claim)
                by_connection.setdefault(name, []).append(envelope)
                after_commit[name] = after_commit.get(name) or job.sent_after_commit()
                ids.append(envelope.id)

            def push() -> None:
                for name, envelopes in list(by_connection.items()):
                    if using is None:
                        self._connection(name).push_many(envelopes)
                        self._record_dispatched(name, envelopes)
                    else:
                        claims = claimed.get(name, [])
                        self._push_in(using, name, envelopes, claims, after_commit[name])
                    claimed.pop(name, None)  # pushed: the worker frees these

            if self._tracing is None or not by_connection:
                push()
            else:  # every job of the call in one producer span
                self._tracing.publish([e for group in by_connection.values() for e in group], push)
        except BaseException:
            UniqueLock.unclaim(claim for claims in claimed.values() for claim in claims)
            raise
        return ids

    def dispatch_chain(self, chain: PendingChain) -> str:
        """Push a chain's first job, carrying the rest (see :mod:`kashq.workflows.chain`)."""
        name = chain.connection_name()
        publishing = UNTRACED if self._tracing is None else self._tracing.publishing()
        with publishing:  # traced: every job of the chain carries the span's context
            head = chain.envelopes(publishing.stamping(self.envelope_for))
            publishing.send([head], lambda: self._push_chain(name, head))
        return head.id if self._handle is None else self._handle(head, name)

    def _push_chain(self, name: str | None, head: Envelope) -> None:
        using = None if _ambient is None else _ambient()
        if using is None:
            self._connection(name).push(head)
            self._record_dispatched(name, [head])
        else:
            self._push_in(using, name, [head], (), None)

    def dispatch_batch(self, batch: PendingBatch) -> BatchRecord:
        """Store a batch, then push its jobs (see :mod:`kashq.workflows.batch`); its record."""
        from kashq.workflows.batches import store_for

        name = batch.connection_name()
        driver = self._connection(name)
        publishing = UNTRACED if self._tracing is None else self._tracing.publishing()
        with publishing:  # traced: its jobs and callbacks carry the span's context
            record, heads, ids = batch.build(
                publishing.stamping(self.envelope_for), self._clock.time()
            )

            def store_and_push() -> None:
                (store_for(driver) if self._batches is None else self._batches(name)).create(
                    record, ids
                )
                driver.push_many(heads)
                self._record_dispatched(name, heads)
                recorder = self._recorder(name)
                if recorder is not None:
                    from kashq.events.base import BATCH_CREATED
                    from kashq.workflows.batches.steps import step

                    recorder.batch(step(BATCH_CREATED, record, record.created_at))

            using = None if _ambient is None else _ambient()
            if using is None:
                publishing.send(heads, store_and_push)
            else:  # its record and its jobs go together, once the transaction commits
                publishing.send(heads, lambda: using.on_end(store_and_push, lambda: None))
        return record

    def clear(self, queue: str, connection: str | None = None) -> int:
        """Delete every job of ``queue`` on ``connection``; returns how many.

        The unique claims those jobs held are freed, so an equal job can be
        dispatched again at once (not only when the claim expires).
        """
        cleared = self._connection(connection).clear(queue)
        UniqueLock.on(self._locks(connection)).free_claims(cleared.claims)
        return cleared.count

    def _push_one(
        self,
        envelope: Envelope,
        name: str | None,
        using: object,
        claims: list[Claim],
        job: Dispatchable,
    ) -> None:
        """:meth:`dispatch`'s push: onto the connection, or in the caller's transaction."""
        if using is None:
            self._connection(name).push(envelope)
        else:
            self._push_in(using, name, [envelope], claims, job.sent_after_commit())

    def _claim_unique(
        self, job: Job, ttl_s: float, name: str | None, envelope: Envelope
    ) -> Claim | None:
        """Take ``job``'s unique lock on its connection and note it in the envelope.

        None if an equal job holds it (nothing is to be pushed).
        """
        key = job.unique_lock_key()
        claim = UniqueLock.on(self._locks(name)).claim(key, ttl_s, job.unique_until)
        if claim is not None:
            envelope.metadata.update(claim.metadata)
        return claim

    def _push_in(
        self,
        using: object,
        name: str | None,
        envelopes: Sequence[Envelope],
        claims: Sequence[Claim],
        after_commit: bool | None,
    ) -> None:
        """Write ``envelopes`` in the caller's transaction ``using`` (:mod:`kashq.transactions`).

        The database connection writes the jobs' rows there; the others write them to
        the outbox (:mod:`kashq.outbox`), for the relay. With ``after_commit`` (the
        job's, else ``KASHQ_AFTER_COMMIT``) they are pushed once it commits instead
        (a Session only), and dropped if it rolls back. On a Session, the jobs are
        counted as dispatched at the commit, and their unique claims freed at a rollback.
        """
        from kashq.drivers.base import TransactionalPush
        from kashq.transactions import Transaction

        transaction = using if isinstance(using, Transaction) else Transaction(using)
        driver = self._connection(name)
        if self._after_commit if after_commit is None else after_commit:

            def push() -> None:
                driver.push_many(envelopes)
                self._record_dispatched(name, envelopes)

            transaction.on_end(push, lambda: UniqueLock.unclaim(claims))
            return
        if isinstance(driver, TransactionalPush):
            driver.push_in(transaction, envelopes)
        elif self._outbox is not None and driver.storage.durable:
            self._outbox(name, transaction, envelopes)
        else:
            raise ConfigError(
                f"dispatch(using=...) writes to the database, redis or sharded connection, "
                f"not {driver.storage.kind}; dispatch after the commit instead (after_commit)"
            )
        transaction.when_known(
            committed=lambda: self._record_dispatched(name, envelopes),
            rolled_back=lambda: UniqueLock.unclaim(claims),
        )

    def _record_dispatched(self, name: str | None, envelopes: Sequence[Envelope]) -> None:
        dispatch_counts.count(envelopes)
        recorder = self._recorder(name)
        if recorder is not None:
            recorder.dispatched(envelopes)


_lock = threading.Lock()
_override: Dispatcher | None = None
_ambient: Callable[[], Transaction | None] | None = None


def use_ambient_transaction(find: Callable[[], Transaction | None] | None) -> None:
    """Make ``find`` say which transaction a dispatch without ``using=`` joins (None:
    none is open). An app framework's: Django's ``transaction.atomic()`` block."""
    global _ambient
    _ambient = find


def get_dispatcher() -> Dispatcher:
    """The fake installed by a test, else the current manager."""
    if _override is not None:
        return _override
    from kashq.manager import manager  # the manager wires a QueueDispatcher: it sits above

    return manager()


def set_dispatcher(dispatcher: Dispatcher | None) -> Dispatcher | None:
    """Route dispatches to ``dispatcher`` (None restores the manager); returns the previous."""
    global _override
    with _lock:
        previous, _override = _override, dispatcher
    return previous


def dispatch(
    job: Dispatchable | str,
    payload: dict[str, Any] | None = None,
    *,
    queue: str | None = None,
    connection: str | None = None,
    priority: int | None = None,
    tries: int | None = None,
    delay: Delay | None = None,
    metadata: dict[str, Any] | None = None,
    using: object = None,
) -> str | None:
    """Dispatch a Job, or a named job: ``dispatch("send_email", {"to": ...})``; ``using``:
    the caller's open transaction to write it in (``job.dispatch(using=...)``)."""
    if isinstance(job, str):
        job = NamedJob(job, payload)
    elif payload is not None:
        raise TypeError("a payload is only given with a job name; a Job carries its own")
    _check_dispatchable(job)
    if queue is not None:
        job.on_queue(queue)
    if connection is not None:
        job.on_connection(connection)
    if priority is not None:
        job.with_priority(priority)
    if tries is not None:
        job.with_max_retries(tries)
    if delay is not None:
        job.delay(delay)
    if metadata:
        job.with_metadata(**metadata)
    return job.dispatch(using=using)


def dispatch_after(job: Dispatchable, delay: Delay) -> str | None:
    """Dispatch ``job`` to run after ``delay`` (seconds or timedelta)."""
    return _check_dispatchable(job).dispatch_after(delay)


def dispatch_at(job: Dispatchable, when: datetime) -> str | None:
    """Dispatch ``job`` to run at ``when``."""
    return _check_dispatchable(job).dispatch_at(when)


def dispatch_many(jobs: Iterable[Dispatchable], *, using: object = None) -> list[str | None]:
    """Dispatch several jobs in one round trip per connection where the driver can
    (``using``: the caller's open transaction to write them in).

    Returns their ids in order; None for a unique job that was already queued.
    """
    checked = [_check_dispatchable(job) for job in jobs]
    return list(get_dispatcher().dispatch_many(checked, using=using))


async def adispatch_many(jobs: Iterable[Dispatchable], *, using: object = None) -> list[str | None]:
    """:func:`dispatch_many` from a thread, so the event loop runs on meanwhile."""
    return await asyncio.to_thread(dispatch_many, list(jobs), using=using)


def _check_dispatchable(job: object) -> Dispatchable:
    """``job`` if it can be dispatched, else a one-line error saying what can."""
    if not isinstance(job, Dispatchable):
        raise JobDefinitionError(
            f"cannot dispatch {type(job).__name__} {job!r:.60}: dispatch a Job instance, "
            "a NamedJob, or a job name with its payload"
        )
    return job
