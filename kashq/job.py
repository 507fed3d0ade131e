"""Jobs: what users subclass and dispatch.

A :class:`Job` is a pydantic model: its annotated attributes are the payload
(validated on construction, serialised as JSON), its plain class attributes
are options (``queue``, ``tries``, ``backoff``, ``timeout``, ``priority``...).
:class:`NamedJob` is the GoFlow style: a type name and a JSON payload handled
by a function registered with :func:`kashq.handler`.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, PrivateAttr

from kashq.envelope import Envelope, new_job_id
from kashq.exceptions import JobDefinitionError, PayloadError
from kashq.names import check_queue_name
from kashq.registry import REGISTRY, qualified_name
from kashq.retry import (
    Backoff,
    Exponential,
    Linear,
    backoff_of,
    check_retry_rules,
    deadline_of,
    seconds_of,
)
from kashq.status import JobHandle

if TYPE_CHECKING:
    from typing_extensions import Self

    from kashq.middleware import Middleware

Delay = float | int | timedelta
UniqueUntil = Literal["processing", "completed"]
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
    timeout_s: float | None = None
    delay_s: float | None = None
    available_at: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    job_id: str | None = None


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
        self._opts().priority = _check_int("priority", priority)
        return self

    def with_max_retries(self, tries: int) -> Self:
        """Total attempts allowed before the job is failed (same as ``tries``)."""
        self._opts().tries = _check_int("tries", tries, minimum=1)
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

    def with_timeout(self, timeout_s: float) -> Self:
        """Seconds one attempt may run before it is stopped and counted as failed."""
        self._opts().timeout_s = _check_timeout(timeout_s)
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

    def delay(self, delay: Delay) -> Self:
        """Make the job available only after ``delay`` (seconds or timedelta)."""
        self._opts().delay_s = delay_seconds(delay)
        self._opts().available_at = None
        return self

    # -- dispatching ----------------------------------------------------
    def dispatch(self) -> JobHandle | None:
        """Queue the job; returns its id as a :class:`~kashq.JobHandle` (None: a unique
        job already queued, nothing pushed)."""
        from kashq.dispatcher import get_dispatcher

        job_id = get_dispatcher().dispatch(self)
        if job_id is None or isinstance(job_id, JobHandle):
            return job_id
        return JobHandle(job_id, connection=self.target_connection(), dispatched=True)

    def dispatch_after(self, delay: Delay) -> JobHandle | None:
        """Queue the job to run after ``delay`` (seconds or timedelta)."""
        return self.delay(delay).dispatch()

    def dispatch_at(self, when: datetime) -> JobHandle | None:
        """Queue the job to run at ``when`` (a naive datetime is local time)."""
        self._opts().available_at = when.timestamp()
        self._opts().delay_s = None
        return self.dispatch()

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
        return env

    def _opts(self) -> DispatchOptions:
        return self._kashq_opts


class Job(Dispatchable, BaseModel):
    """Base class of class-based jobs; subclass it and write ``handle()``.

    ``handle()`` may be ``async def``. An optional ``failed(error)`` is called
    once, when the job has failed for good. ``fail_on`` exceptions fail it at
    once; a non-empty ``retry_on`` retries only those; ``max_exceptions`` fails
    it once that many attempts raised; ``backoff`` and ``retry_until`` may be
    methods (``backoff(self, attempt, error) -> seconds``). What ``handle()``
    returns is kept as JSON for ``result_ttl`` seconds (default
    ``KASHQ_RESULT_TTL``; 0 keeps none), for ``JobHandle.result()``.
    ``middleware()`` lists layers run around ``handle()`` (:mod:`kashq.middleware`).
    With ``unique_for`` set, a dispatch while an equal job (same
    ``unique_id()``) is queued pushes nothing.
    """

    unique_for: ClassVar[float | None] = None
    unique_until: ClassVar[UniqueUntil] = "completed"
    result_ttl: ClassVar[float | None] = None
    fail_on: ClassVar[tuple[type[BaseException], ...]] = ()
    retry_on: ClassVar[tuple[type[BaseException], ...]] = ()
    max_exceptions: ClassVar[int | None] = None

    model_config = ConfigDict(extra="ignore")

    _kashq_opts: DispatchOptions = PrivateAttr(default_factory=DispatchOptions)
    _kashq_envelope: Envelope | None = PrivateAttr(default=None)
    __kashq_name__: ClassVar[str]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        _check_class_options(cls)
        clashes = sorted(set(cls.model_fields) & _RESERVED_NAMES)
        if clashes:
            raise JobDefinitionError(
                f"{cls.__qualname__}: payload field(s) {', '.join(clashes)} clash with "
                "Job options or methods; rename them"
            )
        cls.__kashq_name__ = qualified_name(cls)
        REGISTRY.add(cls.__kashq_name__, cls, is_handler=False)

    @property
    def type_name(self) -> str:
        return type(self).__kashq_name__

    def _opts(self) -> DispatchOptions:
        # Straight from pydantic's private store: attribute access to a private
        # attribute goes through BaseModel.__getattr__, slow on the dispatch path.
        opts: DispatchOptions = self.__pydantic_private__["_kashq_opts"]  # type: ignore[index]
        return opts

    @abstractmethod
    def handle(self) -> Any:
        """The job's work (may be ``async def``). A class without one cannot be built,
        so it can serve as a base class of shared options but is never dispatched."""

    def payload_data(self) -> dict[str, Any]:
        try:
            return self.model_dump(mode="json")
        except ValueError as exc:  # pydantic's serialisation errors, UnicodeDecodeError
            raise PayloadError(_unserialisable(self, exc)) from None

    @property
    def envelope(self) -> Envelope | None:
        """The envelope being processed (set by the worker), else None."""
        return self._kashq_envelope

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far ``handle()`` got: ``fraction`` of the work (0 to 1), and a note.

        Shown by ``status()`` and ``queue:job`` (the latest report, written in
        batches in the background: no round trip) and, at most twice a second,
        as a ``progress`` event in the event log, so a tight loop may call it
        freely. Outside a worker it does nothing.
        """
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            raise ValueError(f"progress must be a number from 0 to 1, got {fraction!r}")
        if not 0 <= fraction <= 1:
            raise ValueError(f"progress must be from 0 to 1, got {fraction!r}")
        from kashq.middleware import running

        context = running()
        env = self._kashq_envelope
        if context is not None and context.report is not None and env is context.envelope:
            context.report(env, float(fraction), str(message))

    def attempts(self) -> int:
        """The number of the current attempt (1 on the first run), 0 before dispatch."""
        env = self._kashq_envelope
        return 0 if env is None else env.attempts + 1

    def middleware(self) -> list[Middleware]:
        """The middleware run around ``handle()``, outermost first (none by default)."""
        return []

    def unique_id(self) -> str:
        """What makes two dispatches of a unique job the same (default: a hash of the payload)."""
        text = json.dumps(self.payload_data(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def unique_lock_key(self) -> str:
        """The lock a unique job holds while queued: ``unique:<type>:<unique_id()>``."""
        unique_id = self.unique_id()
        if not isinstance(unique_id, str) or not unique_id:
            raise JobDefinitionError(
                f"{type(self).__qualname__}.unique_id() must return a non-empty str, "
                f"got {unique_id!r}"
            )
        return f"unique:{self.type_name}:{unique_id}"


class NamedJob(Dispatchable):
    """A job named by string with a JSON payload, for ``@kashq.handler`` functions.

    ``NamedJob("send_email", {"to": "a@example.com"}).with_priority(10).dispatch()``
    """

    def __init__(self, name: str, payload: dict[str, Any] | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise JobDefinitionError(f"a named job needs a non-empty type name, got {name!r}")
        if payload is not None and not isinstance(payload, dict):
            raise JobDefinitionError(
                f"payload of {name!r} must be a dict, got {type(payload).__name__}"
            )
        try:
            _check_json(payload, "payload")
        except (TypeError, RecursionError) as exc:
            raise PayloadError(f"{name!r}: {exc}") from None
        self._name = name
        self._payload = dict(payload or {})
        self._kashq_opts = DispatchOptions()

    @property
    def type_name(self) -> str:
        return self._name

    def payload_data(self) -> dict[str, Any]:
        return self._payload

    def __repr__(self) -> str:
        return f"NamedJob({self._name!r}, {self._payload!r})"


_RESERVED_NAMES = frozenset(name for name in dir(Dispatchable) if not name.startswith("_")) | {
    "handle",
    "failed",
    "envelope",
    "attempts",
    "progress",
    "middleware",
    "unique_for",
    "unique_until",
    "fail_on",
    "retry_on",
    "max_exceptions",
    "result_ttl",
    "unique_id",
    "unique_lock_key",
}


def _unserialisable(job: Job, error: ValueError) -> str:
    """Which payload field of ``job`` cannot be written as JSON, and why (one line)."""
    for name in type(job).model_fields:
        try:
            job.model_dump(mode="json", include={name})
        except ValueError as exc:
            error = exc
            where = f"field {name!r}"
            break
    else:
        where = "its payload"
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"{type(job).__qualname__}: {where} cannot be stored as JSON ({reason})"


def _check_json(value: object, where: str) -> None:
    """TypeError naming the first part of ``value`` that JSON cannot carry as is."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where} is {value!r}, which JSON cannot carry")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has the key {key!r}: JSON keys are strings")
            _check_json(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]")
    else:
        raise TypeError(
            f"{where} is a {type(value).__name__}, which JSON cannot carry "
            "(use str, int, float, bool, None, lists and dicts)"
        )


def _check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_timeout(value: object) -> float:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not value > 0
    ):
        raise ValueError(f"timeout must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def _check_class_options(cls: type[Dispatchable]) -> None:
    try:
        if cls.queue is not None:
            check_queue_name(cls.queue)
        if cls.tries is not None:
            _check_int("tries", cls.tries, minimum=1)
        if cls.max_deliveries is not None:
            _check_int("max_deliveries", cls.max_deliveries, minimum=1)
        if cls.backoff is not None and not callable(cls.backoff):
            backoff_of(cls.backoff)
        if cls.retry_until is not None and not callable(cls.retry_until):
            deadline_of(cls.retry_until, 0.0)
        if cls.timeout is not None:
            _check_timeout(cls.timeout)
        _check_int("priority", cls.priority)
        if isinstance(cls, type) and issubclass(cls, Job):
            _check_unique(cls)
            check_retry_rules(cls)
    except ValueError as exc:
        raise JobDefinitionError(f"{cls.__qualname__}: {exc}") from None


def _check_unique(cls: type[Job]) -> None:
    ttl = cls.unique_for
    if ttl is not None and (
        not isinstance(ttl, (int, float))
        or isinstance(ttl, bool)
        or not math.isfinite(ttl)
        or ttl <= 0
    ):
        raise ValueError(f"unique_for must be a finite number of seconds > 0, got {ttl!r}")
    if cls.unique_until not in ("processing", "completed"):
        raise ValueError(
            f"unique_until must be 'processing' or 'completed', got {cls.unique_until!r}"
        )
