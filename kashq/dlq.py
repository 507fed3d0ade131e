"""The dead-letter queue from code: list, retry, forget and alert on failed jobs.

What a failed job (a dead letter) is, where it is kept and how the shell
reaches it: :mod:`kashq.failed`. :class:`DeadLetterQueue` wraps a failed-job
store (the current manager's by default) and the manager's connections;
:func:`push_back` is the retry step that it and ``queue:retry`` share.
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
from typing import TYPE_CHECKING

from kashq.alerts import Alert, Alerter, deliver
from kashq.envelope import Envelope, decode
from kashq.exceptions import EnvelopeError, KashqError
from kashq.failed.base import FailedJob, FailedJobStore
from kashq.manager import QueueManager
from kashq.manager import manager as current_manager

if TYPE_CHECKING:
    from kashq.workflows.batch import Batch

log = logging.getLogger(__name__)


class DeadLetterError(KashqError):
    """A failed job is unknown, or cannot be pushed back onto a queue."""


class RetryError(DeadLetterError):
    """Some failed jobs of a bulk retry could not be pushed back (the others were).

    ``retried`` holds the job ids pushed back; ``failures`` maps the numeric
    id of each record left in the store to the reason.
    """

    def __init__(self, retried: list[str], failures: dict[int, str]) -> None:
        reasons = "; ".join(failures.values())
        super().__init__(
            f"{len(failures)} failed job(s) could not be retried ({len(retried)} were): {reasons}"
        )
        self.retried = retried
        self.failures = failures


def fresh_envelope(job: FailedJob, now: float, *, queue: str | None = None) -> Envelope:
    """The envelope to push back for ``job``: attempts 0, no failure, due ``now``."""
    try:
        envelope = decode(job.payload)
    except EnvelopeError as exc:
        raise DeadLetterError(
            f"cannot retry failed job #{job.id}: its stored payload is not a job envelope ({exc})"
        ) from None
    return dataclasses.replace(
        envelope, attempts=0, failure=None, available_at=now, queue=queue or envelope.queue
    )


def push_back(
    manager: QueueManager,
    store: FailedJobStore,
    job: FailedJob,
    *,
    connection: str | None = None,
    queue: str | None = None,
) -> Envelope:
    """Push ``job`` back (same id) onto ``connection`` (default: its own), then forget it.

    ``queue`` moves it onto another queue. The record is forgotten only if it
    is still this failure: a worker (or the sync connection, at once) may fail
    the pushed job again before the forget, and that newer record stays. A
    crash between push and forget leaves a duplicate record, never a lost job.
    """
    fresh = fresh_envelope(job, manager.clock.time(), queue=queue)
    name = connection or job.connection
    try:
        manager.connection(name).push(fresh)
    except KashqError as exc:
        raise DeadLetterError(f"cannot retry failed job #{job.id}: {exc}") from exc
    recorder = manager.recorder(name)
    if recorder is not None:
        recorder.retried([fresh])
    try:
        store.forget(job.id, failed_at=job.failed_at)
    except KashqError as exc:
        raise DeadLetterError(
            f"failed job #{job.id} was pushed back as {fresh.id} but is still listed "
            f"as failed: {exc}"
        ) from exc
    return fresh


def retry_batch_failures(
    manager: QueueManager, store: FailedJobStore, batch: Batch, connection: str
) -> tuple[int, list[str]]:
    """Push the failed jobs of ``batch`` back onto ``connection`` (``queue:retry-batch``);
    returns how many, and the ids of those no longer in the store (forgotten)."""
    retried, missing = 0, []
    for job_id in batch.failed_job_ids():
        job = store.find(job_id)
        if job is None:
            missing.append(job_id)
            continue
        push_back(manager, store, job, connection=connection)
        retried += 1
    return retried, missing


class DeadLetterQueue:
    """Failed jobs as a queue you can inspect, retry, forget and alert on.

    ``store`` defaults to the manager's failed-job store and ``manager`` to
    the current one (:func:`kashq.manager`). Keys are numeric ids or uuids.
    """

    def __init__(
        self, store: FailedJobStore | None = None, *, manager: QueueManager | None = None
    ) -> None:
        if manager is None:
            manager = current_manager()
        self.manager = manager
        self.store = store if store is not None else manager.failed_store()
        self._alerters: builtins.list[Alerter] = []

    def list(self, queue: str | None = None, limit: int | None = None) -> builtins.list[FailedJob]:
        """Failed jobs, newest first, optionally of one queue and at most ``limit``."""
        return self.store.all(queue=queue, limit=limit)

    def count(self, queue: str | None = None) -> int:
        """How many failed jobs there are, optionally in one queue."""
        return self.store.count(queue=queue)

    def get(self, key: int | str) -> FailedJob:
        """The failed job with this id or uuid; :class:`DeadLetterError` if there is none."""
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise DeadLetterError(
                f"a failed job is found by its numeric id or its uuid, got {key!r}"
            )
        job = self.store.find(key.strip() if isinstance(key, str) else key)
        if job is None:
            raise DeadLetterError(f"no failed job with id or uuid {key!r}")
        return job

    def retry(self, key: int | str, *, target_queue: str | None = None) -> str:
        """Push one failed job back onto its queue (or ``target_queue``); returns its job id."""
        return push_back(self.manager, self.store, self.get(key), queue=target_queue).id

    def retry_all(
        self, target_queue: str | None = None, *, queue: str | None = None
    ) -> builtins.list[str]:
        """Push every failed job (of ``queue``, if given) back, oldest first; returns job ids.

        Records that cannot be pushed back stay in the store; after trying all
        of them a :class:`RetryError` names them.
        """
        retried: builtins.list[str] = []
        failures: dict[int, str] = {}
        for job in reversed(self.store.all(queue=queue)):
            try:
                retried.append(push_back(self.manager, self.store, job, queue=target_queue).id)
            except DeadLetterError as exc:
                failures[job.id] = str(exc)
        if failures:
            raise RetryError(retried, failures)
        return retried

    def forget(self, key: int | str) -> FailedJob:
        """Delete one failed job; returns the deleted record."""
        job = self.get(key)
        if not self.store.forget(job.id):
            raise DeadLetterError(f"no failed job with id or uuid {key!r}")
        return job

    def add_alerter(self, alerter: Alerter) -> None:
        """Make :meth:`notify` also tell ``alerter``."""
        self._alerters.append(alerter)

    def notify(self, job: FailedJob) -> int:
        """Tell every alerter about ``job`` now; returns how many succeeded.

        Each send is bounded by the ``alert_timeout`` setting; failures are
        logged, never raised.
        """
        alert = Alert.from_failed_job(job)
        timeout_s = self.manager.settings.alert_timeout
        return sum(deliver(alerter, alert, timeout_s) for alerter in self._alerters)
