"""Chaos for workflows: batches and chains through SIGKILLed workers (and, on Redis, a
restart of the server), on Redis and on PostgreSQL.

50 batches of 40 jobs and 50 chains of 5 steps run through three ``queue:work``
processes. A job of one batch in five, and a step of one chain in five, kill their
worker at each kill point in turn (:mod:`tests.chaos.chaos_jobs`): reserved; in
``handle()``; done but not counted in the batch; done, settled and waiting to be
counted with its ack; counted but not acknowledged; a chain step done, its
successor not pushed. Five batches kill the worker whose count
made their callbacks due before it pushes them (the sweep must push them).
The test SIGKILLs random workers besides, and restarts Redis once.

Besides the invariant of :mod:`tests.chaos.harness` (every job ended one way, none
lost, duplicates within the faults' bound), every batch has finished; ``then``,
``catch`` and ``finally`` each ran where due and never where not (a callback not due
that ran would be a job never dispatched); the batch's counts match the ledger; every
callback was pushed and marked pushed; and no chain step started before the step
before it completed.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import kashq
from kashq import QueueManager
from kashq.config import load_settings
from kashq.db import migrate
from kashq.exceptions import DriverError
from kashq.failed.database import DatabaseFailedJobStore
from kashq.workflows.batches import Callbacks
from kashq.workflows.chain import derived_id
from tests.chaos.chaos_jobs import Callback, FailsForGood, Work
from tests.chaos.harness import PREFETCH, Chaos
from tests.support import report
from tests.support.databases import postgres_database
from tests.support.services import RedisServer

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

BATCHES, MEMBERS, CHAINS, STEPS = 50, 40, 50, 5
MEMBER_KILLS = ("reserve", "handle", "count", "flush", "ack")
STEP_KILLS = ("handle", "push", "ack")


@dataclass
class Planned:
    """A batch as dispatched, and which of its callbacks are due."""

    id: str
    kind: str  # plain | allowed (a failure, failures allowed) | cancelling (a failure)
    members: list[str]
    due: Callbacks


@dataclass
class PlannedChain:
    steps: list[str]
    fails_at: int | None  # the step that fails for good, if any
    catch_id: str
    ran_catch: bool = field(default=False)


@contextlib.contextmanager
def connection(kind: str, root: Path) -> Iterator[tuple[dict[str, str], RedisServer | None]]:
    if kind == "redis":
        server = RedisServer(root, appendonly=True).start()
        try:
            yield {"KASHQ_CONNECTION": "redis", "KASHQ_REDIS_URL": server.url}, server
        finally:
            server.stop()
        return
    with postgres_database() as url:
        migrate.upgrade(url)
        yield {"KASHQ_CONNECTION": "database", "KASHQ_DATABASE_URL": url}, None


@pytest.mark.parametrize("kind", ["redis", "postgres"])
def test_batches_and_chains_fire_each_callback_once_through_kills(tmp_path, kind):
    with connection(kind, tmp_path) as (settings, server):
        chaos = Chaos.create(f"workflows-{kind}", tmp_path, settings)
        env = chaos.env
        manager = QueueManager(
            load_settings(
                connection=env["KASHQ_CONNECTION"], redis_url=env.get("KASHQ_REDIS_URL"),
                database_url=env["KASHQ_DATABASE_URL"], events=False,
            )
        )  # fmt: skip
        driver = manager.connection()
        store = DatabaseFailedJobStore(env["KASHQ_DATABASE_URL"])
        rng = random.Random(21)
        batches = [dispatch_batch(manager, chaos, rng, n) for n in range(BATCHES)]
        chains = [dispatch_chain(manager, chaos, n) for n in range(CHAINS)]
        workers = chaos.start_work("--workers", "3")
        try:
            for second in range(8):
                time.sleep(1)
                if second == 3 and server is not None:
                    with chaos.fault("Redis SIGKILLed and restarted", 3 * PREFETCH):
                        server.restart()
                elif second % 2 and workers.kill_one(rng, min_age_s=1.0) is not None:
                    chaos.worker_killed("worker SIGKILLed")
            for planned in batches:  # the callbacks due are jobs that must end
                for key, bit in (("then", Callbacks.THEN), ("catch", Callbacks.CATCH),
                                 ("finally", Callbacks.FINALLY)):  # fmt: skip
                    if planned.due & bit:
                        chaos.dispatched[derived_id(planned.id, f"{key}.0")] = 0.0
            for chain in chains:
                if chain.fails_at is not None:
                    chaos.dispatched[chain.catch_id] = 0.0
            cancelled = lambda: cancelled_members(manager, batches)  # noqa: E731
            chaos.wait_settled(driver, store, timeout_s=180, cancelled=cancelled)
        finally:
            workers.stop()
        summary = chaos.check(driver, store, cancelled=frozenset(cancelled()))
        ledger = check_batches(manager, chaos, store, batches, cancelled())
        check_chains(chaos, chains)
        report.add(f"chaos[{summary.scenario}]: {ledger}")
        manager.close()
        store.close()


def dispatch_batch(manager: QueueManager, chaos: Chaos, rng: random.Random, n: int) -> Planned:
    kind = "allowed" if n % 10 == 3 else "cancelling" if n % 10 == 7 else "plain"
    members = [
        Work(
            ms=rng.uniform(0, 15), kill_at=MEMBER_KILLS[n // 5 % 5] if m == 5 and n % 5 == 0 else ""
        )
        for m in range(MEMBERS)
    ]
    if kind != "plain":
        members[20] = FailsForGood(ms=1)
    name = f"kill-push-{n}" if n % 10 == 5 else f"batch-{n}"
    pending = (
        kashq.batch(members).name(name)
        .then(Callback(kind="then")).catch(Callback(kind="catch"))
        .finally_(Callback(kind="finally"))
    )  # fmt: skip
    if kind == "allowed":
        pending.allow_failures()
    batch = manager.dispatch_batch(pending)
    ids = batch.job_ids()
    for job_id in ids:
        chaos.dispatched[job_id] = 0.0
    due = Callbacks.FINALLY | (Callbacks.THEN if kind == "plain" else Callbacks.CATCH)
    return Planned(batch.id, kind, ids, due)


def dispatch_chain(manager: QueueManager, chaos: Chaos, n: int) -> PlannedChain:
    fails_at = 2 if n % 10 == 4 else None
    steps: list[Work] = [
        FailsForGood(ms=1)
        if k == fails_at
        else Work(ms=5, kill_at=STEP_KILLS[n // 5 % 3] if k == 1 and n % 5 == 1 else "")
        for k in range(STEPS)
    ]
    chain = kashq.chain(steps).catch(Callback(kind="chain-catch"))
    head = chain.envelopes(manager.envelope_for)
    assert head.chain is not None
    ids = [head.id, *(str(step["id"]) for step in head.chain.next)]
    manager.connection().push(head)
    for job_id in ids[: None if fails_at is None else fails_at + 1]:
        chaos.dispatched[job_id] = 0.0
    return PlannedChain(ids, fails_at, derived_id(head.id, "catch.0"))


def cancelled_members(manager: QueueManager, batches: list[Planned]) -> set[str]:
    """The jobs of the cancelling batches that ended cancelled (by their stored outcome)."""
    results, found = manager.results(), set()
    for planned in batches:
        if planned.kind == "cancelling":
            for job_id in planned.members:
                with contextlib.suppress(DriverError):
                    record = results.get(job_id)
                    if record is not None and record.status == "cancelled":
                        found.add(job_id)
    return found


def check_batches(
    manager: QueueManager,
    chaos: Chaos,
    store: DatabaseFailedJobStore,
    batches: list[Planned],
    cancelled: set[str],
) -> str:
    """Every batch finished, its callbacks due were pushed, its counts match the ledger."""
    done = set(chaos.ledger.done())
    failed = {job.uuid for job in store.all()}
    kinds = {line.job_id: line.extra for line in chaos.ledger.lines() if line.kind == "start"}
    totals = {"jobs": 0, "completed": 0, "failed": 0, "cancelled": 0, "callbacks": 0}
    for planned in batches:
        record = manager.batches().get(planned.id)
        assert record is not None and record.finished_at is not None, planned
        assert record.due == record.pushed == planned.due, (planned, record)
        members = set(planned.members)
        assert record.done == len(members & done), (planned.id, record)
        assert record.failed == len(members & failed), (planned.id, record)
        assert record.cancelled == len(members & cancelled), (planned.id, record)
        assert (record.cancelled_at is not None) == (planned.kind == "cancelling"), record
        for key, bit in (("then", Callbacks.THEN), ("catch", Callbacks.CATCH),
                         ("finally", Callbacks.FINALLY)):  # fmt: skip
            callback = derived_id(planned.id, f"{key}.0")
            assert (callback in done) == bool(planned.due & bit), (planned.id, key)
            assert kinds.get(callback, key) == key
        totals["jobs"] += record.total
        totals["completed"] += record.done
        totals["failed"] += record.failed
        totals["cancelled"] += record.cancelled
        totals["callbacks"] += bin(int(record.pushed)).count("1")
    swept = sum(
        1 for line in chaos.ledger.lines() if line.kind == "kill" and line.extra == "callbacks"
    )
    # A kill-push batch whose last jobs a dead worker left completed is counted, and its
    # callbacks pushed, by the supervisor as it settles them (no kill point there).
    assert 1 <= swept <= BATCHES // 10, "no kill-push batch killed its worker before the push"
    return (
        f"{len(batches)} batches, {totals['jobs']} jobs: {totals['completed']} completed, "
        f"{totals['failed']} failed, {totals['cancelled']} cancelled; {totals['callbacks']} "
        f"callbacks each pushed once ({swept} by the sweep after their pusher was killed)"
    )


def check_chains(chaos: Chaos, chains: list[PlannedChain]) -> None:
    """No step started before the step before it completed; a failed chain stopped there
    and ran its catch; the others ran every step."""
    lines = chaos.ledger.lines()
    first_start: dict[str, float] = {}
    first_done: dict[str, float] = {}
    for line in lines:
        if line.kind == "start":
            first_start.setdefault(line.job_id, line.at)
        elif line.kind == "done":
            first_done.setdefault(line.job_id, line.at)
    for chain in chains:
        ran = chain.steps if chain.fails_at is None else chain.steps[: chain.fails_at + 1]
        for before, after in itertools.pairwise(ran):
            assert first_start[after] >= first_done[before], (before, after)
        for never in chain.steps[len(ran) :]:
            assert never not in first_start, f"step {never} ran after its chain failed"
        assert (chain.catch_id in first_done) == (chain.fails_at is not None)
