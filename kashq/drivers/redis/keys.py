"""Every Redis key kashq uses is built here and nowhere else.

That is the driver's queue, tag-index and control keys, the locks and counters
of :mod:`kashq.locks.redis`, the event stream of :mod:`kashq.events.redis`, the
job results of :mod:`kashq.results.redis`, the recent-jobs lists of
:mod:`kashq.recent.redis` (under their queue's hash tag), the batches of
:mod:`kashq.workflows.batches.redis` and the minutes of :mod:`kashq.history.redis`
(a key each, untagged: nothing touches two at once).
All keys of one queue share the hash tag ``{<queue>}`` (``kashq:{emails}:ready``),
so they live in one Redis Cluster slot and every script can touch them
atomically. The control records are one hash, ``<prefix>:{control}``; a queue
named ``control`` shares its slot but none of its keys. A lock or counter is
tagged with its own key (``<prefix>:lock:{<key>}``), the event stream with
``{events}``, a job's result and its done stream with the job's id, a batch's
keys with the batch's id (``kashq:batch:{<id>}``) and the batch indexes with
``{batches}``.
"""

from __future__ import annotations

from dataclasses import dataclass

_JOBS_SUFFIX = "}:jobs"
_GLOB_SPECIAL = str.maketrans({c: f"\\{c}" for c in "*?[]\\"})


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
    ``tags``      SET   the keys of the queue's tag indexes (:meth:`tag`), for ``clear``
    ``once``      ZSET  job id → when ``push_once`` forgets it was pushed (Unix seconds)

    A tag's index, ``<tags>:<tag>``, is a ZSET: member job id, score the job's seq when
    it was pushed or released (its place in the queue's order).
    """

    jobs: str
    state: str
    ready: str
    delayed: str
    reserved: str
    seq: str
    wake: str
    claims: str
    tags: str
    once: str

    def tag(self, tag: str) -> str:
        """The index of the queue's jobs that carry ``tag``."""
        return f"{self.tags}:{tag}"


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
        tags=f"{base}:tags",
        once=f"{base}:once",
    )


def jobs_key_pattern(prefix: str) -> str:
    """A SCAN pattern matching the ``jobs`` key of every queue under ``prefix``."""
    return f"{prefix.translate(_GLOB_SPECIAL)}:{{*{_JOBS_SUFFIX}"


def queue_of_jobs_key(prefix: str, key: str) -> str | None:
    """The queue whose ``jobs`` key is ``key``, or None if it is not one under ``prefix``.

    The name is what lies between the hash tag's braces, so it may hold ``:``;
    queue names never hold braces, so a key with more (another prefix nested
    under this one) is not a queue of ours.
    """
    start = f"{prefix}:{{"
    if not (key.startswith(start) and key.endswith(_JOBS_SUFFIX)):
        return None
    queue = key[len(start) : -len(_JOBS_SUFFIX)]
    if not queue or "{" in queue or "}" in queue or queue_keys(prefix, queue).jobs != key:
        return None
    return queue


def control_key(prefix: str) -> str:
    """The hash of control records under ``prefix``: name → ``{"v": value, "exp": unix|null}``."""
    return f"{prefix}:{{control}}"


def lock_key(prefix: str, key: str) -> str:
    """The Redis key of lock ``key``: ``<prefix>:lock:{<key>}``."""
    return f"{prefix}:lock:{{{key}}}"


def counter_key(prefix: str, key: str, window: int) -> str:
    """The Redis key of counter ``key`` in window number ``window``."""
    return f"{prefix}:count:{{{key}}}:{window}"


def stream_key(prefix: str) -> str:
    """The stream holding every event under ``prefix`` (one hash tag: one cluster slot)."""
    return f"{prefix}:{{events}}:stream"


def result_key(prefix: str, job_id: str) -> str:
    """The hash holding job ``job_id``'s outcome and progress: ``<prefix>:result:{<job_id>}``."""
    return f"{prefix}:result:{{{job_id}}}"


def result_done_key(prefix: str, job_id: str) -> str:
    """The stream waiters of ``job_id`` block on (its result's hash tag: one cluster slot)."""
    return f"{result_key(prefix, job_id)}:done"


@dataclass(frozen=True, slots=True)
class RecentKeys:
    """The list of one queue's jobs that ended one way (:mod:`kashq.recent.redis`).

    ``ids``      ZSET  score finished_at, member job id
    ``records``  HASH  job id → the record's JSON

    Under the queue's hash tag: one Cluster slot with its queue's keys.
    """

    ids: str
    records: str


def recent_keys(prefix: str, queue: str, outcome: str) -> RecentKeys:
    """The recent ``outcome`` (``completed``, ``cancelled``, ``expired``) list of ``queue``."""
    base = f"{prefix}:{{{queue}}}:recent:{outcome}"
    return RecentKeys(ids=base, records=f"{base}:records")


def recent_queues_key(prefix: str) -> str:
    """The ZSET of queues holding recent jobs: member queue, score its newest finished_at."""
    return f"{prefix}:recent:{{queues}}"


def history_key(prefix: str, span: int, minute: int) -> str:
    """The HASH of one span (``span`` minutes from ``minute``) of the metrics history
    (:mod:`kashq.history.redis`)."""
    return f"{prefix}:history:{span}:{minute}"


@dataclass(frozen=True, slots=True)
class BatchKeys:
    """The keys of one batch (:mod:`kashq.workflows.batches.redis`), under its id's hash tag.

    ``record``  HASH  the batch's fields (:class:`~kashq.workflows.batches.base.BatchRecord`)
    ``jobs``    HASH  job id → how it ended (``done``, ``failed``, ``cancelled``; ``""`` pending)
    ``order``   LIST  job ids in dispatch order
    """

    record: str
    jobs: str
    order: str


def batch_keys(prefix: str, batch_id: str) -> BatchKeys:
    """The keys of batch ``batch_id``: one Cluster slot, whatever queues its jobs run on."""
    base = f"{prefix}:batch:{{{batch_id}}}"
    return BatchKeys(record=base, jobs=f"{base}:jobs", order=f"{base}:order")


def batches_key(prefix: str) -> str:
    """The ZSET of every batch: member batch id, score its creation time."""
    return f"{prefix}:{{batches}}"


def open_batches_key(prefix: str) -> str:
    """The ZSET of batches not yet finished and settled (the sweep reads it), by creation."""
    return f"{prefix}:{{batches}}:open"
