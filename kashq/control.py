"""Operators' controls: cancel a job, pause and resume a queue (``queue:cancel``,
``queue:pause``, ``queue:continue``, and :func:`kashq.cancel` ...).

A waiting job (ready or delayed) is cancelled by taking it off its queue in one
atomic step (:meth:`~kashq.drivers.base.Driver.remove`): no worker can start it
after that. A job a worker holds gets a cancel marker instead (a control
record, :mod:`kashq.halts`), which every worker reads about once a second: the
one running it stops it (:mod:`kashq.abort`), and one that receives it later
(its worker died, or it was released for a retry) settles it ``cancelled``
without running it. Pausing a queue is a control record too, so both outlive
worker restarts and reach every worker on every host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from kashq.drivers.base import FoundJob, is_job_id
from kashq.envelope import Envelope, decode, unique_claim
from kashq.exceptions import EnvelopeError, UnknownJobType
from kashq.halts import (
    CANCEL_MARK_TTL_S,
    QUEUE_PREFIX,
    cancel_value,
    job_record,
    pause_value,
    paused_since,
    queue_record,
)
from kashq.listing import JobPage, every, list_jobs
from kashq.locks.unique import UniqueLock
from kashq.names import check_queue_name
from kashq.registry import REGISTRY
from kashq.results.base import StoredResult
from kashq.status import JobHandle, JobNotFound

if TYPE_CHECKING:
    from kashq.manager import QueueManager

CancelOutcome = Literal["cancelled", "aborting", "ended", "unknown"]
_TRIES = 3  # a job that moves between waiting and held while we act is looked at again


@dataclass(frozen=True, slots=True)
class Cancellation:
    """What cancelling one job did.

    ``outcome`` is ``cancelled`` (it was waiting: taken off its queue, it will
    never run), ``aborting`` (a worker holds it: it is told to stop and ends
    ``cancelled``, unless it completes first), ``ended`` (it had already ended:
    ``state`` says how) or ``unknown`` (no job has this id here). ``state`` is
    the job's state when asked (``queued``, ``delayed``, ``reserved``,
    ``completed`` ...; empty when unknown).
    """

    job_id: str
    outcome: CancelOutcome
    state: str = ""
    queue: str = ""

    @property
    def message(self) -> str:
        """One line for people."""
        if self.outcome == "cancelled":
            return f"job {self.job_id} cancelled: it was {self.state} on {self.queue!r}"
        if self.outcome == "aborting":
            return (
                f"job {self.job_id} is held by a worker on {self.queue!r}: it is told to "
                "stop and ends cancelled (unless it completes first)"
            )
        if self.outcome == "ended":
            return f"job {self.job_id} has already ended: {self.state}"
        return f"no job {self.job_id} here: never dispatched, or ended and forgotten"

    def to_dict(self) -> dict[str, str]:
        return {
            "id": self.job_id,
            "outcome": self.outcome,
            "state": self.state,
            "queue": self.queue,
            "message": self.message,
        }


def cancel(manager: QueueManager, job_id: str, connection: str | None = None) -> Cancellation:
    """Cancel job ``job_id`` on ``connection``: see :class:`Cancellation` for the answers.

    A driver failure raises :class:`~kashq.DriverError` (nothing is half done: a
    job is either removed whole or marked).
    """
    name = connection or manager.settings.connection
    job_id = job_id.strip() if isinstance(job_id, str) else job_id
    if not is_job_id(job_id):
        return Cancellation(str(job_id), "unknown")
    driver = manager.connection(name)
    for _ in range(_TRIES):
        found = driver.remove(job_id)
        if found is None:
            return _ended(manager, name, job_id)
        if found.state != "reserved":
            _record_removed(manager, name, found)
            return Cancellation(job_id, "cancelled", _waiting(found), found.queue)
        now = driver.storage.clock.time()
        value = cancel_value(job_id, found.queue, now)
        driver.put_control(job_record(job_id), value, ttl_s=CANCEL_MARK_TTL_S)
        held = driver.find(job_id, [found.queue])
        if held is not None and held.state == "reserved":
            recorder = manager.recorder(name)
            env = _decoded(found.raw)
            if recorder is not None and env is not None:
                recorder.cancelled([env], running=True)
            return Cancellation(job_id, "aborting", "reserved", found.queue)
        driver.delete_control(job_record(job_id))  # it ended or was put back meanwhile
    return _ended(manager, name, job_id)


def cancel_where(
    manager: QueueManager,
    *,
    queue: str | None = None,
    job_type: str | None = None,
    tag: str | None = None,
    connection: str | None = None,
) -> list[Cancellation]:
    """Cancel every waiting and running job matching the filters (at least one is needed):
    each is listed (:func:`kashq.jobs`), then cancelled as :func:`cancel` does."""
    if queue is None and job_type is None and tag is None:
        raise ValueError("cancelling by filter needs a queue, a job type or a tag")
    answers: list[Cancellation] = []
    for state in ("ready", "delayed", "reserved"):

        def pages(cursor: str | None, state: str = state) -> JobPage:
            return list_jobs(
                manager, queue=queue, state=state, job_type=job_type, tag=tag, limit=500,
                cursor=cursor, connection=connection,
            )  # fmt: skip

        answers += [cancel(manager, job.id, connection) for job in every(pages)]
    return answers


def pause(manager: QueueManager, queue: str, connection: str | None = None) -> None:
    """Pause ``queue``: every worker stops reserving from it within about a second."""
    check_queue_name(queue)
    driver = manager.connection(connection)
    driver.put_control(queue_record(queue), pause_value(queue, driver.storage.clock.time()))


def resume(manager: QueueManager, queue: str, connection: str | None = None) -> bool:
    """Let workers take ``queue``'s jobs again; False if it was not paused."""
    check_queue_name(queue)
    return manager.connection(connection).delete_control(queue_record(queue))


def paused(manager: QueueManager, connection: str | None = None) -> dict[str, float]:
    """The paused queues of ``connection``, each with when it was paused (Unix seconds)."""
    return paused_since(manager.connection(connection).get_control(QUEUE_PREFIX))


def _waiting(found: FoundJob) -> str:
    return "queued" if found.state == "ready" else found.state


def _ended(manager: QueueManager, name: str, job_id: str) -> Cancellation:
    manager.write_records(name)  # status() may read the event log
    try:
        status = JobHandle(job_id, connection=name, manager=manager).status()
    except JobNotFound:
        return Cancellation(job_id, "unknown")
    if status.done:
        return Cancellation(job_id, "ended", status.state, status.queue)
    # It is queued again (moved, or retried by hand between our looks): ask again.
    return Cancellation(job_id, "unknown", status.state, status.queue)


def _record_removed(manager: QueueManager, name: str, found: FoundJob) -> None:
    """A waiting job was taken off its queue: free its unique claim, keep its end, log it."""
    claim = unique_claim(found.raw)
    if claim is not None:
        UniqueLock.on(manager.locks(name)).free_claims([claim])
    env = _decoded(found.raw)
    if env is None:
        return
    ttl_s = _result_ttl(env, manager.settings.result_ttl)
    if ttl_s > 0:
        why = "cancelled before it started"
        result = StoredResult(
            env.id, "cancelled", env.type, env.queue, error=why, attempts=env.attempts,
            finished_at=manager.clock.time(),
        )  # fmt: skip
        manager.results(name).put(result, ttl_s)
    manager.worker_recorder(name).cancelled([env])  # events, and the recent jobs


def _result_ttl(env: Envelope, default_s: float) -> float:
    """How long the job's class keeps outcomes (``result_ttl``), else the default."""
    try:
        entry = REGISTRY.resolve(env.type)
    except UnknownJobType:
        return default_s
    own = None if entry.is_handler else getattr(entry.target, "result_ttl", None)
    return default_s if own is None else float(own)


def _decoded(raw: str) -> Envelope | None:
    try:
        return decode(raw)
    except EnvelopeError:
        return None
