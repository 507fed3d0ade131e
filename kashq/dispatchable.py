"""What every dispatchable job shares: its options, the fluent ``with_*()`` calls, ``dispatch*``.

:class:`Dispatchable` is the base of :class:`~kashq.Job` and :class:`~kashq.NamedJob`:
class attributes are defaults, the fluent calls override them per dispatch
(kept in :class:`DispatchOptions`), and :meth:`Dispatchable.to_envelope` turns
both into the envelope that is pushed.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from kashq.envelope import Envelope, new_job_id
from kashq.exceptions import JobDefinitionError
from kashq.names import check_queue_name, check_tags
from kashq.retry import (
    Backoff,
    Exponential,
    Linear,
    backoff_of,
    deadline_of,
    seconds_of,
)
from kashq.status import JobHandle

if TYPE_CHECKING:
    from typing_extensions import Self

Delay = float | int | timedelta
BackoffOption = Delay | Sequence[Delay] | Exponential
"""What ``backoff`` accepts: seconds (linear), a list of seconds, or :class:`Exponential`."""
Deadline = datetime | timedelta
"""What ``retry_until`` accepts: a time, or a span from the dispatch."""


@dataclass(slots=True)
class DispatchOptions:
    """Per-dispatch overrides set by the fluent ``on_queue()``/``with_*()`` calls."""

    queue: str | None = None
    connection: str | None = None
    priority: int | None = None
    tries: int | None = None
    backoff: Backoff | None = None
    retry_until: datetime | timedelta | None = None
    expiry: datetime | float | None = None  # a time, or seconds from the dispatch
    tags: tuple[str, ...] = ()
    timeout_s: float | None = None
    delay_s: float | None = None
    available_at: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    job_id: str | None = None
    after_commit: bool | None = None


def delay_seconds(delay: Delay, name: str = "delay") -> float:
    """Seconds in ``delay`` (a number of seconds or a timedelta); must be >= 0.

    ``name`` is the option being set, for the error message (``backoff``...).
    """
    return seconds_of(delay, name)


class Dispatchable:
    """The fluent options and ``dispatch*`` methods shared by Job and NamedJob.

    Class-level defaults (``queue``, ``tries`` ...) come from the class;
    ``None`` means "the configured default" (``KASHQ_QUEUE``, ``KASHQ_MAX_RETRY``...).
    """

    queue: ClassVar[str | None] = None
    connection: ClassVar[str | None] = None
    tries: ClassVar[int | None] = None
    backoff: ClassVar[BackoffOption | Callable[..., float] | None] = None
    retry_until: ClassVar[Deadline | Callable[..., Deadline] | None] = None
    timeout: ClassVar[float | None] = None
    priority: ClassVar[int] = 0
    max_deliveries: ClassVar[int | None] = None
    expires_in: ClassVar[Delay | None] = None
    expires_at: ClassVar[datetime | Callable[..., datetime] | None] = None
    tags: ClassVar[Sequence[str] | Callable[..., Sequence[str]]] = ()

    _kashq_opts: DispatchOptions

    # -- fluent options -------------------------------------------------
    def on_queue(self, queue: str) -> Self:
        """Dispatch to ``queue`` instead of the class's queue."""
        self._opts().queue = check_queue_name(queue)
        return self

    def on_connection(self, connection: str) -> Self:
        """Dispatch through the named connection (``redis``, ``memory``...)."""
        self._opts().connection = connection
        return self

    def with_priority(self, priority: int) -> Self:
        """Higher runs sooner within its queue."""
        self._opts().priority = check_int("priority", priority)
        return self

    def with_max_retries(self, tries: int) -> Self:
        """Total attempts allowed before the job is failed (same as ``tries``)."""
        self._opts().tries = check_int("tries", tries, minimum=1)
        return self

    def with_backoff(self, backoff: BackoffOption) -> Self:
        """Wait before retries: seconds (retry n waits ``backoff * n``), a list of
        seconds (the last repeats) or :class:`~kashq.Exponential`."""
        self._opts().backoff = backoff_of(backoff)
        return self

    def with_retry_until(self, deadline: Deadline) -> Self:
        """Retry until ``deadline`` (a time, or a span from now) instead of counting tries."""
        deadline_of(deadline, 0.0)  # checked now, resolved against the dispatch time
        self._opts().retry_until = deadline
        return self

    def with_expiry(self, when: datetime | Delay) -> Self:
        """Drop the job as ``expired``, never run, if no worker has started it by ``when``:
        a time, or a span (seconds or timedelta) from the dispatch."""
        self._opts().expiry = when if isinstance(when, datetime) else delay_seconds(when, "expiry")
        return self

    def with_tags(self, *tags: str) -> Self:
        """Add ``tags`` to the job's own (its ``tags``): ``kashq.jobs(tag=...)`` and
        ``queue:jobs --tag`` find it by any of them."""
        opts = self._opts()
        opts.tags = check_tags((*opts.tags, *tags))
        return self

    def with_timeout(self, timeout_s: float) -> Self:
        """Seconds one attempt may run before it is stopped and counted as failed."""
        self._opts().timeout_s = check_timeout(timeout_s)
        return self

    def with_metadata(self, **values: Any) -> Self:
        """Attach string key/values (tracing ids, user ids) carried with the job."""
        self._opts().metadata.update({k: str(v) for k, v in values.items()})
        return self

    def with_id(self, job_id: str | uuid.UUID) -> Self:
        """Dispatch under ``job_id`` (a UUID) instead of a fresh random one.

        Pushing a job whose id is still waiting replaces it rather than adding
        a copy, so an id derived from the job's origin (a webhook delivery)
        makes repeating the push harmless.
        """
        try:
            self._opts().job_id = str(uuid.UUID(str(job_id)))
        except ValueError:
            raise ValueError(f"a job id must be a UUID, got {job_id!r}") from None
        return self

    def after_commit(self) -> Self:
        """Dispatched with ``using=session``: push the job once the session's transaction
        commits (nothing if it rolls back), instead of writing it in the transaction."""
        self._opts().after_commit = True
        return self

    def before_commit(self) -> Self:
        """Dispatched with ``using=...``: write the job in the transaction, whatever
        ``KASHQ_AFTER_COMMIT`` says."""
        self._opts().after_commit = False
        return self

    def sent_after_commit(self) -> bool | None:
        """Whether a dispatch with ``using=`` waits for the commit (None: the setting says)."""
        return self._opts().after_commit

    def delay(self, delay: Delay) -> Self:
        """Make the job available only after ``delay`` (seconds or timedelta)."""
        self._opts().delay_s = delay_seconds(delay)
        self._opts().available_at = None
        return self

    # -- dispatching ----------------------------------------------------
    def dispatch(self, *, using: object = None) -> JobHandle | None:
        """Queue the job; returns its id as a :class:`~kashq.JobHandle` (None: a unique
        job already queued, nothing pushed).

        ``using``: the caller's open transaction (an SQLAlchemy Session or Connection,
        or a psycopg, sqlite3 or PyMySQL connection) to write the job in: it exists
        once that commits, never if it rolls back (see :mod:`kashq.transactions`).
        """
        from kashq.dispatcher import get_dispatcher

        job_id = get_dispatcher().dispatch(self, using=using)
        if job_id is None or isinstance(job_id, JobHandle):
            return job_id
        return JobHandle(job_id, connection=self.target_connection(), dispatched=True)

    async def adispatch(self, *, using: object = None) -> JobHandle | None:
        """:meth:`dispatch` from a thread, so the event loop runs on while the job is
        written (in an ``async def`` view or handler)."""
        return await asyncio.to_thread(self.dispatch, using=using)

    def dispatch_after(self, delay: Delay, *, using: object = None) -> JobHandle | None:
        """Queue the job to run after ``delay`` (seconds or timedelta)."""
        return self.delay(delay).dispatch(using=using)

    def dispatch_at(self, when: datetime, *, using: object = None) -> JobHandle | None:
        """Queue the job to run at ``when`` (a naive datetime is local time)."""
        self._opts().available_at = when.timestamp()
        self._opts().delay_s = None
        return self.dispatch(using=using)

    # -- envelope -------------------------------------------------------
    @property
    def type_name(self) -> str:
        """The registry name this job is dispatched under."""
        raise JobDefinitionError(f"{type(self).__name__} has no type name")

    def payload_data(self) -> dict[str, Any]:
        """The JSON payload."""
        raise JobDefinitionError(f"{type(self).__name__} has no payload")

    def target_connection(self) -> str | None:
        """The connection chosen for this job, or None for the default."""
        return self._opts().connection or type(self).connection

    def to_envelope(self, *, default_queue: str, now: float) -> Envelope:
        """The envelope to push, with per-dispatch options over class options."""
        opts, cls = self._opts(), type(self)
        if opts.available_at is not None:
            available_at = opts.available_at
        else:
            available_at = now + opts.delay_s if opts.delay_s else now
        env = Envelope(
            opts.job_id or new_job_id(),
            self.type_name,
            opts.queue or cls.queue or default_queue,
            self.payload_data(),
            now,
            available_at,
            0,
            cls.tries if opts.tries is None else opts.tries,
            None,
            cls.timeout if opts.timeout_s is None else opts.timeout_s,
            cls.max_deliveries,
            cls.priority if opts.priority is None else opts.priority,
            dict(opts.metadata) if opts.metadata else {},
        )
        backoff = opts.backoff if opts.backoff is not None else cls.backoff
        if backoff is not None and not callable(backoff):  # a method is the worker's to call
            backoff = backoff_of(backoff)
            if isinstance(backoff, Linear):
                env.backoff_s = backoff.base_s
            else:
                env.backoff = backoff
        deadline = opts.retry_until if opts.retry_until is not None else cls.retry_until
        if deadline is not None:
            # A method (Laravel's retryUntil()) is called at dispatch, on this job.
            env.retry_until = deadline_of(self.retry_until if callable(deadline) else deadline, now)
        env.expires_at = self._expires_at(now)
        if cls.tags or opts.tags:
            env.tags = self._tags(opts.tags)
        return env

    def _tags(self, extra: tuple[str, ...]) -> tuple[str, ...]:
        """The class's ``tags`` (a method is called on this job, at dispatch), then ``extra``."""
        own = self.tags
        if callable(own):
            try:
                own = own()
            except Exception as exc:
                raise JobDefinitionError(
                    f"{type(self).__qualname__}.tags() raised {type(exc).__name__}: {exc}"
                ) from exc
        try:
            return check_tags((*own, *extra))
        except (TypeError, ValueError) as exc:
            raise JobDefinitionError(f"{type(self).__qualname__}: {exc}") from None

    def _expires_at(self, now: float) -> float | None:
        """Unix seconds after which the job is not started: per dispatch, else the class's
        ``expires_at`` (a time, or a method called at dispatch), else its ``expires_in``."""
        expiry, cls = self._opts().expiry, type(self)
        if expiry is None:
            at = self.expires_at  # a method is bound: called on this job
            if at is not None:
                return expiry_time(at() if callable(at) else at)
            if cls.expires_in is None:
                return None
            expiry = delay_seconds(cls.expires_in, "expires_in")
        return expiry_time(expiry) if isinstance(expiry, datetime) else now + expiry

    def _opts(self) -> DispatchOptions:
        return self._kashq_opts


def expiry_time(when: object) -> float:
    """Unix seconds of an ``expires_at`` (a datetime; a naive one is local time)."""
    if not isinstance(when, datetime):
        raise ValueError(f"expires_at must be a datetime, got {when!r}")
    return when.timestamp()


def check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_timeout(value: object) -> float:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not value > 0
    ):
        raise ValueError(f"timeout must be a finite number of seconds > 0, got {value!r}")
    return float(value)
