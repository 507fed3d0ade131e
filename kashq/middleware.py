"""Job middleware (Laravel's pipeline) and the built-in ones.

A job lists middleware in ``middleware()``; the worker runs them around
``handle()``, the first in the list outermost. A middleware is any object
with ``handle(job, call_next)``: it may run code before and after
``call_next()`` (which runs the rest of the pipeline and ``handle()`` to
completion, async handlers included), skip it, or raise :class:`ReleaseJob`
to put the job back on its queue for later without counting a failure::

    class Sync(Job):
        account_id: int

        def middleware(self) -> list[Middleware]:
            return [WithoutOverlapping(str(self.account_id)), RateLimited("api", 10, 60)]

Durations are seconds, named ``*_s`` (``release_after_s``, ``per_s``); the
built-in middleware also take the names they had before as keywords.
Middleware run synchronously in the worker's thread. :func:`current` gives
them (and ``handle()``) the job's :class:`JobContext`: the worker's driver,
lock backend, envelope and clock.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from kashq.abort import AbortSignal
from kashq.clock import Clock
from kashq.drivers.base import Driver
from kashq.envelope import Envelope
from kashq.exceptions import KashqError

if TYPE_CHECKING:
    from kashq.job import Job
    from kashq.locks.base import LockBackend
    from kashq.results.base import ResultStore
    from kashq.workflows.batches.base import BatchStore

__all__ = [
    "JobContext",
    "Middleware",
    "RateLimited",
    "ReleaseJob",
    "ThrottlesExceptions",
    "WithoutOverlapping",
    "current",
    "run_pipeline",
]


class ReleaseJob(KashqError):
    """Raised by a middleware to put the job back for ``delay_s`` seconds.

    The attempt is not counted (unless ``count_attempt``), no failure is
    recorded and ``failed()`` is not called; the worker emits a RETRIED event.
    """

    def __init__(self, delay_s: float, *, count_attempt: bool = False, reason: str = "") -> None:
        if not isinstance(delay_s, (int, float)) or not math.isfinite(delay_s) or delay_s < 0:
            raise ValueError(f"release delay must be a finite number of seconds >= 0: {delay_s!r}")
        what = f"released for {delay_s:g}s"
        super().__init__(f"{what}: {reason}" if reason else what)
        self.delay_s = float(delay_s)
        self.count_attempt = count_attempt


class Middleware(Protocol):
    """One layer around ``handle()``: call ``call_next()`` to run the rest."""

    def handle(self, job: Job, call_next: Callable[[], Any]) -> Any:
        """Run before/after ``call_next()``, skip it, or raise :class:`ReleaseJob`."""
        ...


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a running job's middleware can use: the worker's driver, locks, envelope, clock.

    ``report`` takes the job's progress (:meth:`kashq.Job.progress`) to the worker;
    ``abort`` is set when the job is cancelled while it runs (see :mod:`kashq.abort`);
    ``results_of`` gives the connection's result store (a chain step's
    :meth:`kashq.Job.previous_result`), ``batches_of`` its batch store
    (:meth:`kashq.Job.batch`), and ``chain_edits`` collects the jobs the
    running step adds to its chain (:mod:`kashq.workflows.steps`).
    """

    driver: Driver
    envelope: Envelope
    clock: Clock
    locks_of: Callable[[], LockBackend]  # built on first use: most jobs never need locks
    report: Callable[[Envelope, float, str], None] | None = None
    abort: AbortSignal | None = None
    connection: str | None = None
    results_of: Callable[[], ResultStore] | None = None
    batches_of: Callable[[], BatchStore] | None = None
    chain_edits: list[tuple[bool, dict[str, Any]]] = field(default_factory=list)

    @property
    def locks(self) -> LockBackend:
        """The lock backend of the worker's connection (shared by all its workers)."""
        return self.locks_of()


_current: ContextVar[JobContext | None] = ContextVar("kashq_job_context", default=None)


def running() -> JobContext | None:
    """The context of the job running in this thread (or task), or None."""
    return _current.get()


def current() -> JobContext:
    """The context of the job running in this thread (or task); KashqError outside a job."""
    context = _current.get()
    if context is None:
        raise KashqError("no kashq job is running here: middleware context is only set by a worker")
    return context


@contextmanager
def job_context(context: JobContext) -> Iterator[JobContext]:
    """Make ``context`` what :func:`current` returns for the block (the worker uses this)."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def run_pipeline(job: Job, layers: Sequence[Middleware], call: Callable[[], Any]) -> Any:
    """Run ``call`` through ``layers``, the first outermost (Laravel's pipeline)."""

    def step(index: int) -> Any:
        if index == len(layers):
            return call()
        return layers[index].handle(job, lambda: step(index + 1))

    return step(0)


def window_remaining_s(now: float, window_s: float) -> float:
    """Seconds until the fixed ``window_s`` window holding ``now`` ends.

    Counters (``LockBackend.hit``) use windows aligned to the Unix epoch.
    """
    return window_s - (now % window_s)


def _positive(name: str, value: object) -> float:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def _count(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


_F = TypeVar("_F", bound=Callable[..., Any])


def _older_names(**renamed: str) -> Callable[[_F], _F]:
    """Let a function also take some arguments by an older name, as keywords (``old="new"``).

    Giving an argument under both names is a TypeError, as giving it twice is.
    """

    def decorate(fn: _F) -> _F:
        where = fn.__qualname__.removesuffix(".__init__")
        params = inspect.signature(fn).parameters.values()
        positional = [p.name for p in params if p.kind is not p.KEYWORD_ONLY]

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            if kwargs:
                for old, new in renamed.items():
                    if old in kwargs:
                        if new in kwargs or new in positional[: len(args)]:
                            raise TypeError(
                                f"{where}() got both {new!r} and its older name {old!r}: "
                                f"give {new!r} only"
                            )
                        kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return cast(_F, call)

    return decorate


class WithoutOverlapping:
    """Never run two jobs of this type with the same ``key`` at once (across workers).

    Holds lock ``overlap:<job type>:<key>`` while the job runs (at most
    ``expire_after_s`` seconds, in case its worker dies); a job finding it
    held is released for ``release_after_s`` seconds. Older names:
    ``release_after``, ``expire_after``.
    """

    @_older_names(release_after="release_after_s", expire_after="expire_after_s")
    def __init__(
        self,
        key: str | int = "",
        *,
        release_after_s: float = 5,
        expire_after_s: float = 300,
        count_attempt: bool = False,
    ) -> None:
        self.key = str(key)
        self.release_after_s = _positive("release_after_s", release_after_s)
        self.expire_after_s = _positive("expire_after_s", expire_after_s)
        self.count_attempt = count_attempt

    @property
    def release_after(self) -> float:
        """The older name of :attr:`release_after_s`."""
        return self.release_after_s

    @property
    def expire_after(self) -> float:
        """The older name of :attr:`expire_after_s`."""
        return self.expire_after_s

    def handle(self, job: Job, call_next: Callable[[], Any]) -> Any:
        """Run ``call_next`` holding the overlap lock, or release the job if it is held."""
        lock_key = f"overlap:{job.type_name}:{self.key}"
        lock = current().locks.try_acquire(lock_key, self.expire_after_s)
        if lock is None:
            raise ReleaseJob(
                self.release_after_s,
                count_attempt=self.count_attempt,
                reason=f"{lock_key} is held by another job",
            )
        try:
            return call_next()
        finally:
            lock.release()


class RateLimited:
    """Let at most ``limit`` jobs through per ``per_s`` seconds window for ``key``.

    Counted on the worker connection's lock backend, so the limit is global
    across workers on Redis and database connections. A job over the limit
    is released until the window ends, without counting an attempt. Older
    names: ``max``, ``per_seconds``.
    """

    @_older_names(max="limit", per_seconds="per_s")
    def __init__(self, key: str, limit: int, per_s: float) -> None:
        self.key = str(key)
        self.limit = _count("limit", limit)
        self.per_s = _positive("per_s", per_s)

    @property
    def max(self) -> int:
        """The older name of :attr:`limit`."""
        return self.limit

    @property
    def per_seconds(self) -> float:
        """The older name of :attr:`per_s`."""
        return self.per_s

    def handle(self, job: Job, call_next: Callable[[], Any]) -> Any:
        """Count this run; over the limit, release the job until the window ends."""
        context = current()
        hits = context.locks.hit(f"rate:{self.key}", self.per_s)
        if hits > self.limit:
            wait_s = window_remaining_s(context.clock.time(), self.per_s)
            raise ReleaseJob(wait_s, reason=f"rate limit {self.key!r} reached")
        return call_next()


class ThrottlesExceptions:
    """After ``max_exceptions`` failures within ``decay_s`` seconds, hold off running the job.

    Every exception the job raises is counted (``hit``) and still follows the
    retry rules. Once the count reaches ``max_exceptions`` in a window, jobs
    using the same ``key`` (default: the job type) are released, without
    running and without counting an attempt, until that window ends. Older
    name: ``decay_seconds``.
    """

    @_older_names(decay_seconds="decay_s")
    def __init__(self, max_exceptions: int, decay_s: float, *, key: str | None = None) -> None:
        self.max_exceptions = _count("max_exceptions", max_exceptions)
        self.decay_s = _positive("decay_s", decay_s)
        self.key = key

    @property
    def decay_seconds(self) -> float:
        """The older name of :attr:`decay_s`."""
        return self.decay_s

    def handle(self, job: Job, call_next: Callable[[], Any]) -> Any:
        """Release the job while throttled; otherwise run it and count its exception."""
        context = current()
        key = self.key if self.key is not None else job.type_name
        flag = f"kashq.throttle:{key}"
        # The "open" state is a control record of the driver rather than a lock:
        # reading it must not take it, or two workers checking at once would
        # each think the other's check was the throttle.
        until = context.driver.get_control(flag).get(flag)
        now = context.clock.time()  # the driver's clock: control records expire by it
        if until is not None and float(until) > now:
            raise ReleaseJob(float(until) - now, reason=f"exceptions of {key!r} throttled")
        try:
            return call_next()
        except ReleaseJob:
            raise
        except Exception:
            if context.locks.hit(f"throttle:{key}", self.decay_s) >= self.max_exceptions:
                failed_at = context.clock.time()
                left_s = window_remaining_s(failed_at, self.decay_s)
                context.driver.put_control(flag, repr(failed_at + left_s), ttl_s=left_s)
            raise
