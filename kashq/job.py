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
from abc import abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, PrivateAttr

from kashq.dispatchable import (
    BackoffOption,
    Deadline,
    Delay,
    Dispatchable,
    DispatchOptions,
    check_int,
    check_timeout,
    delay_seconds,
    expiry_time,
)
from kashq.envelope import Envelope
from kashq.exceptions import JobDefinitionError, KashqError, PayloadError
from kashq.names import check_queue_name, check_tags
from kashq.registry import REGISTRY, qualified_name
from kashq.retry import backoff_of, check_retry_rules, deadline_of

if TYPE_CHECKING:
    from kashq.middleware import JobContext, Middleware
    from kashq.workflows.batch import Batch
    from kashq.workflows.chain import ChainError

__all__ = [
    "BackoffOption",
    "Deadline",
    "Delay",
    "DispatchOptions",
    "Dispatchable",
    "Job",
    "NamedJob",
    "UniqueUntil",
    "delay_seconds",
]

UniqueUntil = Literal["processing", "completed"]


class Job(Dispatchable, BaseModel):
    """Base class of class-based jobs; subclass it and write ``handle()``.

    ``handle()`` may be ``async def``. An optional ``failed(error)`` is called
    once, when the job has failed for good; an optional ``expired()`` when it
    is dropped unstarted because its ``expires_in`` / ``expires_at`` passed.
    ``fail_on`` exceptions fail it at once; a non-empty ``retry_on`` retries
    only those; ``max_exceptions`` fails it once that many attempts raised;
    ``backoff`` and ``retry_until`` may be methods (``backoff(self, attempt,
    error) -> seconds``). What ``handle()``
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
        context = self._context()
        if context is not None:
            if context.abort is not None:
                context.abort.check()
            if context.report is not None:
                context.report(context.envelope, float(fraction), str(message))

    def cancelled(self) -> bool:
        """A cooperative stop point: raises :class:`~kashq.JobCancelled` if this job was
        cancelled while it runs (:func:`kashq.cancel`), else returns False.

        Call it between steps of long work (``while not self.cancelled(): ...``); it
        reads a flag the worker sets, so it costs no round trip. ``self.progress()``
        checks the same; an async ``handle()`` is also stopped at its next ``await``.
        """
        context = self._context()
        if context is not None and context.abort is not None:
            context.abort.check()
        return False

    def prepend_to_chain(self, job: Dispatchable) -> None:
        """Run ``job`` right after this one, before the rest of its chain (a job not in a
        chain starts one). Called again, the latest runs first, as in Laravel."""
        self._chain_edit(job, first=True)

    def append_to_chain(self, job: Dispatchable) -> None:
        """Run ``job`` at the end of this job's chain (a job not in a chain starts one)."""
        self._chain_edit(job, first=False)

    def _chain_edit(self, job: Dispatchable, *, first: bool) -> None:
        from kashq.workflows.steps import add_to_chain

        context = self._context()
        if context is None:
            raise KashqError("a job changes its chain only while a worker runs its handle()")
        add_to_chain(context, job, first=first)

    def previous_result(self) -> Any:
        """What the job before this one in its chain returned (typed like its ``result()``),
        or None: the first job of a chain, a value not kept, or outside a worker."""
        from kashq.workflows.chain import previous_result

        return previous_result(self._context())

    def chain_error(self) -> ChainError | None:
        """In a chain's ``catch`` callback: which job failed for good, and why."""
        from kashq.workflows.chain import ChainError

        env = self._kashq_envelope
        return None if env is None else ChainError.of(env)

    def batch(self) -> Batch | None:
        """The batch this job belongs to (or is a callback of), read now; None outside one
        or outside a worker. ``self.batch().cancelled`` tells a running job to stop early;
        ``self.batch().add([...])`` adds jobs to it."""
        from kashq.workflows.batch import batch_of

        return batch_of(self._context())

    def _context(self) -> JobContext | None:
        """The worker's context for this very job while it runs here, else None."""
        from kashq.middleware import running

        context = running()
        if context is None or context.envelope is not self._kashq_envelope:
            return None
        return context

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
    "cancelled",
    "expired",
    "middleware",
    "unique_for",
    "unique_until",
    "fail_on",
    "retry_on",
    "max_exceptions",
    "result_ttl",
    "unique_id",
    "unique_lock_key",
    "prepend_to_chain",
    "append_to_chain",
    "previous_result",
    "chain_error",
    "batch",
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


def _check_class_options(cls: type[Dispatchable]) -> None:
    try:
        if cls.queue is not None:
            check_queue_name(cls.queue)
        if cls.tries is not None:
            check_int("tries", cls.tries, minimum=1)
        if cls.max_deliveries is not None:
            check_int("max_deliveries", cls.max_deliveries, minimum=1)
        if cls.backoff is not None and not callable(cls.backoff):
            backoff_of(cls.backoff)
        if cls.retry_until is not None and not callable(cls.retry_until):
            deadline_of(cls.retry_until, 0.0)
        if cls.timeout is not None:
            check_timeout(cls.timeout)
        if cls.expires_in is not None:
            delay_seconds(cls.expires_in, "expires_in")
        if cls.expires_at is not None and not callable(cls.expires_at):
            expiry_time(cls.expires_at)
        if not callable(cls.tags):
            check_tags(cls.tags)
        check_int("priority", cls.priority)
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
