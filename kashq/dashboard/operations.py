"""Bulk actions on failed jobs, run on a thread of the dashboard's process, with progress.

Retrying or forgetting "everything matching this filter" may touch a hundred
thousand records: far more than one request should wait for. The action
starts an :class:`Operation` that walks the matching records a page at a time
(newest first, by id) and the Failed screen shows how far it got. A retry
pushes each job back and only then forgets its record (as ``queue:retry``
does), so a dashboard that stops half-way leaves the rest failed, never lost.
An operation takes the jobs that match when it starts, never those that fail
after, and one runs at a time.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from kashq.dlq import push_back
from kashq.exceptions import KashqError
from kashq.failed.base import FailedFilter, FailedJob, FailedJobStore
from kashq.manager import QueueManager

log = logging.getLogger(__name__)

PAGE = 500
KEPT = 10  # finished operations still shown


@dataclass
class Operation:
    """One bulk action: what, on how many, and how far it got."""

    id: int
    action: str  # "retry" or "forget"
    description: str
    total: int
    done: int = 0
    errors: int = 0
    last_error: str = ""
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    @property
    def percent(self) -> int:
        return 100 if self.total == 0 else min(100, self.done * 100 // self.total)


class Operations:
    """The bulk actions of one dashboard, newest first."""

    def __init__(self) -> None:
        self._ops: deque[Operation] = deque(maxlen=KEPT)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def recent(self) -> list[Operation]:
        with self._lock:
            return list(self._ops)

    def running(self) -> bool:
        return any(op.finished_at is None for op in self.recent())

    def start(
        self, manager: QueueManager, connection: str, action: str, where: FailedFilter,
        description: str,
    ) -> Operation:  # fmt: skip
        """Retry or forget every failed job matching ``where`` now (jobs that fail later are
        left alone), on a thread; ValueError while another bulk action runs (two would push
        the same jobs twice)."""
        store = manager.failed_store(connection)
        with self._lock:
            if any(op.finished_at is None for op in self._ops):
                raise ValueError("a bulk action is still running: wait for it to finish")
            newest = store.page(where=where, limit=1)
            upto = newest[0].id + 1 if newest else 0
            op = Operation(next(self._ids), action, description, store.count(where=where))
            self._ops.appendleft(op)
        work = _retry if action == "retry" else _forget
        thread = threading.Thread(
            target=_run, args=(op, lambda: work(manager, connection, where, upto, op)),
            name=f"kashq-dashboard-{action}", daemon=True,
        )  # fmt: skip
        thread.start()
        return op


def _run(op: Operation, work: Callable[[], None]) -> None:
    try:
        work()
    except KashqError as exc:
        op.errors += 1
        op.last_error = str(exc)
    except Exception as exc:  # a bug must end this operation, not the dashboard
        log.exception("bulk %s failed", op.action)
        op.errors += 1
        op.last_error = f"{type(exc).__name__}: {exc}"
    finally:
        op.finished_at = time.time()


def _pages(store: FailedJobStore, where: FailedFilter, before: int) -> Iterator[list[FailedJob]]:
    """The jobs matching ``where`` below id ``before``, a page at a time, newest first."""
    while page := store.page(where=where, before_id=before, limit=PAGE):
        yield page
        before = page[-1].id


def _retry(
    manager: QueueManager, connection: str, where: FailedFilter, before: int, op: Operation
) -> None:
    store = manager.failed_store(connection)
    for page in _pages(store, where, before):
        for job in page:
            try:
                push_back(manager, store, job)
            except KashqError as exc:
                op.errors += 1
                op.last_error = str(exc)
            else:
                op.done += 1


def _forget(
    manager: QueueManager, connection: str, where: FailedFilter, before: int, op: Operation
) -> None:
    store = manager.failed_store(connection)
    for page in _pages(store, where, before):
        op.done += store.forget_many([job.id for job in page])
