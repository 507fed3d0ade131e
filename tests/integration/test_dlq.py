"""The dead-letter queue API over the memory, SQLite and PostgreSQL failed-job stores."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

import kashq
from kashq import Job, Outcome, QueueManager, Settings
from kashq.alerts import WebhookAlerter
from kashq.dlq import DeadLetterError, DeadLetterQueue, RetryError
from kashq.envelope import decode
from kashq.failed.base import FailedJob, FailedJobStore
from kashq.failed.database import DatabaseFailedJobStore
from kashq.failed.memory import MemoryFailedJobStore
from tests.support.databases import database
from tests.support.http import closed_url, http_server


class ChargeCard(Job):
    order_id: int
    queue = "billing"
    tries = 1

    def handle(self) -> None:
        raise RuntimeError(f"card declined for order {self.order_id}")


class SendReceipt(Job):
    order_id: int
    queue = "emails"
    tries = 1

    def handle(self) -> None:
        raise RuntimeError("smtp down")


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FailedJobStore]:
    if request.param == "memory":
        yield MemoryFailedJobStore()
        return
    with database(request.param, tmp_path, migrated=request.param != "sqlite") as url:
        db_store = DatabaseFailedJobStore(url)
        try:
            yield db_store
        finally:
            db_store.close()


@pytest.fixture
def manager(store: FailedJobStore) -> Iterator[QueueManager]:
    made = QueueManager(Settings(connection="memory"), failed_store=store)
    try:
        yield made
    finally:
        made.close()


def fail_jobs(manager: QueueManager, *jobs: Job) -> list[str]:
    """Dispatch ``jobs`` one by one, each failed for good by a real worker; their ids."""
    worker = manager.worker(queues=("billing", "emails"), timeout_s=None)
    ids = []
    for job in jobs:
        ids.append(manager.dispatch(job))
        assert worker.run_next() is Outcome.FAILED
    return ids


def ready(manager: QueueManager, queue: str, connection: str = "memory") -> int:
    return manager.connection(connection).sizes([queue])[queue].ready


def take(manager: QueueManager, queue: str, connection: str = "memory") -> kashq.Envelope:
    reservation = manager.connection(connection).reserve([queue], lease_s=30)
    assert reservation is not None
    return decode(reservation.raw)


def garbage(store: FailedJobStore) -> FailedJob:
    return store.log(
        FailedJob(
            uuid="garbage-1",
            connection="memory",
            queue="billing",
            job_type="(undecodable)",
            payload="{not json",
            error="envelope is not valid JSON",
            exception="",
            attempts=1,
            failed_at=datetime.now(timezone.utc),
        )
    )


def test_list_shows_failed_jobs_newest_first_by_queue_and_limit(manager):
    first, second, third = fail_jobs(
        manager, ChargeCard(order_id=1), SendReceipt(order_id=1), ChargeCard(order_id=2)
    )
    dlq = DeadLetterQueue(manager=manager)

    assert [j.uuid for j in dlq.list()] == [third, second, first]
    assert [j.uuid for j in dlq.list(queue="billing")] == [third, first]
    assert [j.uuid for j in dlq.list(limit=1)] == [third]
    assert (dlq.count(), dlq.count(queue="emails")) == (3, 1)
    assert "card declined for order 2" in dlq.get(third).error


def test_retry_puts_the_job_back_on_its_queue_with_the_same_id_and_no_attempts(manager):
    (job_id,) = fail_jobs(manager, ChargeCard(order_id=7))
    dlq = DeadLetterQueue(manager=manager)
    record = dlq.get(job_id)
    assert record.attempts == 1

    assert dlq.retry(record.id) == job_id

    assert dlq.count() == 0, "gone from the store"
    envelope = take(manager, "billing")
    assert (envelope.id, envelope.attempts, envelope.failure) == (job_id, 0, None)
    assert envelope.payload == {"order_id": 7}


def test_retry_accepts_the_uuid_and_a_target_queue(manager):
    (job_id,) = fail_jobs(manager, ChargeCard(order_id=8))
    dlq = DeadLetterQueue(manager=manager)

    assert dlq.retry(job_id, target_queue="recovery") == job_id

    assert (ready(manager, "billing"), ready(manager, "recovery")) == (0, 1)
    assert take(manager, "recovery").queue == "recovery"


def test_retry_all_moves_every_failed_job_onto_the_target_queue_oldest_first(manager):
    ids = fail_jobs(
        manager, ChargeCard(order_id=1), SendReceipt(order_id=2), ChargeCard(order_id=3)
    )
    dlq = DeadLetterQueue(manager=manager)

    assert dlq.retry_all(target_queue="recovery") == ids

    assert dlq.count() == 0
    assert [take(manager, "recovery").id for _ in ids] == ids
    assert (ready(manager, "billing"), ready(manager, "emails")) == (0, 0)


def test_retry_all_without_a_target_returns_each_job_to_its_own_queue(manager):
    fail_jobs(manager, ChargeCard(order_id=1), SendReceipt(order_id=2))
    DeadLetterQueue(manager=manager).retry_all()
    assert (ready(manager, "billing"), ready(manager, "emails")) == (1, 1)


def test_a_retried_job_runs_again_in_a_worker(manager):
    fail_jobs(manager, ChargeCard(order_id=5))
    dlq = DeadLetterQueue(manager=manager)
    dlq.retry_all()

    assert manager.worker(queues=("billing",), timeout_s=None).run_next() is Outcome.FAILED
    (again,) = dlq.list()
    assert again.attempts == 1, "attempts started from zero again"


def test_forget_deletes_one_failed_job(manager):
    keep, drop = fail_jobs(manager, ChargeCard(order_id=1), ChargeCard(order_id=2))
    dlq = DeadLetterQueue(manager=manager)

    assert dlq.forget(drop).uuid == drop

    assert [j.uuid for j in dlq.list()] == [keep]
    assert ready(manager, "billing") == 0, "forgetting does not requeue"


def test_unknown_ids_raise_a_clear_error(manager):
    dlq = DeadLetterQueue(manager=manager)
    for action in (dlq.get, dlq.retry, dlq.forget):
        with pytest.raises(DeadLetterError, match="no failed job with id or uuid 999"):
            action(999)
    with pytest.raises(DeadLetterError, match="no-such-uuid"):
        dlq.retry("no-such-uuid")


@pytest.mark.parametrize("key", [None, 1.5, True, b"1", ["1"]])
def test_a_key_that_is_neither_id_nor_uuid_raises_a_clear_error(manager, key):
    dlq = DeadLetterQueue(manager=manager)
    for action in (dlq.get, dlq.retry, dlq.forget):
        with pytest.raises(DeadLetterError, match="found by its numeric id or its uuid"):
            action(key)


def test_an_undecodable_payload_is_not_retried_and_stays_in_the_store(manager, store):
    bad = garbage(store)
    (good,) = fail_jobs(manager, ChargeCard(order_id=4))
    dlq = DeadLetterQueue(manager=manager)

    with pytest.raises(DeadLetterError, match="not a job envelope"):
        dlq.retry(bad.id)
    with pytest.raises(RetryError) as raised:
        dlq.retry_all()

    assert raised.value.retried == [good]
    assert list(raised.value.failures) == [bad.id]
    assert [j.uuid for j in dlq.list()] == ["garbage-1"]
    assert ready(manager, "billing") == 1


def test_the_default_store_is_the_current_managers():
    store = MemoryFailedJobStore()
    current = kashq.configure(QueueManager(Settings(connection="memory"), failed_store=store))
    dlq = DeadLetterQueue()
    assert dlq.store is store
    assert dlq.manager is current


def test_notify_tells_every_alerter_and_survives_a_failing_one(manager):
    (job_id,) = fail_jobs(manager, ChargeCard(order_id=9))
    dlq = DeadLetterQueue(manager=manager)
    with http_server() as server:
        dlq.add_alerter(WebhookAlerter(closed_url(), timeout_s=2))
        dlq.add_alerter(WebhookAlerter(server.url, timeout_s=2))

        assert dlq.notify(dlq.get(job_id)) == 1

        (request,) = server.requests
    body = request.json()
    assert (body["job_id"], body["queue"], body["connection"]) == (job_id, "billing", "memory")


def test_retry_on_the_database_driver_pushes_the_job_back_to_its_table(tmp_path):
    with database("sqlite", tmp_path) as url:
        manager = QueueManager(Settings(connection="database", database_url=url))
        try:
            (job_id,) = fail_jobs(manager, ChargeCard(order_id=11))
            dlq = DeadLetterQueue(manager=manager)
            assert dlq.get(job_id).connection == "database"

            assert dlq.retry(job_id) == job_id

            assert dlq.count() == 0
            envelope = take(manager, "billing", "database")
            assert (envelope.id, envelope.attempts) == (job_id, 0)
        finally:
            manager.close()
            store = manager.failed_store()
            if isinstance(store, DatabaseFailedJobStore):
                store.close()


def test_retrying_on_the_sync_connection_keeps_the_record_of_a_second_failure():
    manager = QueueManager(Settings(connection="sync"))
    try:
        job_id = manager.dispatch(ChargeCard(order_id=12))  # runs, and fails, right here
        dlq = DeadLetterQueue(manager=manager)
        first = dlq.get(job_id)

        assert dlq.retry(job_id) == job_id  # runs again, and fails again

        (again,) = dlq.list()
        assert again.uuid == job_id
        assert again.failed_at > first.failed_at, "the second failure, not the forgotten one"
    finally:
        manager.close()
