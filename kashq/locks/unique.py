"""Unique jobs' claims: taken at dispatch, freed by token once the work no longer needs them.

A job with ``unique_for`` claims lock ``unique:<type>:<unique_id>`` when it is
dispatched; while the claim stands, an equal job is not pushed. The claim's key,
token and release point (``unique_until``) travel in the envelope's metadata.
The worker frees it when processing starts (``"processing"``) or once the job
completed or failed for good (``"completed"``); a retry keeps it. Whoever
removes jobs without running them (``queue:clear``) frees their claims. Freeing
goes through the token, so a claim that expired and was taken by a newer
dispatch is left alone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import cast

from kashq.envelope import UNIQUE_KEY, UNIQUE_TOKEN, UNIQUE_UNTIL
from kashq.exceptions import KashqError
from kashq.locks.base import Lock, LockBackend
from kashq.locks.held import HeldLock, TokenSteps

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Claim:
    """A taken unique lock, and the envelope metadata that records it."""

    lock: Lock
    metadata: dict[str, str]


class UniqueLock:
    """Claims and frees unique jobs' locks on one lock backend.

    ``locks`` gives the backend; it is asked only when a claim is taken or
    freed, so a job that is not unique never touches it.
    """

    def __init__(self, locks: Callable[[], LockBackend]) -> None:
        self._locks = locks

    @classmethod
    def on(cls, locks: LockBackend) -> UniqueLock:
        """A unique lock on ``locks``, a backend at hand."""
        return cls(lambda: locks)

    # -- dispatching ----------------------------------------------------
    def claim(self, key: str, ttl_s: float, until: str) -> Claim | None:
        """Take ``key`` for ``ttl_s`` seconds; None if an equal job holds it.

        ``until`` is when the worker frees it: ``"processing"`` or ``"completed"``.
        """
        lock = self._locks().try_acquire(key, float(ttl_s))
        if lock is None:
            return None
        return Claim(lock, {UNIQUE_KEY: key, UNIQUE_TOKEN: lock.token, UNIQUE_UNTIL: until})

    @staticmethod
    def unclaim(claims: Iterable[Claim]) -> None:
        """Free the claims of jobs that were not pushed after all."""
        for claim in claims:
            with contextlib.suppress(KashqError):  # else the claim runs out by its TTL
                claim.lock.release()

    # -- working --------------------------------------------------------
    def free_at_start(self, metadata: Mapping[str, str] | None, job_id: str) -> None:
        """Free the claim of job ``job_id`` if it is unique until processing, as that starts."""
        if metadata and metadata.get(UNIQUE_UNTIL) == "processing":
            self._free_noted(metadata, job_id)

    def free_at_end(self, metadata: Mapping[str, str] | None, job_id: str) -> None:
        """Free the claim of job ``job_id`` once it completed or failed for good."""
        # A job unique until processing freed its claim when it started.
        if metadata and UNIQUE_KEY in metadata and metadata.get(UNIQUE_UNTIL) != "processing":
            self._free_noted(metadata, job_id)

    def free_claims(self, claims: Iterable[tuple[str, str]]) -> None:
        """Free the claims (lock key, token) of jobs removed without running."""
        for key, token in claims:
            self._free(key, token, "a removed job")

    def _free_noted(self, metadata: Mapping[str, str], job_id: str) -> None:
        key, token = metadata.get(UNIQUE_KEY), metadata.get(UNIQUE_TOKEN)
        if key and token:
            self._free(key, token, f"job {job_id}")

    def _free(self, key: str, token: str, whose: str) -> None:
        # Every kashq backend implements the token steps behind its HeldLocks.
        steps = cast(TokenSteps, self._locks())
        try:
            HeldLock(steps, key, token).release()
        except KashqError as exc:  # the claim expires by its TTL instead
            log.warning("could not free unique lock %s of %s: %s", key, whose, exc)
