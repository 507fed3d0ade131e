"""Every Redis key kashq uses is built here and nowhere else.

All keys of one queue share the hash tag ``{<queue>}`` (``kashq:{emails}:ready``),
so they live in one Redis Cluster slot and every script can touch them
atomically.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one queue.

    ``jobs``      HASH  job id → encoded envelope
    ``state``     HASH  job id → ``"<priority>|<seq>|<deliveries>|<token>"``
    ``ready``     ZSET  score -priority, member ``"<seq:15 digits>|<id>"`` (FIFO by seq)
    ``delayed``   ZSET  score available_at, member job id
    ``reserved``  ZSET  score lease deadline, member job id
    ``seq``       STRING counter for FIFO order
    ``wake``      LIST  wake-up tokens idle workers block on
    ``claims``    HASH  reservation token → job id (a repeated reserve returns the same job)
    """

    jobs: str
    state: str
    ready: str
    delayed: str
    reserved: str
    seq: str
    wake: str
    claims: str


def queue_keys(prefix: str, queue: str) -> QueueKeys:
    """The keys of ``queue`` under ``prefix``."""
    base = f"{prefix}:{{{queue}}}"
    return QueueKeys(
        jobs=f"{base}:jobs",
        state=f"{base}:state",
        ready=f"{base}:ready",
        delayed=f"{base}:delayed",
        reserved=f"{base}:reserved",
        seq=f"{base}:seq",
        wake=f"{base}:wake",
        claims=f"{base}:claims",
    )
