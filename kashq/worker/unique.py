"""Freeing a unique job's lock from the worker, by the token its envelope carries.

``dispatch()`` of a job with ``unique_for`` takes lock
``unique:<type>:<unique_id>`` and records its key, token and release point
(``unique_until``) in the envelope's metadata. The worker frees it when
processing starts (``"processing"``) or when the job completes or fails for
good (``"completed"``); a retry keeps it. Freeing goes through the token, so
a lock that expired and was taken by a newer dispatch is left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import cast

from kashq.envelope import UNIQUE_KEY, UNIQUE_TOKEN, UNIQUE_UNTIL, Envelope
from kashq.exceptions import KashqError
from kashq.locks.base import LockBackend
from kashq.locks.held import HeldLock, TokenSteps

log = logging.getLogger(__name__)


def release_on_start(locks_of: Callable[[], LockBackend], env: Envelope) -> None:
    """Free the lock of a job unique until processing, as its processing starts."""
    if env.metadata and env.metadata.get(UNIQUE_UNTIL) == "processing":
        _release(locks_of, env)


def release_on_end(locks_of: Callable[[], LockBackend], env: Envelope) -> None:
    """Free a unique job's lock once it completed or failed for good."""
    metadata = env.metadata
    if metadata and UNIQUE_KEY in metadata and metadata.get(UNIQUE_UNTIL) != "processing":
        _release(locks_of, env)  # a job unique until processing freed it when it started


def free_claims(locks: LockBackend, claims: Iterable[tuple[str, str]]) -> None:
    """Free the unique claims (lock key, token) of jobs removed without running."""
    for key, token in claims:
        _free(locks, key, token, "a removed job")


def _release(locks_of: Callable[[], LockBackend], env: Envelope) -> None:
    key, token = env.metadata.get(UNIQUE_KEY), env.metadata.get(UNIQUE_TOKEN)
    if key and token:
        _free(locks_of(), key, token, f"job {env.id}")


def _free(locks: LockBackend, key: str, token: str, whose: str) -> None:
    try:
        # Every kashq backend implements the token steps behind its HeldLocks.
        HeldLock(cast(TokenSteps, locks), key, token).release()
    except KashqError as exc:  # the lock expires by its TTL instead
        log.warning("could not free unique lock %s of %s: %s", key, whose, exc)
