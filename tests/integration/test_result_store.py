"""The result store contract, on every connection kind, built by ``store_for(driver)``.

Runs on the driver contract suite's factories (memory, SQLite, PostgreSQL,
MariaDB, Redis, Redis Cluster, sharded) with their fake clock: memory and
database records expire on it; Redis expires keys on its own clock, so Redis
tests use short real TTLs. Expiry tests look at the storage itself (keys,
rows, entries), proving results never grow it without bound.
"""

from __future__ import annotations

import dataclasses
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from kashq.db import migrate
from kashq.db.engine import table_prefix_of
from kashq.db.schema import tables
from kashq.drivers.base import Driver
from kashq.drivers.database import DatabaseDriver
from kashq.drivers.redis.keys import result_done_key, result_key
from kashq.envelope import new_job_id
from kashq.results import (
    MemoryResultStore,
    Progress,
    ResultStore,
    StoredResult,
    store_for,
)
from kashq.results import database as results_database
from kashq.results import redis as results_redis
from kashq.results.database import CHANNEL, SWEEP_EVERY_S, DatabaseResultStore
from kashq.results.redis import RedisResultStore
from kashq.testing import FakeClock
from tests.integration import test_driver_contract as contract
from tests.support.databases import KINDS as KINDS_OF_DATABASES
from tests.support.databases import database
from tests.support.waiting import eventually

# The contract suite's clock; its driver factories, one of each connection kind.
clock = contract.clock
KINDS = sorted([*contract.FACTORIES, contract.CLUSTER, contract.SHARDED])
WAIT_S = 10.0  # generous: only a broken store takes this long
LONG_WAIT_S = 60.0  # a wait a test expects to be cut short
REDIS_TTL_S = 0.3  # Redis expires keys on its own clock: a real, short TTL
TTL_S = 10.0


@pytest.fixture(params=KINDS)
def driver(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> Iterator[Driver]:
    with contract.open_driver(request, request.param, clock, tmp_path) as made:
        yield made


@pytest.fixture
def store(driver: Driver) -> Iterator[ResultStore]:
    made = store_for(driver)
    try:
        yield made
    finally:
        made.close()


def outcome(job_id: str | None = None, **fields: object) -> StoredResult:
    base = StoredResult(
        job_id=job_id or new_job_id(),
        status="completed",
        job_type="tests.Report",
        queue="reports",
        value='{"rows": 3, "name": "Zoë"}',
        attempts=2,
        finished_at=1_700_000_123.25,
    )
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


def as_put(found: StoredResult | None) -> StoredResult | None:
    """``found`` without what the store adds (expiry), to compare with what was put."""
    return None if found is None else dataclasses.replace(found, expires_at=0.0)


def on_redis(store: ResultStore) -> bool:
    return isinstance(store, RedisResultStore)


def ttl_of(store: ResultStore) -> float:
    return REDIS_TTL_S if on_redis(store) else TTL_S


def outlive(store: ResultStore, clock: FakeClock, ttl_s: float) -> None:
    """Let records put with ``ttl_s`` expire: on Redis's clock, or the fake one."""
    if on_redis(store):
        time.sleep(ttl_s + 0.2)  # (Redis expires a key once its time has strictly passed)
    else:
        clock.advance(ttl_s + 1)


def stored(store: ResultStore, job_ids: list[str]) -> int:
    """What storage holds of ``job_ids``, expired or not: keys, rows, or (memory) records."""
    if isinstance(store, RedisResultStore):
        keys = [f(store.prefix, j) for j in job_ids for f in (result_key, result_done_key)]
        return sum(int(store.client.exists(key)) for key in keys)  # one slot per call
    if isinstance(store, DatabaseResultStore):
        table = tables(table_prefix_of(store.engine)).job_results
        query = select(func.count()).select_from(table).where(table.c.job_id.in_(job_ids))
        with store.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
    assert isinstance(store, MemoryResultStore)
    return len(store)


def test_a_completed_outcome_is_read_back_with_every_field(store, clock):
    job = outcome()
    store.put(job, TTL_S)
    found = store.get(job.job_id)
    assert as_put(found) == job
    assert found is not None and found.expires_at == pytest.approx(clock.time() + TTL_S, abs=1e-3)


def test_a_failed_outcome_is_read_back_with_its_error_and_reason(store):
    job = outcome(
        status="failed", value=None, error="ValueError: no rows", reason="tries_exhausted"
    )
    store.put(job, TTL_S)
    assert as_put(store.get(job.job_id)) == job


def test_an_unknown_job_has_no_result(store):
    assert store.get(new_job_id()) is None


def test_put_needs_an_outcome(store):
    with pytest.raises(ValueError, match="status"):
        store.put(StoredResult(new_job_id()), TTL_S)


def test_a_second_outcome_replaces_the_first(store):
    first = outcome(status="failed", value=None, error="boom", reason="worker_lost")
    store.put(first, TTL_S)
    again = outcome(first.job_id, attempts=3, value="42")
    store.put(again, TTL_S)
    assert as_put(store.get(first.job_id)) == again


def test_progress_then_outcome_keeps_both(store, clock):
    job = outcome()
    store.put_progress([Progress(job.job_id, 0.5, "halfway", at=clock.time())], TTL_S)
    busy = store.get(job.job_id)
    assert busy is not None and busy.status is None
    assert (busy.progress, busy.message, busy.progress_at) == (0.5, "halfway", clock.time())
    store.put(job, TTL_S)
    found = store.get(job.job_id)
    assert as_put(found) == dataclasses.replace(
        job, progress=0.5, message="halfway", progress_at=clock.time()
    )


def test_a_late_progress_never_hides_the_outcome(store, clock):
    job = outcome()
    store.put(job, TTL_S)
    store.put_progress([Progress(job.job_id, 0.9, "almost", at=clock.time() + 1)], TTL_S / 2)
    found = store.get(job.job_id)
    assert found is not None
    assert (found.status, found.value, found.attempts) == ("completed", job.value, 2)
    assert (found.progress, found.message) == (0.9, "almost")
    assert found.expires_at == pytest.approx(clock.time() + TTL_S, abs=1e-3), (
        "its TTL is not shortened"
    )


def test_a_late_progress_never_lengthens_an_outcome_s_life(store, clock):
    job = outcome()
    store.put(job, TTL_S / 2)
    store.put_progress([Progress(job.job_id, 0.9, "almost", at=clock.time() + 1)], TTL_S * 10)
    found = store.get(job.job_id)
    assert found is not None and found.progress == 0.9
    assert found.expires_at == pytest.approx(clock.time() + TTL_S / 2, abs=1e-3), (
        "the outcome keeps its own TTL"
    )


def test_an_older_progress_update_is_ignored(store, clock):
    job_id, now = new_job_id(), clock.time()
    store.put_progress([Progress(job_id, 0.6, "newer", at=now)], TTL_S)
    store.put_progress([Progress(job_id, 0.3, "older", at=now - 1)], TTL_S)
    found = store.get(job_id)
    assert found is not None and (found.progress, found.message) == (0.6, "newer")
    store.put_progress([Progress(job_id, 0.7, "newest", at=now + 1)], TTL_S)
    found = store.get(job_id)
    assert found is not None and (found.progress, found.progress_at) == (0.7, now + 1)


def test_progress_of_many_jobs_is_stored_at_once(store, clock):
    now = clock.time()
    updates = [Progress(new_job_id(), n / 100, f"step {n}", at=now) for n in range(60)]
    store.put_progress(updates, TTL_S)
    for update in updates:
        found = store.get(update.job_id)
        assert found is not None and found.status is None
        assert (found.progress, found.message) == (update.fraction, update.message)


def test_progress_of_one_job_twice_in_a_batch_keeps_the_newest(store, clock):
    job_id, now = new_job_id(), clock.time()
    store.put_progress(
        [Progress(job_id, 0.4, "second", at=now + 1), Progress(job_id, 0.2, "first", at=now)],
        TTL_S,
    )
    found = store.get(job_id)
    assert found is not None and found.message == "second"


def test_an_expired_record_is_gone_and_prune_reclaims_its_storage(store, clock):
    job, busy = outcome(), new_job_id()
    ttl_s = ttl_of(store)
    store.put(job, ttl_s)
    store.put_progress([Progress(busy, 0.5, at=clock.time())], ttl_s)
    assert stored(store, [job.job_id, busy]) > 0
    outlive(store, clock, ttl_s)
    assert store.prune() == (0 if on_redis(store) else 2)  # Redis deletes them itself
    assert eventually(lambda: stored(store, [job.job_id, busy]) == 0, WAIT_S)
    assert store.get(job.job_id) is None and store.get(busy) is None


def test_expired_records_are_reclaimed_without_prune_as_new_results_come(store, clock):
    old, busy = outcome(), new_job_id()
    ttl_s = ttl_of(store)
    store.put(old, ttl_s)
    store.put_progress([Progress(busy, 0.5, at=clock.time())], ttl_s)
    outlive(store, clock, ttl_s)
    clock.advance(SWEEP_EVERY_S)  # a database store sweeps at most once a minute
    fresh = outcome()
    store.put(fresh, 600)
    per_record = 2 if on_redis(store) else 1  # Redis: a hash and a done stream
    assert eventually(lambda: stored(store, [old.job_id, busy, fresh.job_id]) == per_record, WAIT_S)
    assert as_put(store.get(fresh.job_id)) == fresh, "an unexpired record stays"


def test_an_expired_record_is_not_found_before_it_is_reclaimed(store, clock):
    job = outcome()
    store.put(job, ttl_of(store))
    outlive(store, clock, ttl_of(store))
    assert store.get(job.job_id) is None
    assert store.wait(job.job_id, 0.1) is None


def test_an_outcome_put_over_an_expired_record_does_not_revive_its_progress(store, clock):
    job = outcome()
    store.put_progress([Progress(job.job_id, 0.5, "old", at=clock.time())], ttl_of(store))
    outlive(store, clock, ttl_of(store))
    store.put(job, TTL_S)
    assert as_put(store.get(job.job_id)) == job


def test_progress_over_an_expired_record_does_not_revive_its_outcome(store, clock):
    job = outcome()
    store.put(job, ttl_of(store))
    outlive(store, clock, ttl_of(store))
    store.put_progress([Progress(job.job_id, 0.5, "again", at=clock.time())], TTL_S)
    found = store.get(job.job_id)
    assert found is not None and (found.status, found.value, found.message) == (None, None, "again")


def test_wait_returns_the_outcome_already_there(store):
    job = outcome()
    store.put(job, TTL_S)
    assert as_put(store.wait(job.job_id, WAIT_S)) == job


def wait_in_thread(store: ResultStore, job_id: str) -> tuple[threading.Thread, list[object]]:
    """A thread waiting (up to a minute) for ``job_id``: its result lands in the list."""
    got: list[object] = []
    waiter = threading.Thread(
        target=lambda: got.append(store.wait(job_id, LONG_WAIT_S)), daemon=True
    )
    waiter.start()
    time.sleep(0.2)  # most likely blocked by now (if not, its first read finds the outcome)
    return waiter, got


def test_a_waiter_wakes_when_another_thread_puts_the_outcome(driver, store):
    job = outcome()
    waiter, got = wait_in_thread(store_for(driver), job.job_id)  # as another caller gets it
    store.put(job, TTL_S)
    waiter.join(WAIT_S)
    assert not waiter.is_alive(), "the put did not wake the waiter"
    assert [as_put(found) for found in got] == [job]  # type: ignore[arg-type]


@pytest.fixture(params=[contract.SHARDED, "redis", contract.CLUSTER])
def redis_kind(
    request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path
) -> Iterator[Driver]:
    with contract.open_driver(request, request.param, clock, tmp_path) as made:
        yield made


def test_a_redis_waiter_is_woken_by_the_done_stream(redis_kind, monkeypatch):
    # XREAD slices longer than the wait: only the done stream can end it before its deadline.
    monkeypatch.setattr(results_redis, "longest_block_s", lambda client: LONG_WAIT_S)
    job = outcome()
    waiter, got = wait_in_thread(store_for(redis_kind), job.job_id)
    store_for(redis_kind).put(job, TTL_S)
    waiter.join(WAIT_S)
    assert not waiter.is_alive(), "the done stream did not wake the waiter"
    assert [as_put(found) for found in got] == [job]  # type: ignore[arg-type]


def test_a_done_stream_without_its_record_does_not_spin_a_waiter(redis_kind, monkeypatch):
    store = store_for(redis_kind)
    assert isinstance(store, RedisResultStore)
    job_id = new_job_id()
    store.client.xadd(result_done_key(store.prefix, job_id), {"status": "completed"})
    monkeypatch.setattr(results_redis, "longest_block_s", lambda client: 0.1)
    store = store_for(redis_kind)  # XREAD slices of 0.1 s
    assert isinstance(store, RedisResultStore)
    reads: list[object] = []
    xread = store.client.xread
    monkeypatch.setattr(store.client, "xread", lambda *a, **k: reads.append(1) or xread(*a, **k))
    assert store.wait(job_id, 0.5) is None
    assert len(reads) <= 8, f"{len(reads)} XREADs in half a second: the wait spun"


def test_wait_returns_none_when_nothing_comes_in_time(store):
    assert store.wait(new_job_id(), 0.2) is None


def test_a_progress_only_record_does_not_end_a_wait(store, clock):
    job_id = new_job_id()
    store.put_progress([Progress(job_id, 0.5, "busy", at=clock.time())], TTL_S)
    assert store.wait(job_id, 0.3) is None


def test_store_for_a_driver_shares_its_storage_on_every_call(driver, store):
    if not isinstance(store, MemoryResultStore):
        assert store_for(driver) is not store
    else:
        assert store_for(driver) is store
    job = outcome()
    store.put(job, TTL_S)
    assert as_put(store_for(driver).get(job.job_id)) == job, "every store shares the storage"


def test_a_sqlite_file_at_revision_0005_upgrades_itself_for_the_result_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    assert migrate.upgrade(url, "0005") == "0005"
    driver = DatabaseDriver(url)
    store = store_for(driver)
    job = outcome()
    store.put(job, TTL_S)
    assert as_put(store.get(job.job_id)) == job
    store.close()
    driver.close()
    assert migrate.current_revision(url) == migrate.head_revision()


@pytest.mark.parametrize("kind", KINDS_OF_DATABASES)
def test_database_prune_deletes_every_expired_row_in_short_transactions(kind, tmp_path):
    clock = FakeClock()
    with database(kind, tmp_path, migrated=True) as url:
        store = DatabaseResultStore(url, clock=clock)
        try:
            expiring = [outcome() for _ in range(5)]
            for job in expiring:
                store.put(job, TTL_S)
            alive = outcome()
            store.put(alive, 600)
            clock.advance(TTL_S + 1)
            assert store.prune(chunk_size=2) == len(expiring)
            assert stored(store, [job.job_id for job in [*expiring, alive]]) == 1
            assert as_put(store.get(alive.job_id)) == alive
        finally:
            store.close()


@pytest.mark.parametrize("kind", KINDS_OF_DATABASES)
def test_a_backlog_of_expired_rows_is_swept_a_chunk_per_write(kind, tmp_path, monkeypatch):
    monkeypatch.setattr(results_database, "_SWEEP_CHUNK", 2)
    clock = FakeClock()
    with database(kind, tmp_path, migrated=True) as url:
        store = DatabaseResultStore(url, clock=clock)
        try:
            expiring = [outcome() for _ in range(5)]
            for job in expiring:
                store.put(job, TTL_S)
            ids = [job.job_id for job in expiring]
            clock.advance(SWEEP_EVERY_S + TTL_S)
            left = []
            for _ in range(4):  # each write deletes one chunk at most, and goes on next time
                store.put(outcome(), 600)
                left.append(stored(store, ids))
            assert left == [3, 1, 0, 0]
        finally:
            store.close()


# --------------------------------------------------------------------------- PostgreSQL NOTIFY

PUTTER = """
import sys
from kashq.results import StoredResult
from kashq.results.database import DatabaseResultStore
url, prefix, job_id = sys.argv[1:]
store = DatabaseResultStore(url, table_prefix=prefix)
store.put(StoredResult(job_id, status="completed", value="42"), 60)
store.close()
"""


def listeners(url: str, channel: str) -> int:
    """Backends whose last statement LISTENed on ``channel`` (the waiter's connection)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            query = text("SELECT count(*) FROM pg_stat_activity WHERE query = :q")
            return int(conn.execute(query, {"q": f'LISTEN "{channel}"'}).scalar_one())
    finally:
        engine.dispose()


def test_a_postgres_waiter_is_woken_by_notify_from_another_process(tmp_path, monkeypatch):
    # Slices longer than the wait: only the notification can end it before its deadline.
    monkeypatch.setattr(results_database, "LISTEN_SLICE_S", 600.0)
    prefix = f"n{secrets.token_hex(4)}_"  # a channel of its own
    with database("postgres", tmp_path) as url:
        migrate.upgrade(url, table_prefix=prefix)
        store = DatabaseResultStore(url, table_prefix=prefix)
        job_id = new_job_id()
        got: list[StoredResult | None] = []
        waiter = threading.Thread(target=lambda: got.append(store.wait(job_id, 60)), daemon=True)
        waiter.start()
        try:
            assert eventually(lambda: listeners(url, prefix + CHANNEL) == 1, WAIT_S), (
                "never listened"
            )
            putter = [sys.executable, "-c", PUTTER, url, prefix, job_id]
            done = subprocess.run(putter, capture_output=True, text=True, timeout=60, check=False)
            assert done.returncode == 0, done.stderr
            waiter.join(30)
            assert not waiter.is_alive(), "the notification did not wake the waiter"
            assert [(r.status, r.value) for r in got if r is not None] == [("completed", "42")]
            assert eventually(lambda: listeners(url, prefix + CHANNEL) == 0, WAIT_S), (
                "LISTEN left open"
            )
        finally:
            store.close()
