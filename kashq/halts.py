"""Operators' stops, kept as control records: paused queues, cancelled running jobs and
cancelled batches.

All live in the driver's control records (:meth:`~kashq.drivers.base.Driver.put_control`),
so they are as durable as the jobs: a worker that starts, or restarts, reads
them before its first reserve, and a running worker re-reads them about once a
second, in one round trip for all (they share the prefix :data:`HALT_PREFIX`),
never once per job. A paused queue's record holds no time limit; a cancelled
job's lasts until a worker settles the job as cancelled, or
:data:`CANCEL_MARK_TTL_S` at most, and a cancelled batch's that long. Each
record's value is JSON naming what it stops, so a queue name too long for a
record name is still read back whole.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

HALT_PREFIX = "halt:"
QUEUE_PREFIX = "halt:queue:"
JOB_PREFIX = "halt:job:"
BATCH_PREFIX = "halt:batch:"
CANCEL_MARK_TTL_S = 7 * 86_400.0
"""How long a cancel marker waits for the worker holding its job (a week: longer than any lease
or backoff a job would wait through before a worker sees it)."""

_NAME_MAX = 191  # kashq.drivers.base.CONTROL_NAME_MAX


@dataclass(frozen=True, slots=True)
class Halts:
    """What is stopped now: queues paused and ids of jobs cancelled while a worker held them."""

    paused: frozenset[str] = frozenset()
    cancelled: frozenset[str] = frozenset()
    batches: frozenset[str] = frozenset()  # cancelled batches: their jobs do not start


NO_HALTS = Halts()


def queue_record(queue: str) -> str:
    """The control record name pausing ``queue`` (hashed when the name would be too long)."""
    name = QUEUE_PREFIX + queue
    if len(name) <= _NAME_MAX:
        return name
    return QUEUE_PREFIX + "#" + hashlib.sha256(queue.encode()).hexdigest()


def job_record(job_id: str) -> str:
    """The control record name marking job ``job_id`` cancelled."""
    return JOB_PREFIX + job_id


def batch_record(batch_id: str) -> str:
    """The control record name marking batch ``batch_id`` cancelled."""
    return BATCH_PREFIX + batch_id


def batch_value(batch_id: str, at: float) -> str:
    return json.dumps({"batch": batch_id, "at": at})


def pause_value(queue: str, at: float) -> str:
    return json.dumps({"queue": queue, "at": at})


def cancel_value(job_id: str, queue: str, at: float) -> str:
    return json.dumps({"job": job_id, "queue": queue, "at": at})


def read_halts(records: dict[str, str]) -> Halts:
    """The halts that control ``records`` (name → value, as ``get_control`` gives) hold.

    A record whose value is not what kashq writes is skipped, never fatal.
    """
    paused: set[str] = set()
    cancelled: set[str] = set()
    batches: set[str] = set()
    for name, value in records.items():
        try:
            data = json.loads(value)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        if name.startswith(QUEUE_PREFIX) and isinstance(data.get("queue"), str):
            paused.add(data["queue"])
        elif name.startswith(JOB_PREFIX) and isinstance(data.get("job"), str):
            cancelled.add(data["job"])
        elif name.startswith(BATCH_PREFIX) and isinstance(data.get("batch"), str):
            batches.add(data["batch"])
    if not paused and not cancelled and not batches:
        return NO_HALTS
    return Halts(frozenset(paused), frozenset(cancelled), frozenset(batches))


def paused_since(records: dict[str, str]) -> dict[str, float]:
    """Each paused queue of ``records`` with when it was paused (Unix seconds)."""
    since: dict[str, float] = {}
    for name, value in records.items():
        if not name.startswith(QUEUE_PREFIX):
            continue
        try:
            data = json.loads(value)
            since[str(data["queue"])] = float(data.get("at", 0.0))
        except (ValueError, TypeError, KeyError):
            continue
    return since
