"""How idle database workers learn of new jobs: PostgreSQL notifications (and the poll when
they are lost), SQLite's watched files, MariaDB's polls that back off.

Each wake-up test makes the poll (and the reserve's wait) far longer than the test waits
for the job, so it can only be found in time by the mechanism under test; the claims are
counted too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from kashq import Job
from kashq import outbox as outbox_module
from kashq.db import migrate
from kashq.drivers.base import Reservation
from kashq.drivers.database import DatabaseDriver
from kashq.drivers.database import wakeup as wakeups
from kashq.testing import FakeClock
from tests.support.databases import database
from tests.support.waiting import eventually

LONG_S = 60.0  # a poll no test waits for


class Ping(Job):
    n: int = 0

    def handle(self) -> None:
        pass


def envelope(queue: str = "default", delay_s: float = 0.0):
    return Ping().delay(delay_s).to_envelope(default_queue=queue, now=time.time())


class Waiting:
    """A reserve waiting on its own thread, counting the claims it makes."""

    def __init__(self, driver: DatabaseDriver, queues: list[str], wait_s: float = LONG_S) -> None:
        self.claims = 0
        self.found: list[Reservation] = []
        take = driver._take

        def counting(*args, **kwargs):
            self.claims += 1
            return take(*args, **kwargs)

        driver._take = counting  # type: ignore[method-assign]
        self._thread = threading.Thread(
            target=lambda: self.found.extend(
                driver.reserve_batch(queues, lease_s=30, wait_s=wait_s, limit=5)
            ),
            daemon=True,  # left waiting when a test fails
        )
        self._thread.start()

    def settled(self) -> Waiting:
        """Once its first claim found nothing and it waits."""
        assert eventually(lambda: self.claims >= 1, 10)
        time.sleep(0.2)
        assert not self.found
        return self

    def result(self) -> list[Reservation]:
        """What it found, which must come well before its next poll."""
        self._thread.join(10)
        assert not self._thread.is_alive(), "nothing woke the waiting reserve"
        return self.found


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[str]:
    with database("postgres", tmp_path, migrated=True) as url:
        yield url


@pytest.fixture
def pair(postgres: str, monkeypatch) -> Iterator[tuple[DatabaseDriver, DatabaseDriver]]:
    """A waiting driver whose poll never comes in time, listening, and one that pushes."""
    monkeypatch.setattr(wakeups, "LISTEN_FALLBACK_S", LONG_S)
    waiter, pusher = DatabaseDriver(postgres, poll_interval_s=LONG_S), DatabaseDriver(postgres)
    try:
        live(waiter)
        yield waiter, pusher
    finally:
        waiter.close()
        pusher.close()


def live(driver: DatabaseDriver) -> wakeups.Notifications:
    """The driver's notifications, once its listening connection is up."""
    listening = driver._wakeups
    assert isinstance(listening, wakeups.Notifications)
    listening.wait(listening.mark([]), [], 0.0)  # starts the listening thread
    assert eventually(lambda: listening.exact, 10), "the listening connection never came up"
    return listening


def test_postgres_a_pushed_job_wakes_the_waiting_worker_at_once(pair):
    waiter, pusher = pair
    waiting = Waiting(waiter, ["default"]).settled()
    pusher.push(envelope("other"))  # another queue's notification: not woken for it
    job = envelope()
    pusher.push(job)
    assert [r.id for r in waiting.result()] == [job.id]
    assert waiting.claims <= 2, "the first claim, and the one after the push"


def test_postgres_a_bulk_push_and_a_released_job_wake_waiting_workers(pair):
    waiter, pusher = pair
    waiting = Waiting(waiter, ["bulk"]).settled()
    pusher.push_many([envelope("bulk"), envelope("bulk")])
    taken = waiting.result()
    assert len(taken) == 2

    waiting = Waiting(waiter, ["bulk"]).settled()
    pusher.release(taken[0], Ping(n=1).to_envelope(default_queue="bulk", now=time.time()))
    assert len(waiting.result()) == 1


def test_postgres_a_waiting_worker_wakes_for_a_delayed_job_when_it_falls_due(pair):
    waiter, pusher = pair
    waiting = Waiting(waiter, ["default"]).settled()
    job = envelope(delay_s=0.5)
    pusher.push(job)
    assert [r.id for r in waiting.result()] == [job.id]


def test_postgres_two_installs_in_one_database_do_not_wake_each_other(postgres, monkeypatch):
    monkeypatch.setattr(wakeups, "LISTEN_FALLBACK_S", LONG_S)
    migrate.upgrade(postgres, table_prefix="app_")
    waiter = DatabaseDriver(postgres, poll_interval_s=LONG_S)
    other = DatabaseDriver(postgres, table_prefix="app_")
    try:
        listening = live(waiter)
        mark = listening.mark(["default"])
        other.push(envelope())
        time.sleep(0.3)
        assert listening.mark(["default"]) == mark
        DatabaseDriver(waiter.engine).push(envelope())
        assert eventually(lambda: listening.mark(["default"]) != mark, 10)
    finally:
        waiter.close()
        other.close()


def test_postgres_workers_poll_while_notifications_are_lost_then_listen_again(
    postgres, monkeypatch
):
    monkeypatch.setattr(wakeups, "LISTEN_FALLBACK_S", LONG_S)
    waiter = DatabaseDriver(postgres, poll_interval_s=0.05)
    pusher = DatabaseDriver(postgres)
    listening = live(waiter)
    listen_once = listening._listen_once
    try:
        # The listening connection is killed, and cannot come back for now.
        def down() -> None:
            raise OSError("no connection")

        monkeypatch.setattr(listening, "_listen_once", down)
        with pusher.engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": listening.backend_pid})
        assert eventually(lambda: not listening.exact, 10)
        waiting = Waiting(waiter, ["default"]).settled()
        job = envelope()
        pusher.push(job)
        assert [r.id for r in waiting.result()] == [job.id]
        assert waiting.claims > 3, "found by the poll"

        monkeypatch.setattr(listening, "_listen_once", listen_once)
        live(waiter)
        monkeypatch.setattr(waiter._wakeups, "_poll_s", LONG_S)
        waiting = Waiting(waiter, ["default"]).settled()
        job = envelope()
        pusher.push(job)
        assert [r.id for r in waiting.result()] == [job.id]
        assert waiting.claims <= 2, "woken by the notification"
    finally:
        waiter.close()
        pusher.close()


def test_postgres_a_rolled_back_push_wakes_nobody(postgres, monkeypatch):
    monkeypatch.setattr(wakeups, "LISTEN_FALLBACK_S", LONG_S)
    waiter = DatabaseDriver(postgres, poll_interval_s=LONG_S)
    try:
        listening = live(waiter)
        mark = listening.mark(["default"])
        with waiter.engine.connect() as conn, conn.begin() as tx:
            waiter._notify(conn, [envelope()])
            tx.rollback()
        time.sleep(0.3)
        assert listening.mark(["default"]) == mark
    finally:
        waiter.close()


def test_sqlite_a_pushed_job_wakes_the_waiting_worker_through_its_files(tmp_path, monkeypatch):
    monkeypatch.setattr(wakeups, "IDLE_POLL_MAX_S", LONG_S)
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    waiter = DatabaseDriver(url, poll_interval_s=LONG_S)
    pusher = DatabaseDriver(url)
    try:
        pusher.push(envelope("other"))  # creates the file
        waiting = Waiting(waiter, ["default"]).settled()
        job = envelope()
        pusher.push(job)
        assert [r.id for r in waiting.result()] == [job.id]
    finally:
        waiter.close()
        pusher.close()


def test_mariadb_polls_back_off_while_idle_and_speed_up_after_a_job(tmp_path, monkeypatch):
    with database("mariadb", tmp_path, migrated=True) as url:
        driver = DatabaseDriver(url, poll_interval_s=0.05)
        try:
            polling = driver._wakeups
            assert type(polling) is wakeups.Polling
            clock = FakeClock(start=100.0)
            monkeypatch.setattr(wakeups.time, "monotonic", clock.time)
            assert polling.interval_s() == 0.05
            clock.advance(0.4)
            assert polling.interval_s() == pytest.approx(0.1)
            clock.advance(60)
            assert polling.interval_s() == wakeups.IDLE_POLL_MAX_S
            polling.found()
            assert polling.interval_s() == 0.05
        finally:
            driver.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mariadb"])
def test_a_wake_ends_every_wait_at_once(kind, tmp_path, monkeypatch):
    monkeypatch.setattr(wakeups, "IDLE_POLL_MAX_S", LONG_S)
    monkeypatch.setattr(wakeups, "LISTEN_FALLBACK_S", LONG_S)
    with database(kind, tmp_path, migrated=True) as url:
        driver = DatabaseDriver(url, poll_interval_s=LONG_S)
        try:
            if kind == "postgres":
                live(driver)
            waits = driver._wakeups
            marks = [waits.mark(["default"]) for _ in range(2)]
            ended: list[int] = []
            threads = [
                threading.Thread(
                    target=lambda m=m: (waits.wait(m, ["default"], LONG_S), ended.append(1)),
                    daemon=True,
                )
                for m in marks
            ]
            for t in threads:
                t.start()
            time.sleep(0.2)
            assert not ended, "nothing should end the waits yet"
            waits.wake()
            for t in threads:
                t.join(10)
            assert len(ended) == 2, "the wake did not end the waits"
            assert waits.mark(["default"]) != marks[0]
        finally:
            driver.close()


def test_a_stopped_outbox_relay_ends_its_idle_wait(tmp_path, monkeypatch):
    monkeypatch.setattr(wakeups, "IDLE_POLL_MAX_S", LONG_S)
    monkeypatch.setattr(outbox_module, "IDLE_WAIT_S", LONG_S)
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    migrate.upgrade(url)
    outbox = outbox_module.Outbox(url, poll_interval_s=LONG_S)
    relays = 0
    relay = outbox.relay

    def counting(*args, **kwargs):
        nonlocal relays
        relays += 1
        return relay(*args, **kwargs)

    monkeypatch.setattr(outbox, "relay", counting)
    try:
        thread = outbox_module.RelayThread(outbox, lambda name: None).start()  # type: ignore[arg-type, return-value]
        assert eventually(lambda: relays >= 1, 10)
        time.sleep(0.3)  # in its idle wait now
        passes = relays
        thread.stop(timeout_s=10)
        assert not thread._thread.is_alive(), "the relay slept through its stop"
        assert relays == passes, "a stopped relay makes no more passes"
    finally:
        outbox.close()
