"""The FailedJobStore protocol, on memory, SQLite, PostgreSQL and MariaDB alike."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from kashq.envelope import new_job_id
from kashq.exceptions import FailedStoreError
from kashq.failed.base import FailedJob, FailedJobStore
from kashq.failed.database import DatabaseFailedJobStore
from kashq.failed.memory import MemoryFailedJobStore
from tests.support.databases import KINDS, database
from tests.support.services import free_port

NOW = datetime.now(timezone.utc).replace(microsecond=123456)


@contextmanager
def make_store(kind: str, tmp_path: Path) -> Iterator[FailedJobStore]:
    if kind == "memory":
        yield MemoryFailedJobStore()
        return
    with database(kind, tmp_path, migrated=kind != "sqlite") as url:
        store = DatabaseFailedJobStore(url)
        try:
            yield store
        finally:
            store.close()


@pytest.fixture(params=["memory", *KINDS])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FailedJobStore]:
    with make_store(request.param, tmp_path) as made:
        yield made


def failed(
    queue: str = "default", *, ago: timedelta = timedelta(0), error: str = "RuntimeError: boom"
) -> FailedJob:
    return FailedJob(
        uuid=new_job_id(),
        connection="database",
        queue=queue,
        job_type="app.jobs.SendEmail",
        payload='{"v":1,"id":"x"}' + " " * 70_000,  # beyond MySQL's 64 KiB TEXT
        error=error,
        exception="Traceback (most recent call last):\n  ...\nRuntimeError: boom",
        attempts=3,
        failed_at=NOW - ago,
        host="worker-1",
        pid=4242,
        reason="max_exceptions",
    )


def test_logged_job_gets_an_id_and_is_found_by_id_and_by_uuid(store):
    job = failed()
    logged = store.log(job)
    assert logged.id > 0
    assert store.find(logged.id) == logged
    assert store.find(str(logged.id)) == logged, "a digit string means the numeric id"
    assert store.find(job.uuid) == logged
    assert (logged.uuid, logged.payload, logged.exception) == (job.uuid, job.payload, job.exception)
    assert (logged.host, logged.pid, logged.attempts) == ("worker-1", 4242, 3)


def test_find_returns_none_for_an_unknown_key(store):
    assert store.find(999_999) is None
    assert store.find(new_job_id()) is None


@pytest.mark.parametrize(
    "key",
    [2**31, 2**63, 10**22, "99999999999999999999999", "1" * 5000],
    ids=["2^31", "2^63", "10^22", "23 digits", "5000 digits"],
)
def test_an_id_beyond_any_column_names_no_record(store, key):
    # It overflowed on SQLite (OverflowError) and failed on PostgreSQL with
    # "integer out of range"; it simply names no failed job.
    store.log(failed())
    assert store.find(key) is None
    assert store.forget(key) is False
    assert store.count() == 1


def test_logging_the_same_uuid_twice_keeps_the_first_record(store):
    job = failed()
    first = store.log(job)
    second = store.log(job)
    again = store.log(
        FailedJob(
            uuid=job.uuid,
            connection="other",
            queue="other",
            job_type="x",
            payload="{}",
            error="a later failure",
            exception="",
            attempts=9,
            failed_at=NOW,
        )
    )
    assert second == first
    assert again == first
    assert store.count() == 1


def test_concurrent_logs_of_one_uuid_record_it_once(store):
    job = failed()
    results: list[FailedJob] = []
    errors: list[BaseException] = []

    def log() -> None:
        try:
            results.append(store.log(job))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=log) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len({r.id for r in results}) == 1 and len(results) == 6
    assert store.count() == 1


def test_all_lists_newest_first_and_filters_by_queue_and_limits(store):
    oldest = store.log(failed("mail", ago=timedelta(hours=3)))
    middle = store.log(failed("default", ago=timedelta(hours=2)))
    newest = store.log(failed("mail", ago=timedelta(hours=1)))
    tie_a = store.log(failed("mail", ago=timedelta(hours=5)))
    tie_b = store.log(failed("mail", ago=timedelta(hours=5)))
    assert [j.id for j in store.all()] == [
        newest.id,
        middle.id,
        oldest.id,
        tie_b.id,
        tie_a.id,
    ], "newest first; among equal times the later id first"
    assert [j.id for j in store.all(queue="mail")] == [newest.id, oldest.id, tie_b.id, tie_a.id]
    assert [j.id for j in store.all(limit=2)] == [newest.id, middle.id]
    assert [j.id for j in store.all(queue="mail", limit=1)] == [newest.id]
    assert store.all(queue="nothing") == []


def test_forget_deletes_one_job_by_id_or_uuid(store):
    a, b, c = (store.log(failed()) for _ in range(3))
    assert store.forget(a.id) is True
    assert store.forget(b.uuid) is True
    assert store.forget(str(c.id)) is True
    assert store.forget(a.id) is False
    assert store.count() == 0


def test_ids_of_deleted_records_are_never_handed_out_again(store):
    # SQLite without AUTOINCREMENT gave a new row the largest id + 1, so an id
    # typed from an old listing (`queue:forget 2`) could delete another job.
    first, second = store.log(failed()), store.log(failed())
    assert store.forget(second.id)
    third = store.log(failed())
    assert third.id > second.id, "the newest record's id is not reused"
    assert store.flush() == 2
    fourth = store.log(failed())
    assert fourth.id > third.id > first.id, "nor after the table is emptied"
    assert store.find(second.id) is None and store.find(third.id) is None


def test_between_lists_the_records_of_an_id_range_by_id_in_chunks(store):
    jobs = [store.log(failed("mail" if n % 2 else "default")) for n in range(6)]
    ids = [job.id for job in jobs]
    assert [j.id for j in store.between(ids[1], ids[4])] == ids[1:5]
    assert [j.id for j in store.between(ids[1], ids[4], limit=2)] == ids[1:3]
    assert [j.id for j in store.between(0, 10**30, queue="mail")] == ids[1::2]
    assert store.between(ids[-1] + 1, 10**30) == []
    assert store.between(10**30, 10**31) == []
    assert store.forget(ids[2])
    assert [j.id for j in store.between(ids[0], ids[3])] == [ids[0], ids[1], ids[3]]


def test_page_walks_newest_first_by_queue_and_type_a_page_at_a_time(store):
    jobs = [store.log(failed("mail" if n % 2 else "default")) for n in range(7)]
    ids = [job.id for job in jobs]
    first = store.page(limit=3)
    assert [j.id for j in first] == ids[::-1][:3]
    assert [j.id for j in store.page(before_id=first[-1].id, limit=3)] == ids[::-1][3:6]
    assert [j.id for j in store.page(queue="mail")] == ids[1::2][::-1]
    assert store.page(job_type="no.such.Type") == []
    assert [j.id for j in store.page(job_type=jobs[0].job_type, before_id=ids[1])] == [ids[0]]


def test_flush_deletes_everything(store):
    for _ in range(4):
        store.log(failed())
    assert store.flush() == 4
    assert store.count() == 0
    assert store.flush() == 0


def test_flush_older_than_hours_keeps_recent_jobs(store):
    recent = store.log(failed(ago=timedelta(minutes=30)))
    store.log(failed(ago=timedelta(hours=3)))
    store.log(failed(ago=timedelta(days=2)))
    assert store.flush(older_than_hours=2) == 2
    assert [j.id for j in store.all()] == [recent.id]


def test_prune_deletes_jobs_failed_before_a_time_in_chunks(store):
    for hours in range(1, 12):
        store.log(failed(ago=timedelta(hours=hours)))
    keep = [store.log(failed(ago=timedelta(minutes=m))) for m in (1, 2)]
    removed = store.prune(NOW - timedelta(minutes=30), chunk_size=3)
    assert removed == 11
    assert sorted(j.id for j in store.all()) == sorted(j.id for j in keep)


def test_count_counts_all_or_one_queue(store):
    store.log(failed("a"))
    store.log(failed("a"))
    store.log(failed("b"))
    assert store.count() == 3
    assert store.count(queue="a") == 2
    assert store.count(queue="zzz") == 0


def record_at(when: datetime) -> FailedJob:
    return FailedJob(
        uuid=new_job_id(),
        connection="c",
        queue="q",
        job_type="t",
        payload="{}",
        error="e",
        exception="x",
        attempts=1,
        failed_at=when,
    )


def test_failed_at_round_trips_as_an_aware_utc_datetime(store):
    when = datetime(2024, 5, 6, 7, 8, 9, 654321, tzinfo=timezone.utc)
    job = store.log(record_at(when))
    found = store.find(job.uuid)
    assert found is not None
    assert found.failed_at == when
    assert found.failed_at.utcoffset() == timedelta(0)
    assert store.all()[0].failed_at == when


@pytest.mark.parametrize("kind", KINDS)
def test_database_store_converts_other_time_zones_to_utc(kind, tmp_path):
    when = datetime(2024, 5, 6, 7, 8, 9, 654321, tzinfo=timezone(timedelta(hours=2)))
    with make_store(kind, tmp_path) as store:
        logged = store.log(record_at(when))
        found = store.find(logged.id)
    assert found is not None
    assert found.failed_at == when
    assert (found.failed_at.tzinfo, found.failed_at.hour) == (timezone.utc, 5)
    assert logged.failed_at == found.failed_at


def test_unreachable_database_is_a_one_line_failed_store_error_without_the_password():
    store = DatabaseFailedJobStore(f"postgresql+psycopg://u:pw-98765@127.0.0.1:{free_port()}/x")
    with pytest.raises(FailedStoreError) as caught:
        store.log(failed())
    assert "pw-98765" not in str(caught.value)
    assert "\n" not in str(caught.value)
    store.close()


def test_a_later_failure_of_the_same_job_replaces_its_record(store):
    first = store.log(failed(error="first", ago=timedelta(seconds=5)))
    later = dataclasses.replace(failed(error="second"), uuid=first.uuid)

    replaced = store.log(later)

    assert replaced.id == first.id
    (kept,) = store.all()
    assert (kept.id, kept.error, kept.failed_at) == (first.id, "second", later.failed_at)


def test_a_duplicate_of_the_same_failure_keeps_the_first_record(store):
    first = store.log(failed(error="first"))

    again = store.log(dataclasses.replace(failed(error="again"), uuid=first.uuid))

    assert again.id == first.id
    assert store.find(first.uuid).error == "first"


def test_forget_with_a_stale_failed_at_keeps_a_newer_failure(store):
    first = store.log(failed(error="first", ago=timedelta(seconds=5)))
    store.log(dataclasses.replace(failed(error="second"), uuid=first.uuid))

    assert store.forget(first.id, failed_at=first.failed_at) is False
    newer = store.find(first.uuid)
    assert newer.error == "second"
    assert store.forget(first.id, failed_at=newer.failed_at) is True
    assert store.count() == 0


def test_every_store_can_be_closed_and_closing_again_is_harmless(store):
    store.log(failed())

    store.close()
    store.close()


def test_close_releases_the_connections_and_a_later_use_finds_the_records(store):
    store.log(failed())
    store.count()  # a connection went back to the pool

    store.close()

    engine = getattr(store, "engine", None)
    if engine is not None:
        assert engine.pool.checkedin() == 0
    assert store.count() == 1
