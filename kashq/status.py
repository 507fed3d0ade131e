"""Where is job X now, and how did it end: :func:`get_job` and the handle ``dispatch()`` returns.

A :class:`JobHandle` is the job's id (a ``str``: it works wherever the id
did) that can also answer :meth:`~JobHandle.status`, block for the
:meth:`~JobHandle.result` and :meth:`~JobHandle.wait` for the end. It asks, in
order: the result store (an outcome kept by id for ``KASHQ_RESULT_TTL``), the
driver (is the job queued, delayed or reserved?), the failed-job store and the
event log. A job that returned ``None`` stores no result: its end is seen by
it leaving its queue without failing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import TypeAdapter, ValidationError

from kashq.envelope import Envelope, decode
from kashq.events import store_for as events_for
from kashq.events.base import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    PROGRESS,
    STARTED,
    Event,
    EventStore,
)
from kashq.exceptions import DriverError, EnvelopeError, JobCancelled, KashqError, UnknownJobType
from kashq.registry import REGISTRY
from kashq.results.base import StoredResult

if TYPE_CHECKING:
    from kashq.control import Cancellation
    from kashq.manager import QueueManager

log = logging.getLogger(__name__)

JobState = Literal[
    "queued", "delayed", "reserved", "running", "completed", "failed", "cancelled", "expired"
]
ENDED: frozenset[str] = frozenset(("completed", "failed", "cancelled", "expired"))
_FIRST_SLICE_S, _LAST_SLICE_S = 0.05, 1.0  # how often a wait re-checks the queue


class JobNotFound(KashqError):
    """No job has this id on the connection: never dispatched there, or ended and forgotten."""


class JobFailed(KashqError):
    """The job whose result was asked for failed for good; ``error`` and ``reason`` say how."""

    def __init__(self, job_id: str, error: str, reason: str) -> None:
        why = f" ({reason})" if reason else ""
        super().__init__(f"job {job_id} failed{why}: {error}")
        self.job_id, self.error, self.reason = job_id, error, reason


class JobExpired(KashqError):
    """The job whose result was asked for expired: it was not started before its
    ``expires_at``, so it never ran."""


class ResultTimeout(KashqError, TimeoutError):
    """A wait for a job's end ran out before the job ended."""


@dataclass(frozen=True, slots=True)
class JobStatus:
    """One job as it stands now.

    ``state`` is ``queued`` (ready to run), ``delayed`` (waiting for its time:
    a delay or a retry's backoff), ``reserved`` (a worker holds it),
    ``running`` (its ``handle()`` is running), ``completed``, ``failed``,
    ``cancelled`` (by :func:`kashq.cancel`: before it ran, or stopped while
    running) or ``expired`` (not started before its ``expires_at``).
    ``attempts`` counts attempts finished. Times are Unix seconds; ``error`` is
    the last attempt's one-line error, ``reason`` why a failed job was not
    retried again; ``progress`` (0 to 1) and ``message`` what the job last
    reported with ``self.progress()``.
    """

    id: str
    state: JobState
    connection: str
    queue: str = ""
    job_type: str = ""
    attempts: int = 0
    created_at: float | None = None
    available_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    progress: float | None = None
    message: str = ""
    error: str = ""
    reason: str = ""

    @property
    def done(self) -> bool:
        """Whether the job has ended (completed, failed, cancelled or expired)."""
        return self.state in ENDED

    def to_dict(self) -> dict[str, Any]:
        """The status as JSON-ready data."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class JobHandle(str):
    """A job's id that can also tell where the job is and how it ended.

    ``dispatch()`` returns one; :func:`get_job` makes one for any id. It is a
    ``str`` (the id), so it can be stored, logged and compared as before.
    """

    # (manager, connection, queue, dispatched): one attribute, set once per dispatch
    _origin: tuple[QueueManager | None, str | None, str | None, bool] = (None, None, None, False)

    def __new__(
        cls,
        job_id: str,
        *,
        connection: str | None = None,
        queue: str | None = None,
        manager: QueueManager | None = None,
        dispatched: bool = False,
    ) -> JobHandle:
        handle = super().__new__(cls, job_id)
        if manager is not None or connection is not None or queue is not None or dispatched:
            handle._origin = (manager, connection, queue, dispatched)
        return handle

    @classmethod
    def dispatched(
        cls, job_id: str, manager: QueueManager, connection: str | None, queue: str
    ) -> JobHandle:
        """The handle of a job ``manager`` just pushed (the dispatch path: no keywords)."""
        handle = str.__new__(cls, job_id)
        handle._origin = (manager, connection, queue, True)
        return handle

    @property
    def connection(self) -> str | None:
        """The connection the job was dispatched on (None: the default one)."""
        return self._origin[1]

    @property
    def queue(self) -> str | None:
        """The queue the job was dispatched to, when known (a hint for lookups)."""
        return self._origin[2]

    @property
    def id(self) -> str:
        """The job id as a plain ``str``."""
        return str.__str__(self)

    def status(self) -> JobStatus:
        """Where the job is now; :class:`JobNotFound` if no job has this id."""
        return self._lookup().status(self.id, self._origin[3], self.queue).status

    def wait(self, timeout: float | None = None) -> JobStatus:
        """Block until the job has ended (or :class:`ResultTimeout` after ``timeout`` seconds)."""
        return self._wait(timeout).status

    def result(self, timeout: float | None = None) -> Any:
        """The value ``handle()`` returned, once the job has completed (blocking).

        Typed from ``handle()``'s return annotation when the job's class is
        known here (a pydantic model, dataclass, ``datetime`` ... comes back
        as one); plain JSON data otherwise; ``None`` for a job that returned
        nothing or whose result expired. A job that failed for good raises
        :class:`JobFailed`; a cancelled one :class:`~kashq.JobCancelled`, an expired
        one :class:`JobExpired`; one still unfinished after ``timeout`` seconds,
        :class:`ResultTimeout`.
        """
        return self._value(self._wait(timeout))

    def _value(self, snapshot: _Snapshot) -> Any:
        status, record = snapshot.status, snapshot.record
        if status.state == "failed":
            raise JobFailed(self.id, status.error, status.reason)
        if status.state == "cancelled":
            raise JobCancelled(f"job {self.id} was {status.error or 'cancelled'}")
        if status.state == "expired":
            raise JobExpired(f"job {self.id} {status.error or 'expired'}")
        if record is None or record.value is None:
            if record is not None and record.error:  # completed, but its value was not kept
                raise KashqError(f"job {self.id} completed; {record.error}")
            return None
        return typed_value(status.job_type, record.value)

    def cancel(self) -> Cancellation:
        """Cancel the job (see :func:`kashq.cancel`)."""
        from kashq.control import cancel

        manager = self._lookup_manager()
        return cancel(manager, self.id, self.connection)

    async def astatus(self) -> JobStatus:
        """:meth:`status` without blocking the event loop."""
        return await asyncio.to_thread(self.status)

    async def aresult(self, timeout: float | None = None) -> Any:
        """:meth:`result` without blocking the event loop (the wait runs on a thread one
        slice at a time, so a cancelled await ends within a second)."""
        return self._value(await self._await(timeout))

    def __repr__(self) -> str:
        return f"JobHandle({self.id!r})"

    def __reduce__(self) -> Any:  # pickles and copies as the plain id
        return (str, (self.id,))

    def _lookup(self) -> _Lookup:
        return _Lookup(self._lookup_manager(), self.connection)

    def _lookup_manager(self) -> QueueManager:
        from kashq.manager import manager

        return self._origin[0] or manager()

    def _wait(self, timeout: float | None) -> _Snapshot:
        waiting = _Waiting(self, timeout)
        while True:
            snapshot = waiting.step()
            if snapshot is not None:
                return snapshot

    async def _await(self, timeout: float | None) -> _Snapshot:
        waiting = _Waiting(self, timeout)
        while True:  # each step blocks a worker thread one slice (<= 1 s) at most
            snapshot = await asyncio.to_thread(waiting.step)
            if snapshot is not None:
                return snapshot


class _Waiting:
    """One wait for a job's end, taken a slice at a time (:meth:`step`)."""

    def __init__(self, handle: JobHandle, timeout: float | None) -> None:
        self.handle, self.timeout = handle, timeout
        self.lookup = handle._lookup()
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.slice_s = _FIRST_SLICE_S
        self.seen = handle._origin[3]
        self.down: DriverError | None = None

    def step(self) -> _Snapshot | None:
        """The end, if the job has ended; else wait one slice and None.

        A lost connection is waited out (it may come back in time); the
        deadline is :class:`ResultTimeout`.
        """
        job_id, snapshot = self.handle.id, None
        try:
            snapshot = self.lookup.status(job_id, self.seen, self.handle.queue, detail=False)
            if snapshot.status.done:
                return snapshot
            # It existed: from now on, leaving its queue without failing is completing.
            self.seen, self.down = True, None
        except DriverError as exc:
            self.down = exc
        left = None if self.deadline is None else self.deadline - time.monotonic()
        if left is not None and left <= 0:
            why = f" (its connection is down: {self.down})" if self.down is not None else ""
            raise ResultTimeout(f"job {job_id} has not ended after {self.timeout:g}s{why}")
        pause_s = self.slice_s if left is None else min(self.slice_s, left)
        self.slice_s = min(self.slice_s * 1.5, _LAST_SLICE_S)
        if self.down is not None or (snapshot is not None and snapshot.stale):
            time.sleep(pause_s)  # down, or an earlier run's outcome would answer at once
            return None
        try:
            self.lookup.results.wait(job_id, pause_s)
        except DriverError as exc:
            self.down = exc
        return None


def get_job(job_id: str, connection: str | None = None) -> JobHandle:
    """A handle on job ``job_id`` of ``connection`` (default: the default connection)."""
    if not isinstance(job_id, str) or not job_id.strip():
        raise ValueError(f"a job id must be a non-empty string, got {job_id!r}")
    return JobHandle(job_id.strip(), connection=connection)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    status: JobStatus
    record: StoredResult | None = None
    envelope: Envelope | None = None
    stale: bool = False  # an outcome is stored, of an earlier run of the job


@dataclass(frozen=True, slots=True)
class JobDetails:
    """Everything known of one job (what ``queue:job`` shows).

    ``envelope`` while the job waits, runs or is recorded as failed (a
    completed job's is gone with it); ``result`` the JSON text it returned.
    """

    status: JobStatus
    envelope: Envelope | None
    result: str | None


def describe(job_id: str, manager: QueueManager, connection: str | None = None) -> JobDetails:
    """The status, envelope and result of job ``job_id``; :class:`JobNotFound` if none."""
    lookup = _Lookup(manager, connection)
    snapshot = lookup.status(job_id, False, None)
    record, env = snapshot.record, snapshot.envelope
    if env is None and snapshot.status.state == "failed":
        failed = manager.failed_store(lookup.name).find(job_id)
        env = None if failed is None else _envelope(failed.payload)
    value = None if record is None or record.status is None else record.value
    return JobDetails(snapshot.status, env, value)


class _Lookup:
    """The stores one connection keeps its jobs' whereabouts in."""

    def __init__(self, manager: QueueManager, connection: str | None) -> None:
        self.name = connection or manager.settings.connection
        self.driver = manager.connection(self.name)
        self.results = manager.results(self.name)
        self._manager = manager
        self._event_store: EventStore | None = None

    def status(
        self, job_id: str, seen: bool, queue: str | None, *, detail: bool = True
    ) -> _Snapshot:
        """The job's status; ``seen``: it is known to have been dispatched."""
        record = self.results.get(job_id)
        found = self.driver.find(job_id, None if queue is None else [queue])
        if found is None and queue is not None:
            found = self.driver.find(job_id)  # a job moved by hand (queue:retry --queue)
        env = None if found is None else _envelope(found.raw)
        stale = False
        if record is not None and record.status is not None:
            if not _superseded(record, env):
                return self._ended(job_id, record)
            record, stale = None, True  # an earlier run's outcome: the job was pushed again
        if found is not None:
            status = self._waiting(job_id, found, env, record, detail)
            return _Snapshot(status, record, env, stale)
        record = self.results.get(job_id)  # it may have ended between the two reads
        if record is not None and record.status is not None:
            return self._ended(job_id, record)
        return self._gone(job_id, seen)

    def _ended(self, job_id: str, record: StoredResult) -> _Snapshot:
        status = JobStatus(
            job_id, record.status or "completed", self.name, record.queue, record.job_type,
            record.attempts, finished_at=record.finished_at, progress=record.progress,
            message=record.message, error=record.error, reason=record.reason,
        )  # fmt: skip
        return _Snapshot(status, record)

    def _waiting(
        self,
        job_id: str,
        found: Any,
        env: Envelope | None,
        record: StoredResult | None,
        detail: bool,
    ) -> JobStatus:
        now = self.driver.storage.clock.time()
        state: JobState = "queued" if found.state == "ready" else found.state
        started_at = None
        events = self._events().get_job_events(job_id) if detail else []
        if found.state == "reserved" and (found.lease_until or 0) < now:
            state = "queued"  # its worker vanished: the next reserve takes it again
        elif found.state == "reserved" and detail:
            started = _started(events, env)
            if started is not None:
                state, started_at = "running", started.at
            elif _reported_since(record, env):
                state = "running"
        error = "" if env is None or env.failure is None else env.failure.error
        if not error and events:  # a retry waits: the error of the attempt that failed
            failed = next((e for e in reversed(events) if "error" in e.details), None)
            error = "" if failed is None else str(failed.details["error"])
        return JobStatus(
            job_id, state, self.name, found.queue, env.type if env else "",
            env.attempts if env else 0, env.created_at if env else None,
            env.available_at if env else None, started_at,
            progress=None if record is None else record.progress,
            message="" if record is None else record.message,
            error=error,
        )  # fmt: skip

    def _gone(self, job_id: str, seen: bool) -> _Snapshot:
        failed = self._manager.failed_store(self.name).find(job_id)
        if failed is not None:
            status = JobStatus(
                job_id, "failed", self.name, failed.queue, failed.job_type, failed.attempts,
                finished_at=failed.failed_at.timestamp(), error=failed.error, reason=failed.reason,
            )  # fmt: skip
            return _Snapshot(status, envelope=_envelope(failed.payload))
        events = self._events().get_job_events(job_id)
        last = next((e for e in reversed(events) if e.type in _ENDS), None)
        if last is not None:
            state: JobState = _ENDS[last.type]
            status = JobStatus(
                job_id, state, self.name, last.queue, last.job_type, last.attempt,
                finished_at=last.at, error=str(last.details.get("error", "")),
            )  # fmt: skip
            return _Snapshot(status)
        if seen:  # it left its queue, and did not fail: it completed, keeping no result
            return _Snapshot(JobStatus(job_id, "completed", self.name))
        raise JobNotFound(
            f"no job {job_id} on connection {self.name!r}: never dispatched there, "
            "or it ended and its record expired"
        )

    def _events(self) -> EventStore:
        """The connection's event log, read even where recording is off now."""
        if self._event_store is None:
            self._event_store = events_for(self.driver, self._manager.settings, always=True)
        return self._event_store


_ENDS: dict[str, JobState] = {
    COMPLETED: "completed", FAILED: "failed", CANCELLED: "cancelled", EXPIRED: "expired",
}  # fmt: skip


def _envelope(raw: str) -> Envelope | None:
    try:
        return decode(raw)
    except EnvelopeError:
        return None


def _started(events: list[Event], env: Envelope | None) -> Event | None:
    """The event of the current attempt's start, if nothing but progress followed it."""
    if env is None:
        return None
    last = next((e for e in reversed(events) if e.type != PROGRESS), None)
    return last if last and last.type == STARTED and last.attempt == env.attempts + 1 else None


def _superseded(record: StoredResult, env: Envelope | None) -> bool:
    """Whether ``record`` is the outcome of an earlier run of a job queued again since
    (``queue:retry``, or a dispatch under the same id): it became due after that end."""
    if env is None or record.finished_at is None:
        return False
    return env.available_at > record.finished_at


def _reported_since(record: StoredResult | None, env: Envelope | None) -> bool:
    """Whether the job reported progress since it became due (so this attempt runs)."""
    if record is None or record.progress_at is None or env is None:
        return False
    return record.progress_at >= env.available_at


_ADAPTERS: dict[str, TypeAdapter[Any] | None] = {}


def typed_value(job_type: str, text: str) -> Any:
    """The stored JSON ``text`` as the type ``job_type``'s ``handle()`` declares it returns."""
    adapter = _ADAPTERS.get(job_type)
    if adapter is None and job_type not in _ADAPTERS:
        adapter = _adapter(job_type)
        if job_type in REGISTRY:  # a type not imported yet is looked up again next time
            _ADAPTERS[job_type] = adapter
    if adapter is None:
        return json.loads(text)
    try:
        return adapter.validate_json(text)
    except ValidationError as exc:
        log.warning("result of %s does not match its return type (%s); as JSON", job_type, exc)
        return json.loads(text)


def _adapter(job_type: str) -> TypeAdapter[Any] | None:
    try:
        entry = REGISTRY.resolve(job_type)
    except UnknownJobType:  # not imported here (yet): plain JSON, asked again next time
        return None
    try:
        target = entry.target if entry.is_handler else entry.target.handle
        annotation = typing.get_type_hints(target).get("return")
    except Exception:  # a hint that does not resolve: plain JSON
        return None
    if annotation is None or annotation is Any or annotation is type(None):
        return None
    return TypeAdapter(annotation)
