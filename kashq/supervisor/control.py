"""The supervisor's conversation with the queue backend, on a thread of its own.

Reading the ``queue:restart`` record, publishing the supervisor's figures for
``queue:monitor``, and handing back the jobs of workers killed by a forced stop
all wait on the network; doing them here keeps the supervisor's loop — which
enforces timeouts and answers signals — free of I/O even while Redis or the
database is slow or gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from kashq.clock import SYSTEM_CLOCK
from kashq.drivers.base import BatchReserving, Driver, Reservation
from kashq.envelope import decode
from kashq.exceptions import DriverError, EnvelopeError, KashqError

log = logging.getLogger(__name__)

RESTART_RECORD = "restart"
STATS_PREFIX = "supervisor:"
_RESTART_POLL_S = 1.0
_STATS_EVERY_S = 2.0
_STATS_TTL_S = 10.0


class ControlThread:
    """Polls for restarts, publishes figures, and settles abandoned jobs."""

    def __init__(self, driver: Driver, figures: Callable[[], dict[str, Any]]) -> None:
        self.driver = driver
        self._figures = figures
        self._tasks: queue.Queue[Callable[[], object] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="kashq-control", daemon=True)
        self._warned = False
        # Host and pid name the record for people; the random part keeps two
        # containers with the same hostname and pid 1 apart.
        self.name = f"{STATS_PREFIX}{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self.restart_at = self._restart_record() or time.time()
        self.baseline = self.restart_at

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float) -> None:
        """Finish the queued work (for up to ``timeout_s``), then withdraw the figures."""
        self._tasks.put(None)
        self._thread.join(timeout_s)

    def hand_back(self, reservation: Reservation) -> None:
        """Put a job a killed worker was running back, as soon as possible."""
        self._tasks.put(lambda: self._release(reservation))

    def settle_returned(self, res: Reservation) -> None:
        """Settle a job whose ``handle()`` returned when its worker was killed (see
        :func:`settle_returned`)."""
        self._tasks.put(lambda: self._call(settle_returned, self.driver, res))

    def settle_left_behind(self, done: list[Reservation], waiting: list[Reservation]) -> None:
        """Acknowledge a killed worker's completed jobs and give its waiting ones back."""
        self._tasks.put(lambda: self._call(settle_left_behind, self.driver, done, waiting))

    # -- the thread -------------------------------------------------------
    def _run(self) -> None:
        next_poll = next_stats = 0.0
        while True:
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + _RESTART_POLL_S
                requested = self._restart_record()
                if requested is not None and requested > self.restart_at:
                    self.restart_at = requested
            if now >= next_stats:
                next_stats = now + _STATS_EVERY_S
                self._call(self.driver.put_control, self.name, self._stats(), _STATS_TTL_S)
            try:
                task = self._tasks.get(timeout=max(min(next_poll, next_stats) - now, 0.01))
            except queue.Empty:
                continue
            if task is None:
                self._call(self.driver.delete_control, self.name)
                return
            task()

    def _release(self, res: Reservation) -> None:
        try:
            envelope = decode(res.raw)
        except EnvelopeError:
            return  # its lease brings it back and a worker fails it with the reason
        self._call(self.driver.release, res, envelope)

    def _restart_record(self) -> float | None:
        records = self._call(self.driver.get_control, RESTART_RECORD)
        try:
            return None if not records else float(records[RESTART_RECORD])
        except (KeyError, ValueError):
            return None

    def _stats(self) -> str:
        try:
            figures = self._figures()
        except ValueError:  # the slots were closed under us: the supervisor is exiting
            figures = {}
        return json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), **figures, "at": time.time()}
        )

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            result = fn(*args)
        except KashqError as exc:
            if not self._warned:
                self._warned = True
                log.warning("the supervisor cannot reach the queue (%s); it keeps trying", exc)
            return None
        self._warned = False
        return result


def counted(driver: Driver, done: Sequence[Reservation]) -> list[Reservation]:
    """``done`` once its batch jobs are counted in their batches (their dead worker had
    them waiting to be counted with their acks); those that could not be are left out:
    not acknowledged, they are delivered again and counted then."""
    from kashq.worker.batches import BatchCounter
    from kashq.workflows.batches import store_for

    held: dict[str, list[Reservation]] = {}
    for res in done:
        raw = res.raw or _stored(driver, res)  # the slot keeps no text of held jobs
        if '"batch"' in raw:  # in the text of every batch job's envelope
            with contextlib.suppress(EnvelopeError):
                batch_id = decode(raw).batch
                if batch_id is not None:
                    held.setdefault(batch_id, []).append(res)
    if not held:
        return list(done)
    store = store_for(driver)
    counter, missed = BatchCounter(driver, lambda: store, SYSTEM_CLOCK), set[str]()
    for batch_id, jobs in held.items():
        try:
            counter.count(batch_id, [res.id for res in jobs], "done")
        except DriverError as exc:
            log.warning("could not count %d job(s) in batch %s (%s)", len(jobs), batch_id, exc)
            missed.update(res.id for res in jobs)
    return [res for res in done if res.id not in missed]


def _stored(driver: Driver, res: Reservation) -> str:
    """The stored text of held job ``res`` ("" if it is gone or cannot be read)."""
    try:
        found = driver.find(res.id, [res.queue])
    except DriverError:
        return ""
    return "" if found is None else found.raw


def settle_returned(driver: Driver, res: Reservation) -> None:
    """Settle a job whose ``handle()`` returned in a worker that died before it settled
    the job: acknowledged; but a job of a batch or a chain runs again (released as it
    was, no attempt counted), since its count, its result and its next step (with what
    it added to its chain) died with its worker."""
    try:
        env = decode(res.raw)
    except EnvelopeError:
        env = None
    if env is not None and (env.batch is not None or env.chain is not None):
        driver.release(res, env)
    else:
        driver.ack(res)


def settle_left_behind(
    driver: Driver, done: Sequence[Reservation], waiting: Sequence[Reservation]
) -> None:
    """Acknowledge ``done`` and give ``waiting`` back (uncounted) for a worker that died.

    Reservations no longer held under their tokens are skipped by the driver.
    A driver that reserves one job at a time has no waiting jobs to give back.
    """
    batches = driver if isinstance(driver, BatchReserving) else None
    done = counted(driver, done)
    if done:
        if batches is not None:
            batches.ack_many(done)
        else:
            for res in done:
                driver.ack(res)
    if waiting and batches is not None:
        batches.unreserve(waiting)
