"""The driver protocol: how envelopes move between dispatchers and workers.

Drivers store and hand out encoded envelopes; they never run user code and
never decide retries (the worker does). An envelope whose ``available_at`` is
in the future is a delayed job (Laravel's ``later``). A reserved job carries a
lease: if it is neither acknowledged, released nor extended before the lease
ends, the driver hands it out again and counts the delivery.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.envelope import Envelope

if TYPE_CHECKING:
    from kashq.transactions import Transaction

CONTROL_NAME_MAX = 191
"""Longest control record name: a MySQL/MariaDB key of 191 utf8mb4 characters fits 767 bytes."""


def check_control_name(name: object) -> str:
    """``name`` if it is a usable control record name, else ValueError."""
    if not isinstance(name, str) or not 1 <= len(name) <= CONTROL_NAME_MAX:
        raise ValueError(f"control record name must be 1-{CONTROL_NAME_MAX} characters: {name!r}")
    return name


StorageKind = Literal["memory", "redis", "database"]


@dataclass(frozen=True, slots=True, eq=False)
class Storage:
    """The storage a driver keeps its jobs in, which its locks and events share.

    ``kind`` says what ``handle`` is: ``"memory"``, the driver object itself
    (locks and events live in this process, one set per driver); ``"redis"``,
    its redis-py client (keys under ``prefix``); ``"database"``, its SQLAlchemy
    engine (tables named with the engine's table prefix). ``clock`` is the
    driver's, so locks and counters run on the same (possibly fake) time as
    the jobs they guard. :func:`kashq.locks.backend_for` and
    :func:`kashq.events.store_for` choose by it, knowing no driver class.
    """

    kind: StorageKind
    handle: object
    prefix: str = ""
    clock: Clock = SYSTEM_CLOCK

    @property
    def durable(self) -> bool:
        """Whether what is stored outlives this process."""
        return self.kind != "memory"


@dataclass(frozen=True, slots=True)
class Reservation:
    """A job handed to one worker until it is acked, released or its lease ends.

    ``raw`` is the stored text, decoded by the worker (so garbage becomes a
    failed job, not a driver crash). ``deliveries`` counts how many times the
    job was handed out since its last recorded outcome: 1 on a normal
    delivery, more when earlier holders vanished without acking.
    """

    id: str
    queue: str
    raw: str
    deliveries: int
    token: str


JobState = Literal["ready", "delayed", "reserved"]

ONCE_KEEP_S = 86_400.0
"""How long :meth:`Driver.push_once` remembers an id by default: a day. A job whose
worker died is delivered again when its lease lapses (minutes); only a day with no
worker at all would let its successor be pushed twice."""

JOB_ID_MAX = 36
"""Longest job id a driver looks up: a UUID's 36 characters (the database column's width)."""


def is_job_id(job_id: object) -> bool:
    """Whether ``job_id`` could name a stored job: 1-36 characters of text, no NUL, valid
    UTF-8 (no lone surrogates). :meth:`Driver.find` and :meth:`Driver.remove` answer None
    for anything else, so a weird id never reaches a backend that would reject it."""
    if not isinstance(job_id, str) or not 1 <= len(job_id) <= JOB_ID_MAX or "\x00" in job_id:
        return False
    try:
        job_id.encode()
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class FoundJob:
    """A job a driver holds, as it stands now (see :meth:`Driver.find`).

    ``state`` is judged by time: a waiting job whose ``available_at`` has come
    is ``"ready"`` even if the driver has not moved it yet. ``raw`` is the
    stored envelope text, as ``reserve`` would hand it out (after a release,
    the released envelope's). ``deliveries`` is what ``Reservation.deliveries``
    carried on the job's latest delivery since it was pushed or last released
    (0 while none): a lapsed lease keeps the count, a job given back unstarted
    (``unreserve``) has that delivery uncounted. ``lease_until`` is set only
    for ``"reserved"``: when its lease ends on the driver's clock, possibly
    already past (the job is reported reserved until the driver reclaims it).
    """

    queue: str
    state: JobState
    raw: str
    deliveries: int
    lease_until: float | None = None


@dataclass(frozen=True, slots=True)
class ListedJob:
    """One job of a :class:`JobListing`: its id and how it stands, as :meth:`Driver.find` says."""

    id: str
    job: FoundJob


@dataclass(frozen=True, slots=True)
class JobListing:
    """A page of :meth:`Driver.list_jobs`; ``cursor`` gives the next page (None: no more)."""

    jobs: list[ListedJob]
    cursor: str | None


JOB_STATES: tuple[JobState, ...] = ("ready", "delayed", "reserved")
LIST_LIMIT_MAX = 1000
"""The most jobs one page of :meth:`Driver.list_jobs` holds."""


def tags_of(raw: str) -> tuple[str, ...]:
    """The tags stored job ``raw`` carries (the envelope's ``tags``).

    Text without a ``"tags"`` key is not parsed, so asking about an untagged job
    costs a substring search; text that does not parse has no tags.
    """
    if '"tags"' not in raw:
        return ()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return ()
    tags = data.get("tags") if isinstance(data, dict) else None
    if not isinstance(tags, list):
        return ()
    return tuple(dict.fromkeys(tag for tag in tags if isinstance(tag, str)))


@dataclass(frozen=True, slots=True)
class QueueSizes:
    """How many jobs a queue holds in each state."""

    ready: int = 0
    delayed: int = 0
    reserved: int = 0

    @property
    def total(self) -> int:
        return self.ready + self.delayed + self.reserved

    def __add__(self, other: QueueSizes) -> QueueSizes:
        """The counts of two places added up (the shards of a sharded connection)."""
        return QueueSizes(
            self.ready + other.ready, self.delayed + other.delayed, self.reserved + other.reserved
        )


@dataclass(frozen=True, slots=True)
class Cleared:
    """What :meth:`Driver.clear` removed: how many jobs, and the unique claims
    (lock key, token) those jobs held, for the caller to free."""

    count: int
    claims: tuple[tuple[str, str], ...] = ()


class Driver(Protocol):
    """What the dispatcher and the worker need from a queue backend."""

    @property
    def storage(self) -> Storage:
        """Where this driver keeps its jobs: what its locks and event store share."""
        ...

    def push(self, envelope: Envelope) -> None:
        """Store one job: ready now, or delayed until ``envelope.available_at``."""
        ...

    def push_many(self, envelopes: Sequence[Envelope]) -> None:
        """Store several jobs, in one round trip where the backend allows."""
        ...

    def push_once(self, envelope: Envelope, keep_s: float = ONCE_KEEP_S) -> bool:
        """Store one job unless a job with its id was stored this way in the last
        ``keep_s`` seconds; True if it was stored now.

        The id is remembered, not looked up among the stored jobs, so the job is
        stored once even when it has already run and left its queue; the check and
        the push are one atomic step, so callers racing with one id store it once.
        Workflows push each chain step and callback this way: a job delivered twice
        (its worker died before its ack) does not dispatch its successor twice.
        A call that failed may have stored the job: repeating it is safe, and then
        answers False.
        """
        ...

    def reserve(
        self,
        queues: Sequence[str],
        *,
        lease_s: float,
        wait_s: float = 0.0,
        ack: Reservation | None = None,
    ) -> Reservation | None:
        """Hand out the next job, trying ``queues`` in strict order.

        Within a queue, higher priority first and FIFO among equals; delayed
        jobs that are due and jobs whose lease lapsed are eligible. Waits up
        to ``wait_s`` for one to arrive; None if none did. ``ack`` is a
        finished reservation to acknowledge first, in the same round trip
        where the backend allows (a worker saves one round trip per job).
        """
        ...

    def ack(self, reservation: Reservation) -> None:
        """Remove a finished job for good."""
        ...

    def release(self, reservation: Reservation, envelope: Envelope) -> None:
        """Put a reserved job back as ``envelope`` (new attempts, new ``available_at``)."""
        ...

    def extend(self, reservation: Reservation, lease_s: float) -> bool:
        """Renew the lease for ``lease_s`` from now; False if the job was lost to another."""
        ...

    def sizes(self, queues: Sequence[str]) -> dict[str, QueueSizes]:
        """Ready/delayed/reserved counts for each queue."""
        ...

    def queue_names(self) -> list[str]:
        """Sorted names of the queues holding at least one job (ready, delayed or reserved)."""
        ...

    def find(self, job_id: str, queues: Sequence[str] | None = None) -> FoundJob | None:
        """Job ``job_id`` as the driver holds it now, or None if it holds no such job.

        Looks in ``queues`` when given (a hint: the caller knows the queue),
        else in every queue. An id that is no job id text (see
        :func:`is_job_id`) is None too; a backend failure is a DriverError.
        """
        ...

    def remove(self, job_id: str, queues: Sequence[str] | None = None) -> FoundJob | None:
        """Take job ``job_id`` out if it is waiting (ready or delayed) and return it as it was;
        a reserved job is left with its worker and returned (state "reserved", nothing changed);
        None if the driver holds no such job. ``queues`` is a hint as in ``find``; an id that is
        no job id text (is_job_id) is None; a backend failure is a DriverError.

        Atomic against ``reserve``: a job is either removed (no reserve hands it out
        afterwards) or reported reserved (a worker holds it), never both. The answer is what
        :meth:`find` would have said just before (a delayed job that fell due is "ready" and
        removed; a reserved job whose lease lapsed is "reserved" and stays). A removed job
        leaves no trace: the other jobs keep their order, and an emptied queue is no longer
        listed by :meth:`queue_names`. Its unique claim, if any, is the caller's to free
        (:func:`kashq.envelope.unique_claim` of its ``raw``), as after :meth:`clear`.
        """
        ...

    def list_jobs(
        self,
        queue: str,
        state: JobState,
        *,
        limit: int = 50,
        cursor: str | None = None,
        tag: str | None = None,
    ) -> JobListing:
        """A page of the jobs of ``queue`` in ``state``, each as :meth:`find` would answer.

        States are judged as :meth:`find` judges them (a delayed job whose time has come
        is ready; a reserved job whose lease lapsed is reserved). Order: ``"ready"`` in
        the order workers take them (priority high first, then first in); ``"delayed"``
        by due time, soonest first; ``"reserved"`` by lease deadline, soonest first (a
        lapsed lease first of all). With ``tag``, only the jobs carrying it, read from
        the tag index in the order they were pushed or released, whatever the state.

        ``cursor`` is the previous page's, opaque text. Paging is stable: walking every
        page while nothing changes lists each job once, and a job that stays where it
        is while others come and go is neither skipped nor listed twice (a job that
        moves, as a reserved job whose lease is renewed does, may be). A page may hold
        fewer than ``limit`` jobs with a cursor to go on (a tag listing walks a bounded
        number of tagged jobs per call). A page costs O(``limit``), plus with ``tag``
        the tagged jobs of other states walked past; no call scans the whole queue.

        ValueError (one line) for a state not in :data:`JOB_STATES`, a ``limit`` outside
        1..:data:`LIST_LIMIT_MAX`, a tag that is no tag, or a cursor this listing did
        not give; a backend failure is a DriverError.
        """
        ...

    def oldest_ready(self, queues: Sequence[str]) -> dict[str, float | None]:
        """For each queue, the ``available_at`` (driver clock) of the ready job that has
        waited longest, a delayed job that fell due included; None: no ready job.

        Read from indexes, never by scanning a queue (``queue:monitor``'s "oldest
        waiting" and ``--max-wait``). Exact, except on Redis while a delayed or retried job
        that fell due sits ahead of older jobs of its priority: the answer is then that
        job's time, later than the truth (see :func:`kashq.drivers.redis.listing.oldest`).
        """
        ...

    def clear(self, queue: str) -> Cleared:
        """Delete every job of ``queue`` in every state.

        Returns how many, with the unique claims they held
        (:func:`kashq.envelope.unique_claim`): a job removed without running
        never frees its claim itself.
        """
        ...

    # -- control records ------------------------------------------------
    def put_control(self, name: str, value: str, ttl_s: float | None = None) -> None:
        """Set record ``name`` to ``value``; with ``ttl_s`` it expires that many seconds from now.

        Times are the driver's clock, like ``available_at``. Overwrites any
        record of that name, resetting its expiry.
        """
        ...

    def get_control(self, prefix: str = "") -> dict[str, str]:
        """Every live (unexpired) record whose name starts with ``prefix``, by name."""
        ...

    def delete_control(self, name: str) -> bool:
        """Remove record ``name``; False if there was no live record of that name."""
        ...

    def close(self) -> None:
        """Release connections and other resources."""
        ...


@runtime_checkable
class BatchReserving(Protocol):
    """A driver that hands out several jobs per round trip (the worker's ``prefetch``)."""

    def reserve_batch(
        self,
        queues: Sequence[str],
        *,
        lease_s: float,
        wait_s: float = 0.0,
        acks: Sequence[Reservation] = (),
        limit: int = 1,
    ) -> list[Reservation]:
        """Up to ``limit`` jobs of the first of ``queues`` that has any (``reserve``'s order),
        after acknowledging ``acks``; empty if none arrived within ``wait_s``.

        The first is delivered as ``reserve`` delivers it. If the worker holding
        the others vanishes before acknowledging them, their delivery is not
        counted toward ``max_deliveries``: they may never have started.
        """
        ...

    def ack_many(self, reservations: Sequence[Reservation]) -> None:
        """Acknowledge several finished jobs."""
        ...

    def unreserve(self, reservations: Sequence[Reservation]) -> None:
        """Give jobs back unstarted: in their places in the queue, their delivery uncounted."""
        ...


def reserve_one(
    driver: BatchReserving,
    queues: Sequence[str],
    *,
    lease_s: float,
    wait_s: float,
    ack: Reservation | None,
) -> Reservation | None:
    """``reserve`` on a driver that reserves in batches: a batch of one, ``ack`` with it."""
    acks = () if ack is None else (ack,)
    found = driver.reserve_batch(queues, lease_s=lease_s, wait_s=wait_s, acks=acks)
    return found[0] if found else None


@dataclass(slots=True)
class RidingCounts:
    """Completed batch jobs to count in the very step that reserves and acknowledges
    them (:class:`CountingReserve`), so no job's ack goes before its count."""

    jobs: dict[str, list[str]]  # batch id -> the ids of its jobs that completed
    now: float
    replies: dict[str, Any] | None = None  # batch id -> its batch store's count reply


@runtime_checkable
class CountingReserve(Protocol):
    """A :class:`BatchReserving` driver whose reserve can also count completed batch
    jobs (plain Redis: one script counts, acknowledges and reserves)."""

    def counts_ride(self, queue: str, acks: Sequence[Reservation], jobs: int) -> bool:
        """Whether a reserve of ``queue`` that acknowledges ``acks`` can count ``jobs``
        batch jobs in the same step."""
        ...

    def reserve_batch(
        self,
        queues: Sequence[str],
        *,
        lease_s: float,
        wait_s: float = 0.0,
        acks: Sequence[Reservation] = (),
        limit: int = 1,
        counts: RidingCounts | None = None,
    ) -> list[Reservation]:
        """:meth:`BatchReserving.reserve_batch`; with ``counts`` (only where
        :meth:`counts_ride` said so), their jobs are counted first, in the same step,
        and ``counts.replies`` set."""
        ...


@runtime_checkable
class TransactionalPush(Protocol):
    """A driver that can write jobs in the caller's own transaction (the database)."""

    def push_in(self, transaction: Transaction, envelopes: Sequence[Envelope]) -> None:
        """Write ``envelopes`` in ``transaction``: seen by workers once it commits."""
        ...


@runtime_checkable
class CappedSizes(Protocol):
    """A driver whose exact sizes cost a count of every job (the database), and which can
    count each state only up to a cap instead, for screens refreshed every few seconds."""

    def sizes_up_to(self, queues: Sequence[str], cap: int) -> dict[str, QueueSizes]:
        """:meth:`Driver.sizes`, each count stopping at ``cap`` (``cap`` means "that many
        or more"): the cost is at most ``cap`` index entries per queue and state."""
        ...
