"""Retry policy as small pure functions (the worker loop only calls them)."""

from __future__ import annotations

from kashq.exceptions import PayloadError


def backoff_delay(attempt: int, base_s: float) -> float:
    """Linear backoff: after attempt ``n`` fails, wait ``base_s * n`` seconds.

    With the defaults (3 tries, 1 s) that is attempt 1 → 1 s → attempt 2 → 2 s → attempt 3.
    """
    return base_s * attempt


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
