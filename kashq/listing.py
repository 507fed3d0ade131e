"""Listing jobs by state, queue, type and tag, a page at a time: :func:`kashq.jobs`, ``queue:jobs``.

Each state is read where it is kept, never by scanning a whole queue:

============  ==============================================================
``ready``     the driver, in the order workers take them (``Driver.list_jobs``)
``delayed``   the driver, soonest due first
``reserved``  the driver: jobs a worker holds (``running``: those whose lease
              is current, so a live worker runs or is about to run them)
``completed`` the recent-jobs store, newest first: kept ``KASHQ_KEEP_COMPLETED``
``cancelled`` seconds, ``KASHQ_KEEP_COMPLETED_MAX`` per queue and outcome
``expired``
``failed``    the failed-job store, newest first
============  ==============================================================

A tag is looked up in the driver's tag index; a job type, and a tag outside the
driver, is matched page by page, reading at most :data:`SCAN_PAGES` pages per
call: a call may then return fewer than ``limit`` jobs with a cursor to go on.
A cursor is opaque text that pages stably: a job that stays where it is is
listed once. Without ``queue``, every queue is walked in name order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

from kashq.drivers import cursor as cursors
from kashq.drivers.base import FoundJob
from kashq.envelope import Envelope, decode
from kashq.exceptions import EnvelopeError
from kashq.failed.base import FailedJob
from kashq.names import check_queue_name

if TYPE_CHECKING:
    from kashq.drivers.base import JobListing
    from kashq.drivers.base import JobState as DriverState
    from kashq.manager import QueueManager
    from kashq.recent.base import RecentJob

ListState = Literal[
    "ready", "delayed", "reserved", "running", "failed", "completed", "cancelled", "expired"
]
STATES: tuple[str, ...] = (
    "ready", "delayed", "reserved", "running", "failed", "completed", "cancelled", "expired"
)  # fmt: skip
_ALIASES = {"queued": "ready", "completed-recently": "completed"}
_DRIVER_STATES = ("ready", "delayed", "reserved", "running")
_RECENT_STATES = ("completed", "cancelled", "expired")
_PLACE = "jobs"  # the kind of kashq.jobs() cursors (kashq.drivers.cursor)
SCAN_PAGES = 10
"""The most source pages one filtered call reads before it answers with what it found."""
LIMIT_MAX = 1000


@dataclass(frozen=True, slots=True)
class JobSummary:
    """One listed job. Times are Unix seconds; fields a state does not have are None or empty:
    ``available_at`` when a waiting job may run, ``lease_until`` when a held job's lease
    ends, ``finished_at`` / ``duration_s`` / ``error`` for ended jobs."""

    id: str
    queue: str
    state: str
    job_type: str
    attempts: int = 0
    priority: int = 0
    tags: tuple[str, ...] = ()
    created_at: float | None = None
    available_at: float | None = None
    lease_until: float | None = None
    finished_at: float | None = None
    duration_s: float | None = None
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["tags"] = list(self.tags)
        return data


@dataclass(frozen=True, slots=True)
class JobPage:
    """A page of :class:`JobSummary`; ``cursor`` gives the next page (None: no more)."""

    jobs: list[JobSummary] = field(default_factory=list)
    cursor: str | None = None


def list_jobs(
    manager: QueueManager,
    *,
    queue: str | None = None,
    state: str = "ready",
    job_type: str | None = None,
    tag: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    connection: str | None = None,
) -> JobPage:
    """A page of the jobs in ``state`` (see the module docstring); ValueError for a bad state,
    limit or cursor, one line each."""
    state = _ALIASES.get(state, state)
    if state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIMIT_MAX:
        raise ValueError(f"limit must be an integer from 1 to {LIMIT_MAX}, got {limit!r}")
    if queue is not None:
        check_queue_name(queue)
    place = _Place.read(cursor)
    name = connection or manager.settings.connection
    want = _Filter(job_type, tag)
    if state == "failed":
        return _failed(manager, name, queue, want, limit=limit, place=place)
    if state in _RECENT_STATES:
        manager.write_records(name)
    queues = [queue] if queue is not None else _queues(manager, name, state)
    if place.queue is not None and queue is None:
        queues = [q for q in queues if q >= place.queue]
    found: list[JobSummary] = []
    reads = 0
    for index, current in enumerate(queues):
        inner = place.inner if current == place.queue else None
        source = _source(manager, name, current, state, tag)
        while True:
            batch, inner = source(limit - len(found), inner)
            reads += 1
            found += [job for job in batch if want.matches(job)]
            if len(found) >= limit or reads >= SCAN_PAGES:
                if inner is not None:
                    return JobPage(found, _Place(current, inner).text())
                last = index == len(queues) - 1
                return JobPage(found, None if last else _Place(current + "\x00", None).text())
            if inner is None:
                break
    return JobPage(found, None)


Source = Callable[[int, str | None], tuple[list[JobSummary], str | None]]


def _source(manager: QueueManager, name: str, queue: str, state: str, tag: str | None) -> Source:
    if state in _DRIVER_STATES:
        driver = manager.connection(name)
        held = cast("DriverState", "reserved" if state == "running" else state)
        now = driver.storage.clock.time()

        def from_driver(limit: int, inner: str | None) -> tuple[list[JobSummary], str | None]:
            listing: JobListing = driver.list_jobs(
                queue, held, limit=max(limit, 1), cursor=inner, tag=tag
            )
            jobs = [_waiting(item.id, item.job) for item in listing.jobs]
            if state == "running":
                jobs = [_running(job) for job in jobs if (job.lease_until or 0) >= now]
            return jobs, listing.cursor

        return from_driver
    recent = manager.recent(name)

    def from_recent(limit: int, inner: str | None) -> tuple[list[JobSummary], str | None]:
        records, after = recent.page(queue, state, limit=max(limit, 1), cursor=inner)  # type: ignore[arg-type]
        return [_ended(record) for record in records], after

    return from_recent


def _queues(manager: QueueManager, name: str, state: str) -> list[str]:
    if state in _DRIVER_STATES:
        return sorted(manager.connection(name).queue_names())
    return sorted(manager.recent(name).queues())


def _failed(
    manager: QueueManager,
    name: str,
    queue: str | None,
    want: _Filter,
    *,
    limit: int,
    place: _Place,
) -> JobPage:
    store = manager.failed_store(name)
    before = None if place.inner is None else _number(place.inner)
    found: list[JobSummary] = []
    for _ in range(SCAN_PAGES):
        batch = store.page(queue=queue, job_type=want.job_type, before_id=before, limit=limit)
        for record in batch:
            before = record.id
            summary = _failed_summary(record)
            if want.matches(summary):
                found.append(summary)
                if len(found) == limit:
                    return JobPage(found, _Place(None, str(before)).text())
        if len(batch) < limit:
            return JobPage(found, None)
    return JobPage(found, _Place(None, str(before)).text())


@dataclass(frozen=True, slots=True)
class _Filter:
    job_type: str | None
    tag: str | None

    def matches(self, job: JobSummary) -> bool:
        if self.job_type is not None and job.job_type != self.job_type:
            return False
        return self.tag is None or self.tag in job.tags


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a listing stopped: the queue it was in and that source's own cursor."""

    queue: str | None
    inner: str | None

    def text(self) -> str:
        return cursors.encode(_PLACE, (self.queue or "", self.inner or ""))

    @classmethod
    def read(cls, cursor: str | None) -> _Place:
        """``cursor`` as a page gave it (None: the first page); ValueError, one line, if not."""
        place = cursors.decode(cursor, _PLACE, "ss")
        if place is None:
            return cls(None, None)
        queue, inner = place
        return cls(str(queue) or None, str(inner) or None)


def _number(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"not a cursor of this {_PLACE} listing: {text[:40]!r}")
    return int(text)


def _envelope(raw: str) -> Envelope | None:
    try:
        return decode(raw)
    except EnvelopeError:
        return None


def _waiting(job_id: str, found: FoundJob) -> JobSummary:
    env = _envelope(found.raw)
    if env is None:
        return JobSummary(job_id, found.queue, found.state, "(undecodable)")
    return JobSummary(
        job_id, found.queue, found.state, env.type, env.attempts, env.priority, env.tags,
        env.created_at, env.available_at, found.lease_until,
    )  # fmt: skip


def _running(job: JobSummary) -> JobSummary:
    return JobSummary(
        job.id, job.queue, "running", job.job_type, job.attempts, job.priority, job.tags,
        job.created_at, job.available_at, job.lease_until,
    )  # fmt: skip


def _ended(record: RecentJob) -> JobSummary:
    return JobSummary(
        record.job_id, record.queue, record.outcome, record.job_type, record.attempts,
        tags=record.tags, finished_at=record.finished_at, duration_s=record.duration_s,
        error=record.error,
    )  # fmt: skip


def _failed_summary(record: FailedJob) -> JobSummary:
    env = _envelope(record.payload)
    return JobSummary(
        record.uuid, record.queue, "failed", record.job_type, record.attempts,
        env.priority if env else 0, env.tags if env else (),
        env.created_at if env else None, finished_at=record.failed_at.timestamp(),
        error=record.error,
    )  # fmt: skip


def every(pages: Callable[[str | None], JobPage]) -> Iterator[JobSummary]:
    """Every job of a listing, page after page (``pages(cursor)`` gives one)."""
    cursor: str | None = None
    while True:
        page = pages(cursor)
        yield from page.jobs
        if page.cursor is None:
            return
        cursor = page.cursor
