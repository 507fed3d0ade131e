"""The event store contract, over memory, Redis, SQLite, PostgreSQL and MariaDB, and the recorder.

Every store runs the same tests (the memory store earns its place as a test
double by passing them). Redis stores live under a fresh prefix whose keys are
deleted afterwards; database stores in a fresh, migrated database.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

import kashq
from kashq import Job
from kashq.drivers.base import Driver
from kashq.drivers.database import DatabaseDriver
from kashq.drivers.memory import MemoryDriver
from kashq.drivers.redis import RedisDriver
from kashq.drivers.redis.keys import stream_key
from kashq.envelope import Envelope
from kashq.events import (
    Event,
    EventRecorder,
    EventStore,
    EventStoreError,
    MemoryEventStore,
    NullEventStore,
    store_for,
)
from kashq.events.database import DatabaseEventStore
from kashq.events.redis import RedisEventStore
from kashq.failed.memory import MemoryFailedJobStore
from kashq.testing import FakeClock
from kashq.worker.options import WorkerOptions
from kashq.worker.worker import Worker
from tests.support.databases import database
from tests.support.redis import delete_prefix, redis_driver, shared_client
from tests.support.services import REDIS_URL

WAIT_S = 10.0  # generous: only a broken store takes this long
STORES = ["memory", "redis", "sqlite", "postgres", "mariadb"]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    """An empty event store of each kind."""
    kind = request.param
    if kind == "memory":
        yield MemoryEventStore()
    elif kind == "redis":
        client = shared_client()
        prefix = f"kashq-test-{uuid.uuid4().hex[:10]}"
        redis_store = RedisEventStore(client, prefix=prefix, max_len=100_000)
        try:
            yield redis_store
        finally:
            delete_prefix(client, prefix)
            client.close()
    else:
        with database(kind, tmp_path, migrated=True) as url:
            db_store = DatabaseEventStore(url)
            try:
                yield db_store
            finally:
                db_store.close()


def event(job_id: str, type_: str, at: float, attempt: int = 0, **details: object) -> Event:
    return Event(type_, job_id, "tests.Job", "default", attempt, at, details=dict(details))


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


# --------------------------------------------------------------------------- the contract


def test_a_jobs_events_come_back_in_order_with_every_field(store: EventStore) -> None:
    now = time.time()
    store.append(event("a", "dispatched", now))
    store.append_many(
        [
            event("b", "dispatched", now + 0.1),
            event("a", "started", now + 0.2, 1),
            event("a", "attempt_failed", now + 0.3, 1, error="ValueError: no", duration_ms=1.5),
            event("a", "completed", now + 0.4, 2, duration_ms=2.25),
        ]
    )

    history = store.get_job_events("a")

    assert types(history) == ["dispatched", "started", "attempt_failed", "completed"]
    failed = history[2]
    assert failed.details == {"error": "ValueError: no", "duration_ms": 1.5}
    assert (failed.job_type, failed.queue, failed.attempt) == ("tests.Job", "default", 1)
    assert failed.at == pytest.approx(now + 0.3)
    assert failed.host and failed.pid > 0
    assert all(e.position is not None for e in history)
    assert store.get_job_events("nobody") == []


def test_history_follows_event_time_when_events_arrive_out_of_order(store: EventStore) -> None:
    # The worker's batch can reach the store before the dispatcher's.
    now = time.time()
    store.append_many([event("a", "started", now + 1, 1), event("a", "completed", now + 2, 1)])
    store.append(event("a", "dispatched", now))

    assert types(store.get_job_events("a")) == ["dispatched", "started", "completed"]


def test_read_resumes_after_a_position(store: EventStore) -> None:
    now = time.time()
    store.append_many([event(f"j{i}", "dispatched", now + i) for i in range(5)])

    first = store.read(limit=2)
    rest = store.read(after=first[-1].position)

    assert [e.job_id for e in first] == ["j0", "j1"]
    assert [e.job_id for e in rest] == ["j2", "j3", "j4"]
    assert store.read(after=rest[-1].position) == []


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mariadb"])
def test_database_store_refuses_a_bad_position_in_one_line_and_clamps_a_huge_one(
    kind: str, tmp_path: Path
) -> None:
    with database(kind, tmp_path, migrated=True) as url:
        store = DatabaseEventStore(url)
        try:
            store.append(event("job-1", "dispatched", time.time()))
            for bad in ("garbage", "-1", "1.5", ""):
                with pytest.raises(EventStoreError, match="not a database event position"):
                    store.read(after=bad)
                with pytest.raises(EventStoreError, match="not a database event position"):
                    next(store.tail(after=bad))
            assert store.read(after="99999999999999999999999") == []
            assert store.read(after="9" * 5000) == []
            assert [e.job_id for e in store.read(after="0")] == ["job-1"]
        finally:
            store.close()


def test_subscribe_delivers_events_appended_later_from_another_thread(store: EventStore) -> None:
    store.append(event("old", "dispatched", time.time()))
    got: list[Event] = []
    stop = threading.Event()
    thread = threading.Thread(
        target=store.subscribe, args=(got.append,), kwargs={"stop": stop, "poll_s": 0.1}
    )
    thread.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while not got and time.monotonic() < deadline:  # until the subscriber is listening
            store.append(event("new", "started", time.time(), 1))
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(WAIT_S)
    assert not thread.is_alive()
    assert got, "no live event arrived"
    assert {e.job_id for e in got} == {"new"}  # nothing from before it subscribed


def test_tail_resumes_from_a_position_then_follows_live(store: EventStore) -> None:
    now = time.time()
    store.append_many([event(f"j{i}", "dispatched", now + i) for i in range(3)])
    start = store.read(limit=1)[0].position
    stop = threading.Event()
    got: list[str] = []

    def follow() -> None:
        for e in store.tail(after=start, poll_s=0.1, stop=stop):
            got.append(e.job_id)
            if len(got) == 3:
                stop.set()

    thread = threading.Thread(target=follow)
    thread.start()
    store.append(event("j3", "dispatched", now + 3))
    thread.join(WAIT_S)
    stop.set()
    assert not thread.is_alive()
    assert got == ["j1", "j2", "j3"]


def test_prune_deletes_old_events(store: EventStore) -> None:
    now = time.time()
    store.append_many([event("old", "dispatched", now - 3 * 3600), event("new", "dispatched", now)])

    if isinstance(store, RedisEventStore):
        # Redis prunes by when an event was stored (its stream id), all of them just now.
        assert store.prune(3600) == 0
        time.sleep(0.01)
        assert store.prune(0) == 2
        assert store.read() == []
        return
    assert store.prune(3600) == 1
    assert [e.job_id for e in store.read()] == ["new"]


# --------------------------------------------------------------------------- Redis specifics


@pytest.fixture
def redis_store() -> Iterator[RedisEventStore]:
    client = shared_client()
    prefix = f"kashq-test-{uuid.uuid4().hex[:10]}"
    yield RedisEventStore(client, prefix=prefix, max_len=100)
    delete_prefix(client, prefix)
    client.close()


def test_redis_stream_stays_near_its_max_len(redis_store: RedisEventStore) -> None:
    now = time.time()
    for batch in range(10):
        redis_store.append_many([event(f"j{batch}-{i}", "started", now) for i in range(100)])

    # MAXLEN ~ trims whole nodes (100 entries by default): near, never far above.
    assert 100 <= redis_store.length() <= 300
    assert redis_store.key.endswith(":{events}:stream")


def test_redis_history_scan_reaches_across_many_chunks(redis_store: RedisEventStore) -> None:
    redis_store.max_len = 100_000
    now = time.time()
    redis_store.append(event("a", "dispatched", now))
    for chunk in range(3):
        redis_store.append_many([event(f"x{chunk}-{i}", "started", now) for i in range(1000)])
    redis_store.append(event("a", "completed", now + 1, 1))

    assert types(redis_store.get_job_events("a")) == ["dispatched", "completed"]


def test_redis_tail_polling_longer_than_the_reply_timeout_is_no_error() -> None:
    """XREAD BLOCK is kept shorter than the client's reply timeout (here 1 s)."""
    prefix = f"kashq-test-{uuid.uuid4().hex[:10]}"
    writer = RedisEventStore(shared_client(), prefix=prefix)
    store = RedisEventStore(f"{REDIS_URL}?socket_timeout=1", prefix=prefix)
    stop, got, failed = threading.Event(), list[str](), list[BaseException]()

    def follow() -> None:
        try:
            for e in store.tail(poll_s=3.0, stop=stop):
                got.append(e.job_id)
                stop.set()
        except BaseException as exc:  # what the test is about
            failed.append(exc)

    thread = threading.Thread(target=follow)
    thread.start()
    try:
        time.sleep(2.0)  # an idle poll, longer than the reply timeout
        writer.append(event("late", "dispatched", time.time()))
        thread.join(WAIT_S)
    finally:
        stop.set()
        store.close()
        delete_prefix(writer.client, prefix)
        writer.client.close()
    assert not failed, failed
    assert got == ["late"]


def test_redis_errors_are_kashq_errors() -> None:
    unreachable = RedisEventStore("redis://127.0.0.1:1/0", prefix="nowhere")
    with pytest.raises(kashq.KashqError, match="redis event store"):
        unreachable.append(event("a", "dispatched", time.time()))
    unreachable.close()


# --------------------------------------------------------------------------- store_for


def test_store_for_follows_the_driver(tmp_path: Path) -> None:
    settings = kashq.load_settings(connection="memory")
    memory = MemoryDriver()
    assert isinstance(store_for(memory, settings), MemoryEventStore)
    assert store_for(memory, settings) is store_for(memory, settings)
    assert store_for(MemoryDriver(), settings) is not store_for(memory, settings)

    with redis_driver() as driver:
        on_redis = store_for(driver, settings)
        assert isinstance(on_redis, RedisEventStore)
        assert on_redis.key == stream_key(driver.prefix)

    database_driver = DatabaseDriver(f"sqlite:///{tmp_path / 'kashq.sqlite'}")
    assert isinstance(store_for(database_driver, settings), DatabaseEventStore)
    database_driver.close()

    off = settings.model_copy(update={"events": False})
    assert isinstance(store_for(memory, off), NullEventStore)
    assert isinstance(store_for(memory, off, always=True), MemoryEventStore)


# --------------------------------------------------------------------------- the recorder


class FlakyOnce(Job):
    """Fails its first attempt, succeeds on the second."""

    runs: ClassVar[dict[str, int]] = {}
    key: str

    tries: ClassVar[int | None] = 3
    backoff: ClassVar[float | None] = 0

    def handle(self) -> None:
        self.runs[self.key] = self.runs.get(self.key, 0) + 1
        if self.runs[self.key] == 1:
            raise ValueError("first attempt fails")


class Noop(Job):
    def handle(self) -> None:
        pass


def push(driver: Driver, recorder: EventRecorder, job: Job, clock: FakeClock | None = None) -> str:
    now = clock.time() if clock is not None else time.time()
    envelope: Envelope = job.to_envelope(default_queue="default", now=now)
    driver.push(envelope)
    recorder.dispatched([envelope])
    return envelope.id


@pytest.fixture(params=["memory", "redis"])
def driver(request: pytest.FixtureRequest) -> Iterator[Driver]:
    if request.param == "memory":
        yield MemoryDriver()
        return
    with redis_driver() as on_redis:
        yield on_redis


def test_recorder_records_a_retried_job_from_a_real_worker(driver: Driver) -> None:
    settings = kashq.load_settings()
    recorder = EventRecorder(store_for(driver, settings))
    worker = Worker(driver, MemoryFailedJobStore(), WorkerOptions(), listeners=[recorder.listener])
    job_id = push(driver, recorder, FlakyOnce(key=uuid.uuid4().hex))

    worker.drain()
    recorder.close()

    history = store_for(driver, settings).get_job_events(job_id)
    assert types(history) == [
        "dispatched", "started", "attempt_failed", "released", "started", "completed",
    ]  # fmt: skip
    assert [e.attempt for e in history] == [0, 1, 1, 1, 2, 2]
    assert history[2].details["error"] == "ValueError: first attempt fails"
    assert history[3].details["delay_s"] == 0
    assert "duration_ms" in history[5].details
    assert recorder.dropped == 0


def test_recorder_marks_a_job_handed_out_again_as_reclaimed() -> None:
    clock = FakeClock()
    driver = MemoryDriver(clock=clock)
    store = MemoryEventStore()
    recorder = EventRecorder(store)
    worker = Worker(
        driver, MemoryFailedJobStore(), WorkerOptions(), clock=clock, listeners=[recorder.listener]
    )
    job_id = push(driver, recorder, Noop(), clock)
    assert driver.reserve(["default"], lease_s=1) is not None  # its worker then vanishes
    clock.advance(2)

    worker.run_next()
    recorder.close()

    assert types(store.get_job_events(job_id)) == [
        "dispatched",
        "reclaimed",
        "started",
        "completed",
    ]
    assert store.get_job_events(job_id)[1].details == {"deliveries": 2}


def test_recorder_writes_in_batches_not_per_event() -> None:
    class Counting(MemoryEventStore):
        calls = 0

        def append_many(self, events: object) -> None:
            self.calls += 1
            super().append_many(events)  # type: ignore[arg-type]

    store = Counting()
    recorder = EventRecorder(store)
    envelopes = [Noop().to_envelope(default_queue="default", now=time.time()) for _ in range(1000)]
    for envelope in envelopes:
        recorder.dispatched([envelope])
    assert recorder.flush()
    recorder.close()

    assert len(store) == 1000
    assert store.calls < 100


def test_recorder_with_unreachable_redis_never_disturbs_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="kashq.events")
    settings = kashq.load_settings()
    unreachable = RedisDriver("redis://127.0.0.1:1/0", prefix="nowhere")
    recorder = EventRecorder(store_for(unreachable, settings), max_buffered=10)
    driver = MemoryDriver()
    worker = Worker(driver, MemoryFailedJobStore(), WorkerOptions(), listeners=[recorder.listener])
    for _ in range(20):
        push(driver, recorder, Noop())

    worker.drain()
    recorder.flush(timeout_s=WAIT_S)
    recorder.close()
    unreachable.close()

    assert worker.stats.completed == 20
    assert recorder.recorded == 0
    assert recorder.dropped == 60  # 20 dispatched, 20 started, 20 completed: none written
    warnings = [r for r in caplog.records if "unreachable (" in r.getMessage()]
    assert len(warnings) == 1  # logged once, not per event or per retry


def test_recorder_with_events_off_records_nothing() -> None:
    settings = kashq.load_settings(events=False)
    driver = MemoryDriver()
    recorder = EventRecorder(store_for(driver, settings))
    worker = Worker(driver, MemoryFailedJobStore(), WorkerOptions(), listeners=[recorder.listener])
    job_id = push(driver, recorder, Noop())

    worker.drain()
    recorder.close()

    assert store_for(driver, settings, always=True).get_job_events(job_id) == []
