"""Keeping how jobs ended in the result store: the value of a completed job, or its failure.

Only what someone may ask for is written: a job that returned ``None`` writes
nothing (so a drain of such jobs costs no extra round trip), and a time-to-live
of 0 keeps nothing. A result that cannot be written is logged; the job's
outcome (acknowledged, or recorded as failed) never depends on it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pydantic_core

from kashq.clock import Clock
from kashq.envelope import Envelope
from kashq.exceptions import DriverError
from kashq.failed.base import FailedJob
from kashq.job import Job
from kashq.results.base import Outcome, ResultStore, StoredResult

log = logging.getLogger(__name__)


class OutcomeKeeper:
    """Writes completed values and failures to the store ``store_of()`` gives."""

    def __init__(
        self, store_of: Callable[[], ResultStore], default_ttl_s: float, clock: Clock
    ) -> None:
        self._store_of = store_of
        self._default_ttl_s = default_ttl_s
        self._clock = clock

    def completed(self, env: Envelope, job: Job | None, value: object, attempt: int) -> None:
        """Keep ``value`` (not None), what attempt ``attempt`` of ``env`` returned, as JSON."""
        ttl_s = self.ttl_s(job)
        if ttl_s <= 0:
            return
        text, error = None, ""
        try:
            text = pydantic_core.to_json(value).decode()
        except Exception as exc:  # PydanticSerializationError, or a serializer of the user's
            error = f"the value handle() returned cannot be stored as JSON: {exc}"
            log.warning("%s %s: %s", env.type, env.id, error)
        result = StoredResult(
            env.id, "completed", env.type, env.queue, value=text, error=error,
            attempts=attempt, finished_at=self._clock.time(),
        )  # fmt: skip
        self._put(result, ttl_s)

    def failed(self, record: FailedJob, job: Job | None) -> None:
        """Keep the failure ``record`` describes, for waiters and ``status()``."""
        ttl_s = self.ttl_s(job)
        if ttl_s <= 0:
            return
        result = StoredResult(
            record.uuid, "failed", record.job_type, record.queue, error=record.error,
            reason=record.reason, attempts=record.attempts, finished_at=self._clock.time(),
        )  # fmt: skip
        self._put(result, ttl_s)

    def stopped(
        self, env: Envelope, job: Job | None, status: Outcome, attempts: int, why: str
    ) -> None:
        """Keep that ``env`` ended ``cancelled`` or ``expired`` (``why``: one line)."""
        ttl_s = self.ttl_s(job)
        if ttl_s <= 0:
            return
        result = StoredResult(
            env.id, status, env.type, env.queue, error=why, attempts=attempts,
            finished_at=self._clock.time(),
        )  # fmt: skip
        self._put(result, ttl_s)

    def ttl_s(self, job: Job | None) -> float:
        """How long ``job``'s outcome is kept: its class's ``result_ttl``, else the default."""
        own = None if job is None else type(job).result_ttl
        return self._default_ttl_s if own is None else float(own)

    def _put(self, result: StoredResult, ttl_s: float) -> None:
        try:
            self._store_of().put(result, ttl_s)
        except DriverError as exc:
            log.warning("could not keep the outcome of job %s (%s)", result.job_id, exc)
        except Exception:  # a bug must not keep the job from its ack
            log.exception("could not keep the outcome of job %s", result.job_id)
