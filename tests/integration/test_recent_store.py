"""The store of recent jobs, on every storage kind, built by ``store_for(driver, settings)``.

Runs on the driver contract suite's factories (memory, SQLite, PostgreSQL,
MariaDB, Redis, Redis Cluster) with their fake clock: every store ages its
records on the driver's clock, Redis included (scores are finished_at). The
bounds are proven on the storage itself (sorted sets and hashes, rows, deques),
not only on what the store answers.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from kashq.config import load_settings
from kashq.db.engine import table_prefix_of
from kashq.db.schema import tables
from kashq.drivers.base import Driver
from kashq.drivers.redis.keys import recent_keys, recent_queues_key
from kashq.envelope import new_job_id
from kashq.recent import (
    ENDED,
    DatabaseRecentStore,
    MemoryRecentStore,
    RecentJob,
    RecentStore,
    RedisRecentStore,
    store_for,
)
from kashq.testing import FakeClock
from tests.integration import test_driver_contract as contract

clock = contract.clock
KINDS = sorted([*contract.FACTORIES, contract.CLUSTER])
KEEP_S = 600.0
KEEP_MAX = 40


@pytest.fixture(params=KINDS)
def driver(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> Iterator[Driver]:
    with contract.open_driver(request, request.param, clock, tmp_path) as made:
        yield made


@pytest.fixture
def store(driver: Driver) -> Iterator[RecentStore]:
    settings = load_settings(keep_completed=KEEP_S, keep_completed_max=KEEP_MAX)
    made = store_for(driver, settings)
    try:
        yield made
    finally:
        made.close()


def ended(clock: FakeClock, queue: str = "emails", outcome: str = "completed", **fields: object):
    base = RecentJob(
        job_id=new_job_id(),
        queue=queue,
        outcome=outcome,  # type: ignore[arg-type]
        job_type="app.jobs.SendEmail",
        finished_at=clock.time(),
        attempts=1,
        duration_s=0.125,
        tags=("user:42", "Zoë"),
    )
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


def newest_first(jobs: list[RecentJob]) -> list[RecentJob]:
    return sorted(jobs, key=lambda job: (job.finished_at, job.job_id), reverse=True)


def walk(store: RecentStore, queue: str, outcome: str, limit: int) -> list[list[RecentJob]]:
    """Every page of one list, first to last."""
    pages, cursor = [], None
    while True:
        page, cursor = store.page(queue, outcome, limit=limit, cursor=cursor)  # type: ignore[arg-type]
        pages.append(page)
        if cursor is None:
            return pages


def held(store: RecentStore, lists: list[tuple[str, str]]) -> int:
    """The records storage holds in ``lists``, past their age or not: members, rows, entries."""
    if isinstance(store, RedisRecentStore):
        total = 0
        for queue, outcome in lists:
            keys = recent_keys(store.prefix, queue, outcome)
            members, records = store.client.zcard(keys.ids), store.client.hlen(keys.records)
            assert members == records, "every member has its record, and no record is left over"
            total += members
        return total
    if isinstance(store, DatabaseRecentStore):
        table = tables(table_prefix_of(store.engine)).job_recent
        with store.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    assert isinstance(store, MemoryRecentStore)
    return store.held()


def test_pages_are_newest_first_and_cursors_walk_every_record_once(store, clock):
    jobs = []
    for n in range(23):
        jobs.append(ended(clock, error=f"why {n}" if n % 5 == 0 else "", duration_s=n or None))
        if n % 4:  # several records share a time: ties go by job id
            clock.advance(0.25)
    store.add(jobs[12:])
    store.add(jobs[:12])  # an older batch arriving late takes its place
    pages = walk(store, "emails", "completed", limit=10)
    assert [len(page) for page in pages] == [10, 10, 3]
    assert [job for page in pages for job in page] == newest_first(jobs), "every field kept"
    assert store.count("emails", "completed") == 23
    one, last = store.page("emails", "completed", limit=23)
    assert one == newest_first(jobs) and last is None


def test_paging_is_stable_while_newer_records_arrive(store, clock):
    first = []
    for _ in range(20):
        first.append(ended(clock))
        clock.advance(1)
    store.add(first)
    page, cursor = store.page("emails", "completed", limit=7)
    seen = list(page)
    store.add([ended(clock, finished_at=clock.time() + n) for n in range(10)])
    while cursor is not None:
        page, cursor = store.page("emails", "completed", limit=7, cursor=cursor)
        seen += page
        store.add([ended(clock, finished_at=clock.time() + 20)])  # more keep coming
    assert seen == newest_first(first), "none skipped, none twice"
    assert store.page("emails", "completed", limit=1)[0][0].finished_at == clock.time() + 20


def test_outcomes_and_queues_are_kept_apart_and_a_job_listed_again_is_replaced(store, clock):
    jobs = [ended(clock, queue, outcome) for queue in ("emails", "reports") for outcome in ENDED]
    store.add(jobs)
    for job in jobs:
        assert store.page(job.queue, job.outcome) == ([job], None)
        assert store.count(job.queue, job.outcome) == 1
    assert store.queues() == ["emails", "reports"]
    assert store.count("nowhere", "completed") == 0
    assert store.page("nowhere", "completed") == ([], None)
    clock.advance(5)
    again = dataclasses.replace(jobs[0], finished_at=clock.time(), attempts=2)
    store.add([again])
    assert store.page("emails", "completed") == ([again], None)


def test_each_list_keeps_at_most_keep_max_records_and_storage_holds_no_more(store, clock):
    jobs = []
    for _ in range(4):  # well over the bound, in batches larger than it
        batch = [ended(clock, finished_at=clock.time() + n / 100) for n in range(45)]
        jobs += batch
        store.add(batch)
        clock.advance(1)
    store.add([ended(clock, "emails", "expired", error="expired before it started")])
    assert store.count("emails", "completed") == KEEP_MAX
    assert [job for page in walk(store, "emails", "completed", 15) for job in page] == (
        newest_first(jobs)[:KEEP_MAX]
    )
    assert store.count("emails", "expired") == 1, "the other list is bounded on its own"
    assert held(store, [("emails", outcome) for outcome in ENDED]) == KEEP_MAX + 1


def test_records_past_their_age_are_gone_after_the_next_write(store, clock):
    old = [ended(clock) for _ in range(10)]
    store.add(old)
    clock.advance(KEEP_S / 2)
    young = [ended(clock) for _ in range(5)]
    store.add(young)
    clock.advance(KEEP_S / 2 - 1)
    store.add([ended(clock, "reports")])  # a sweep of every list (if any) is not due again soon
    clock.advance(1)  # the old ones are now exactly KEEP_S old
    lists = [("emails", "completed"), ("reports", "completed")]
    assert store.count("emails", "completed") == 5, "reads never show them"
    assert held(store, lists) == 16, "storage is trimmed when written to"
    store.add([ended(clock), ended(clock, finished_at=clock.time() - KEEP_S)])  # too old to keep
    assert held(store, lists) == 7
    assert newest_first(young)[-1] == store.page("emails", "completed", limit=6)[0][-1]


def test_prune_removes_every_record_past_its_age(store, clock):
    lists = [(queue, outcome) for queue in ("emails", "reports") for outcome in ENDED]
    store.add([ended(clock, queue, outcome) for queue, outcome in lists for _ in range(3)])
    clock.advance(KEEP_S / 2)
    store.add([ended(clock, "emails", "cancelled")])
    assert store.prune() == 0
    clock.advance(KEEP_S / 2)
    assert store.prune() == 3 * len(lists)
    assert held(store, lists) == 1
    assert store.queues() == ["emails"]
    clock.advance(KEEP_S)
    assert store.prune() == 1 and held(store, lists) == 0 and store.queues() == []
    if isinstance(store, RedisRecentStore):
        assert store.client.exists(recent_queues_key(store.prefix)) == 0


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not a cursor",
        "%%%",
        base64.urlsafe_b64encode(b"1700000000.0|").decode(),
        base64.urlsafe_b64encode(b"nan|job").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_a_malformed_cursor_or_limit_is_a_one_line_value_error(cursor):
    store = MemoryRecentStore()
    with pytest.raises(ValueError, match="malformed cursor") as caught:
        store.page("emails", "completed", cursor=cursor)
    assert "\n" not in str(caught.value)
    for limit in (0, 1001):
        with pytest.raises(ValueError, match="limit"):
            store.page("emails", "completed", limit=limit)
    with pytest.raises(ValueError, match="outcome"):
        store.page("emails", "failed")  # type: ignore[arg-type]


def test_store_for_shares_the_driver_storage_and_keep_zero_writes_nothing(driver, store, clock):
    jobs = [ended(clock, finished_at=clock.time() + n) for n in range(3)]
    store.add(jobs)
    settings = load_settings(keep_completed=KEEP_S, keep_completed_max=KEEP_MAX)
    another = store_for(driver, settings)  # as another process opens it
    _, cursor = another.page("emails", "completed", limit=1)
    assert cursor is not None
    assert store.page("emails", "completed", limit=5, cursor=cursor)[0] == newest_first(jobs)[1:]
    another.close()
    if not isinstance(store, MemoryRecentStore):  # (memory: one store per driver, the first)
        off = store_for(driver, settings.model_copy(update={"keep_completed": 0.0}))
        off.add([ended(clock, "silent")])
        off.close()
    assert store.queues() == ["emails"]
