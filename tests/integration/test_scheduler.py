"""Integration tests of the scheduler: delayed jobs on real drivers, and recurring schedules
fired exactly once per tick by several runners sharing one Redis, SQLite or PostgreSQL.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import ClassVar

import pytest

from kashq import Job, NamedJob
from kashq.config import load_settings
from kashq.envelope import decode
from kashq.locks import MemoryLocks
from kashq.manager import QueueManager, swap_manager
from kashq.scheduler import Fired, Schedule, ScheduleError, Scheduler, ScheduleRunner
from kashq.scheduler.runner import LAST_FIRE_PREFIX
from kashq.testing import FakeClock, fake
from tests.support.databases import database
from tests.support.redis import delete_prefix, shared_client
from tests.support.services import REDIS_URL, RedisServer

GENEROUS_S = 20.0


class Stamp(Job):
    """Records when it ran."""

    label: str
    ran: ClassVar[dict[str, float]] = {}
    done: ClassVar[threading.Event] = threading.Event()

    def handle(self) -> None:
        Stamp.ran[self.label] = time.time()
        Stamp.done.set()


def _manager(kind: str, tmp_path: Path) -> Iterator[QueueManager]:
    """A manager whose default connection is ``kind``, on a private store, closed after."""
    if kind == "memory":
        manager = QueueManager(load_settings(connection="memory"))
        yield manager
        manager.close()
        return
    if kind == "redis":
        client = shared_client(REDIS_URL)
        prefix = f"kashq-test-{uuid.uuid4().hex[:10]}"
        manager = QueueManager(
            load_settings(connection="redis", redis_url=REDIS_URL, prefix=prefix)
        )
        try:
            yield manager
        finally:
            manager.close()
            delete_prefix(client, prefix)
            client.close()
        return
    with database(kind, tmp_path, migrated=True) as url:
        manager = QueueManager(load_settings(connection="database", database_url=url))
        yield manager
        manager.close()


@pytest.fixture(params=["memory", "redis", "sqlite", "postgres"])
def manager(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueManager]:
    yield from _manager(str(request.param), tmp_path)


def _queue() -> str:
    return f"sched-{uuid.uuid4().hex[:8]}"


# -- delayed jobs -----------------------------------------------------------------


def test_schedule_in_job_becomes_ready_at_its_time_not_before(manager: QueueManager) -> None:
    queue = _queue()
    driver = manager.connection()
    before = time.time()
    job_id = Scheduler(manager).schedule_in(NamedJob("later", {}).on_queue(queue), 1.5)
    after = time.time()
    assert driver.sizes([queue])[queue].delayed == 1
    reservation, reserved_at = None, 0.0
    deadline = time.monotonic() + GENEROUS_S
    while reservation is None and time.monotonic() < deadline:
        reservation = driver.reserve([queue], lease_s=30, wait_s=0.05)
        reserved_at = time.time()
    assert reservation is not None and reservation.id == job_id
    due = decode(reservation.raw).available_at
    assert before + 1.5 <= due <= after + 1.5
    assert reserved_at >= due  # never early
    assert reserved_at - due < 5  # about on time; generous for a busy machine


def test_schedule_at_sets_the_exact_time_and_naive_means_local(manager: QueueManager) -> None:
    queue = _queue()
    driver = manager.connection()
    aware = datetime.now(timezone.utc) + timedelta(seconds=1)
    naive = datetime.now() + timedelta(seconds=1.2)  # local wall time, as dispatch_at reads it
    scheduler = Scheduler(manager)
    first = scheduler.schedule_at(NamedJob("a", {}).on_queue(queue), aware)
    second = scheduler.schedule_at(NamedJob("b", {}).on_queue(queue), naive)
    got: dict[str, float] = {}
    deadline = time.monotonic() + GENEROUS_S
    while len(got) < 2 and time.monotonic() < deadline:
        reservation = driver.reserve([queue], lease_s=30, wait_s=0.05)
        if reservation is not None:
            got[reservation.id] = decode(reservation.raw).available_at
            assert time.time() >= got[reservation.id] - 0.05
            driver.ack(reservation)
    assert got == {
        first: pytest.approx(aware.timestamp(), abs=1e-3),
        second: pytest.approx(naive.timestamp(), abs=1e-3),
    }


def test_a_time_in_the_past_is_due_at_once(manager: QueueManager) -> None:
    queue = _queue()
    past = datetime.now(timezone.utc) - timedelta(hours=1)
    Scheduler(manager).schedule_at(NamedJob("late", {}).on_queue(queue), past)
    assert manager.connection().sizes([queue])[queue].ready == 1


def test_scheduler_on_a_connection_name_dispatches_there(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.sqlite'}"
    manager = QueueManager(load_settings(connection="memory", database_url=url))
    previous = swap_manager(manager)  # a connection name means the current manager
    try:
        queue = _queue()
        Scheduler().schedule_in(NamedJob("x", {}).on_queue(queue), 60)
        Scheduler("database").schedule_in(NamedJob("x", {}).on_queue(queue), 60)
        Scheduler("database").schedule_in(NamedJob("x", {}).on_queue(queue), 60)
        assert manager.connection("memory").sizes([queue])[queue].delayed == 1
        assert manager.connection("database").sizes([queue])[queue].delayed == 2
    finally:
        swap_manager(previous)
        manager.close()


def test_delayed_job_runs_on_memory_workers_at_its_time() -> None:
    manager = QueueManager(load_settings(connection="memory"))
    queue = _queue()
    worker = manager.worker(queues=(queue,)).start(2)
    try:
        Stamp.ran.clear()
        Stamp.done.clear()
        before = time.time()
        Scheduler(manager).schedule_in(Stamp(label="mem").on_queue(queue), timedelta(seconds=1))
        assert Stamp.done.wait(GENEROUS_S)
        assert Stamp.ran["mem"] >= before + 1
    finally:
        worker.stop(GENEROUS_S)
        manager.close()


def test_bad_delay_is_a_schedule_error() -> None:
    manager = QueueManager(load_settings(connection="memory"))
    with pytest.raises(ScheduleError, match="delay"):
        Scheduler(manager).schedule_in(NamedJob("x", {}), -1)
    with pytest.raises(ScheduleError, match="datetime"):
        Scheduler(manager).schedule_at(NamedJob("x", {}), 12.0)  # type: ignore[arg-type]


# -- the runner, on a fake clock ----------------------------------------------------


def _fake_runner(registry: Schedule) -> tuple[ScheduleRunner, FakeClock, QueueManager]:
    clock = FakeClock(start=1_700_000_000.5)
    manager = QueueManager(load_settings(connection="memory"), clock=clock)
    return ScheduleRunner(manager, registry, locks=MemoryLocks(clock), clock=clock), clock, manager


def test_runner_fires_each_tick_after_its_start_once() -> None:
    registry = Schedule()
    queue = _queue()
    registry.every(seconds=10).name("ten").dispatch(NamedJob("t", {}).on_queue(queue))
    runner, clock, manager = _fake_runner(registry)
    assert runner.run_pending() == []  # 1_700_000_000 was before the start: not fired
    clock.advance(9)
    assert runner.run_pending() == []
    clock.advance(1)
    (fired,) = runner.run_pending()
    assert (fired.name, fired.tick_at, fired.fired, fired.skipped) == (
        "ten",
        1_700_000_010,
        True,
        0,
    )
    assert runner.run_pending() == []
    assert manager.connection().sizes([queue])[queue].ready == 1


def test_after_a_pause_only_the_latest_missed_tick_fires() -> None:
    registry = Schedule()
    registry.every(seconds=1).name("second").call(lambda: None)
    runner, clock, _ = _fake_runner(registry)
    runner.run_pending()
    clock.advance(10)
    (fired,) = runner.run_pending()
    assert fired.tick_at == 1_700_000_010 and fired.skipped == 9
    assert runner.next_wake_in() == pytest.approx(0.5)


def test_a_failing_entry_is_reported_and_the_others_still_fire() -> None:
    registry = Schedule()
    calls: list[str] = []

    @registry.every(seconds=1, name="broken")
    def broken() -> None:
        raise RuntimeError("boom")

    registry.every(seconds=1).name("fine").call(lambda: calls.append("fine"))
    runner, clock, _ = _fake_runner(registry)
    runner.run_pending()
    clock.advance(1)
    results = {f.name: f for f in runner.run_pending()}
    assert results["broken"].error == "RuntimeError: boom"
    assert results["fine"].fired and calls == ["fine"]
    records = runner.manager.connection().get_control(LAST_FIRE_PREFIX)
    last = {name: json.loads(text) for name, text in records.items()}
    assert last["schedule:broken"]["error"] == "RuntimeError: boom"
    assert (
        last["schedule:fine"]["tick_at"] == 1_700_000_001 and last["schedule:fine"]["error"] is None
    )


def test_async_functions_are_awaited() -> None:
    registry = Schedule()
    calls: list[int] = []

    @registry.every(seconds=1)
    async def tick() -> None:
        calls.append(1)

    runner, clock, _ = _fake_runner(registry)
    runner.run_pending()
    clock.advance(1)
    runner.run_pending()
    assert calls == [1]


def test_runners_sharing_a_lock_backend_fire_a_tick_once() -> None:
    registry = Schedule()
    registry.every(seconds=5).name("five").call(lambda: None)
    clock = FakeClock(start=1_700_000_000.5)
    locks = MemoryLocks(clock)
    manager = QueueManager(load_settings(connection="memory"), clock=clock)
    runners = [ScheduleRunner(manager, registry, locks=locks, clock=clock) for _ in range(3)]
    for runner in runners:
        runner.run_pending()
    clock.advance(5)
    results = [fired for runner in runners for fired in runner.run_pending()]
    assert sorted(f.fired for f in results) == [False, False, True]


# -- several real runners, real time ----------------------------------------------------


@pytest.fixture(params=["redis", "sqlite", "postgres"])
def durable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueManager]:
    yield from _manager(str(request.param), tmp_path)


def test_two_runners_on_one_store_fire_every_tick_exactly_once(durable: QueueManager) -> None:
    registry = Schedule()
    queue = _queue()
    registry.every(seconds=1).name("each-second").dispatch(NamedJob("tick", {}).on_queue(queue))
    other = QueueManager(durable.settings)  # its own driver, so its own lock backend
    fired: list[Fired] = []
    seen = threading.Lock()

    def record(result: Fired) -> None:
        with seen:
            fired.append(result)

    runners = [ScheduleRunner(m, registry, on_fire=record) for m in (durable, other)]
    assert runners[0].locks is not runners[1].locks
    threads = [threading.Thread(target=r.run, daemon=True) for r in runners]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + GENEROUS_S
        while time.monotonic() < deadline and len({f.tick_at for f in fired if f.fired}) < 4:
            time.sleep(0.1)
    finally:
        for runner in runners:
            runner.stop()
        for thread in threads:
            thread.join(GENEROUS_S)
        other.close()
    per_tick = Counter(f.tick_at for f in fired if f.fired)
    assert len(per_tick) >= 4
    assert set(per_tick.values()) == {1}, per_tick
    assert all(f.error is None for f in fired)
    assert durable.connection().sizes([queue])[queue].ready == len(per_tick)
    last = json.loads(
        durable.connection().get_control("schedule:each-second")["schedule:each-second"]
    )
    assert last["tick_at"] in per_tick and last["job_id"]  # the dashboard's "last fire"


def test_scheduler_start_fires_schedules_in_a_thread_on_memory_workers() -> None:
    manager = QueueManager(load_settings(connection="memory"))
    queue = _queue()
    registry = Schedule()
    registry.every(seconds=1).name("stamp").dispatch(Stamp(label="tick").on_queue(queue))
    worker = manager.worker(queues=(queue,)).start(1)
    scheduler = Scheduler(manager, registry=registry)
    try:
        Stamp.ran.clear()
        Stamp.done.clear()
        with scheduler:
            assert scheduler.running
            assert Stamp.done.wait(GENEROUS_S)
        assert not scheduler.running
    finally:
        worker.stop(GENEROUS_S)
        manager.close()


def test_a_runner_stopped_before_it_runs_returns_at_once() -> None:
    runner, _, _ = _fake_runner(Schedule())
    runner.stop()
    finished = threading.Thread(target=runner.run, daemon=True)
    finished.start()
    finished.join(GENEROUS_S)
    assert not finished.is_alive()


def test_runner_survives_its_redis_going_away_and_fires_again_after(tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    manager = QueueManager(load_settings(connection="redis", redis_url=server.url))
    registry = Schedule()
    queue = _queue()
    registry.every(seconds=1).name("beat").dispatch(NamedJob("beat", {}).on_queue(queue))
    fired: list[Fired] = []
    runner = ScheduleRunner(manager, registry, on_fire=fired.append)
    thread = threading.Thread(target=runner.run, daemon=True)
    try:
        thread.start()
        _wait_until(lambda: any(f.fired for f in fired))
        server.kill()
        time.sleep(2.5)  # several ticks while Redis is down: lock errors, logged
        server.start()  # empty again: no persistence
        down_until = time.time()
        _wait_until(lambda: sum(f.fired for f in fired if f.tick_at > down_until) >= 2)
    finally:
        runner.stop()
        thread.join(GENEROUS_S)
        manager.close()
        server.stop()
    assert not thread.is_alive()


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + GENEROUS_S
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_scheduler_without_a_manager_goes_through_a_test_fake() -> None:
    with fake() as queue:
        job_id = Scheduler().schedule_in(NamedJob("later", {}), 30)
        (record,) = queue.records
    assert record.envelope.id == job_id
    assert record.envelope.available_at - record.envelope.created_at == pytest.approx(30)
