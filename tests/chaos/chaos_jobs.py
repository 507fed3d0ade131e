"""The jobs of the chaos scenarios, and the kill points (imported by every worker).

Every job writes to the ledger file named by ``KASHQ_TEST_CHAOS_LEDGER`` (one
``O_APPEND`` write per line, so concurrent workers never tear one): ``start``
when its ``handle()`` begins and ``done`` when it ends well.

A job may name a *kill point* where it SIGKILLs its own worker process, on
its first delivery only (an ``O_EXCL`` marker file decides, so exactly one
process ever kills for it):

- ``reserve``: reserved, ``handle()`` not started (its batch is in flight too);
- ``handle``: in the middle of ``handle()``;
- ``ack``: ``handle()`` finished well, the acknowledgement not yet sent (for a
  batch's job: counted in its batch; for a chain's step: its successor pushed);
- ``count``: a batch's job finished well, not yet counted in its batch;
- ``flush``: a batch's job finished and settled, waiting to be counted with its
  ack (its worker's successor counts it as it acknowledges it);
- ``push``: a chain's step finished well, its successor not yet pushed.

A batch named ``kill-push...`` kills the worker whose count made its callbacks
due, before it pushes them (once per batch): the sweep, run every
:data:`SWEEP_S` here, must push them.

The kill points wrap :meth:`kashq.Worker.process` and the worker's batch and
chain steps, only when ``KASHQ_TEST_CHAOS_LEDGER`` is set: hooks that exist in
this test module alone.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from kashq import Job, Outcome, Worker
from kashq.drivers.base import Reservation

LEDGER = os.environ.get("KASHQ_TEST_CHAOS_LEDGER", "")
KILL_POINTS = ("reserve", "handle", "ack")
SWEEP_S = 1.0


def note(kind: str, job_id: str, extra: str = "") -> None:
    line = f"{kind} {job_id} {os.getpid()} {time.time():.6f} {extra}".rstrip() + "\n"
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def kill_here(job_id: str, point: str) -> None:
    """SIGKILL this process, unless a process already killed itself for this job."""
    marker = Path(LEDGER).with_name(f"killed-{job_id}")
    try:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return
    note("kill", job_id, point)
    os.kill(os.getpid(), signal.SIGKILL)


class Work(Job):
    """Sleeps ``ms`` (from 200 ms on, checking for a cancel every 20 ms); fails its first
    ``fail_first`` attempts, or every one if ``fails``."""

    ms: float = 0.0
    fail_first: int = 0
    fails: bool = False
    kill_at: str = ""
    tries = 10
    backoff = 0

    def handle(self) -> None:
        assert self.envelope is not None
        job_id = self.envelope.id
        note("start", job_id)
        if self.kill_at == "handle":
            kill_here(job_id, "handle")
        if self.ms >= 200:  # a long job checks for a cancel every 20 ms
            until = time.monotonic() + self.ms / 1000
            while time.monotonic() < until:
                self.cancelled()
                time.sleep(0.02)
        elif self.ms:
            time.sleep(self.ms / 1000)
        if self.fails:
            raise RuntimeError("this job fails on every attempt")
        if self.envelope.attempts < self.fail_first:
            raise RuntimeError(f"attempt {self.envelope.attempts + 1} fails on purpose")
        note("done", job_id)


class FailsForGood(Work):
    """One attempt, which raises: straight to ``failed_jobs``."""

    fails: bool = True
    tries = 1


class Callback(Job):
    """A workflow's callback: notes ``start`` and ``done`` with its ``kind``."""

    kind: str

    def handle(self) -> None:
        assert self.envelope is not None
        note("start", self.envelope.id, self.kind)
        note("done", self.envelope.id, self.kind)


def _kill_point(res: Reservation) -> str:
    if '"kill_at"' not in res.raw:
        return ""
    payload = json.loads(res.raw).get("payload", {})
    point = payload.get("kill_at", "") if isinstance(payload, dict) else ""
    return point if point in ("reserve", "ack") else ""


def _install_kill_points() -> None:
    process = Worker.process

    def process_with_kill_points(
        self: Worker, reservation: Reservation, *, defer_ack: bool = False
    ) -> Outcome:
        point = _kill_point(reservation)
        if point == "reserve":
            kill_here(reservation.id, point)
        outcome = process(self, reservation, defer_ack=defer_ack)
        if point == "ack" and outcome is Outcome.COMPLETED:
            kill_here(reservation.id, point)
        return outcome

    Worker.process = process_with_kill_points  # type: ignore[method-assign]


def _install_workflow_kill_points() -> None:
    from kashq.worker import batches, chains, controls

    controls.SWEEP_S = SWEEP_S  # read by each worker as it starts, after this import
    counter, advanced, push_due = batches.BatchCounter, chains.ChainSteps.advanced, batches.push_due
    ended, later, flush, reserve = counter.ended, counter.later, counter.flush, counter.reserve
    at_flush: list[str] = []

    def ended_with_kill(self, env, state):  # type: ignore[no-untyped-def]
        if state == "done" and env.payload.get("kill_at") == "count":
            kill_here(env.id, "count")
        return ended(self, env, state)

    def later_with_kill(self, env):  # type: ignore[no-untyped-def]
        point = env.payload.get("kill_at")
        if point == "count":
            kill_here(env.id, "count")
        elif point == "flush":
            at_flush.append(env.id)
        return later(self, env)

    def flush_with_kill(self, acks):  # type: ignore[no-untyped-def]
        while at_flush:
            kill_here(at_flush.pop(), "flush")
        return flush(self, acks)

    def reserve_with_kill(self, driver, queues, acks, **options):  # type: ignore[no-untyped-def]
        while at_flush:  # the completed jobs are counted by this reserve (plain Redis)
            kill_here(at_flush.pop(), "flush")
        return reserve(self, driver, queues, acks, **options)

    def advanced_with_kill(self, res, env, edits):  # type: ignore[no-untyped-def]
        if env.payload.get("kill_at") == "push":
            kill_here(env.id, "push")
        return advanced(self, res, env, edits)

    def push_due_with_kill(driver, store, record, due, now):  # type: ignore[no-untyped-def]
        if record.name.startswith("kill-push"):
            kill_here(record.id, "callbacks")
        return push_due(driver, store, record, due, now)

    counter.ended = ended_with_kill  # type: ignore[method-assign]
    counter.later = later_with_kill  # type: ignore[method-assign]
    counter.flush = flush_with_kill  # type: ignore[method-assign]
    counter.reserve = reserve_with_kill  # type: ignore[method-assign]
    chains.ChainSteps.advanced = advanced_with_kill  # type: ignore[method-assign]
    batches.push_due = push_due_with_kill


if LEDGER:
    _install_kill_points()
    _install_workflow_kill_points()
