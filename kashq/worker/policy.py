"""Retry policy as small pure functions (the worker loop only calls them).

:func:`decide` answers "after this failed attempt, retry when, or why not?"
from a job's :class:`RetryRules`; :func:`rules_for` gathers those rules from
the envelope, the job class and the worker's defaults.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from kashq.envelope import Envelope
from kashq.exceptions import FailJob, JobTimeout, PayloadError, UnknownJobType
from kashq.retry import DEFAULT_BACKOFF, Backoff, Exponential, Linear, Random, Steps, StopReason

log = logging.getLogger(__name__)

BackoffMethod = Callable[[int, BaseException], object]


@dataclass(frozen=True, slots=True)
class RetryRules:
    """Everything that decides whether a failed attempt is retried, and when.

    ``backoff`` is a backoff value, or the job's own ``backoff(attempt, error)``
    method with ``fallback`` for when that method fails. With ``retry_until``
    (Unix seconds) the deadline replaces ``max_tries``, as in Laravel.
    """

    max_tries: int
    backoff: Backoff | BackoffMethod
    fallback: Backoff = DEFAULT_BACKOFF
    retry_until: float | None = None
    fail_on: tuple[type[BaseException], ...] = ()
    retry_on: tuple[type[BaseException], ...] = ()
    max_exceptions: int | None = None


def rules_for(env: Envelope, job: object, max_tries: int, default: Backoff) -> RetryRules:
    """The rules of job ``env``: its envelope's options over its class's over the defaults.

    ``job`` is the Job instance (None for a function handler): its class
    gives ``fail_on``, ``retry_on``, ``max_exceptions`` and a ``backoff`` method.
    """
    cls = type(job)
    method = getattr(job, "backoff", None) if callable(getattr(cls, "backoff", None)) else None
    backoff: Backoff | BackoffMethod = default
    if env.backoff is not None:
        backoff = env.backoff
    elif env.backoff_s is not None:
        backoff = Linear(env.backoff_s)
    elif method is not None:
        backoff = method
    return RetryRules(
        max_tries=env.max_tries or max_tries,
        backoff=backoff,
        fallback=default,
        retry_until=env.retry_until,
        fail_on=getattr(cls, "fail_on", ()),
        retry_on=getattr(cls, "retry_on", ()),
        max_exceptions=getattr(cls, "max_exceptions", None),
    )


def decide(
    rules: RetryRules,
    error: BaseException,
    *,
    attempts: int,
    exceptions: int,
    now: float,
    rand: Random = random.random,
) -> float | StopReason:
    """Seconds to wait before the next attempt, or why there is none.

    ``attempts`` counts the attempts made, this one included; ``exceptions``
    those of them that raised. The first rule that stops wins, in the order
    the job's author is likeliest to mean: the job's own word (``FailJob``), an
    error no retry can fix, ``fail_on``/``retry_on``, ``max_exceptions``, then
    the deadline or the tries.
    """
    stop = stop_reason(rules, error, attempts=attempts, exceptions=exceptions)
    if stop is not None:
        return stop
    delay_s = backoff_delay(rules, attempts, error, rand)
    if rules.retry_until is not None and now + delay_s > rules.retry_until:
        return StopReason.DEADLINE
    return delay_s


def stop_reason(
    rules: RetryRules, error: BaseException, *, attempts: int, exceptions: int
) -> StopReason | None:
    """Which rule, if any, says attempt ``attempts`` (failed by ``error``) is the last."""
    limited = rules.max_exceptions is not None
    stops = (
        (isinstance(error, FailJob), StopReason.FAIL_JOB),
        (not retryable(error), StopReason.INVALID_PAYLOAD),
        (bool(rules.fail_on) and isinstance(error, rules.fail_on), StopReason.FAIL_ON),
        (bool(rules.retry_on) and not isinstance(error, rules.retry_on), StopReason.RETRY_ON),
        (limited and exceptions >= (rules.max_exceptions or 0), StopReason.MAX_EXCEPTIONS),
        (
            rules.retry_until is None and not should_retry(attempts, rules.max_tries),
            StopReason.TIMED_OUT if isinstance(error, JobTimeout) else StopReason.TRIES,
        ),
    )
    return next((reason for stops_here, reason in stops if stops_here), None)


def backoff_delay(
    rules: RetryRules, attempt: int, error: BaseException, rand: Random = random.random
) -> float:
    """Seconds to wait after attempt ``attempt`` failed with ``error``.

    A job's ``backoff()`` method that raises or returns no usable number of
    seconds is logged, and the worker's default backoff used instead.
    """
    backoff = rules.backoff
    if isinstance(backoff, (Linear, Steps, Exponential)):
        return backoff.delay_s(attempt, rand)
    try:
        delay = backoff(attempt, error)
    except Exception:
        log.exception("backoff() of the job raised; using the default backoff")
        return rules.fallback.delay_s(attempt, rand)
    if (
        isinstance(delay, bool)
        or not isinstance(delay, (int, float))
        or not math.isfinite(delay)
        or delay < 0
    ):
        log.warning("backoff() returned %r, not seconds >= 0; using the default backoff", delay)
        return rules.fallback.delay_s(attempt, rand)
    return float(delay)


def unrunnable(error: BaseException) -> StopReason:
    """Why a job that could not even start (``prepare`` raised ``error``) is failed."""
    if isinstance(error, UnknownJobType):
        return StopReason.UNKNOWN_TYPE
    if isinstance(error, PayloadError):
        return StopReason.INVALID_PAYLOAD
    return StopReason.INVALID_JOB


def should_retry(attempts_made: int, max_tries: int) -> bool:
    """Whether a job that has made ``attempts_made`` attempts gets another."""
    return attempts_made < max_tries


def retryable(error: BaseException) -> bool:
    """Whether another attempt could end differently from the one that raised ``error``.

    A payload that fails validation (a handler's ``envelope.payload_as()``)
    fails the same way every time: such a job is failed at once, as a class
    job whose payload does not validate is.
    """
    return not isinstance(error, PayloadError)


def worker_lost(deliveries: int, max_deliveries: int) -> bool:
    """Whether a job handed out ``deliveries`` times without an outcome is past its limit.

    Every delivery beyond the first since the last recorded outcome means a
    worker took the job and vanished (kill -9, OOM, power cut).
    """
    return deliveries > max_deliveries
