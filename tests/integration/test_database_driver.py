"""The database driver beyond the contract: several processes, garbage rows, errors.

Processes are real (``python -c`` subprocesses on the same database), so the
locking under test is the database's own: SQLite's write lock, PostgreSQL's
and MariaDB's ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import insert

from kashq import Job, Outcome, Worker, WorkerOptions
from kashq.db.schema import jobs
from kashq.drivers.database import DatabaseDriver
from kashq.envelope import Envelope, decode, new_job_id
from kashq.exceptions import DriverError
from kashq.failed.database import DatabaseFailedJobStore
from kashq.testing import FakeClock
from tests.support.databases import KINDS, database
from tests.support.processes import run_together, start_python
from tests.support.services import free_port

RAN: list[int] = []


class Recorded(Job):
    n: int

    def handle(self) -> None:
        RAN.append(self.n)


def envelope(queue: str = "default", **payload: int) -> Envelope:
    now = time.time()
    return Envelope(new_job_id(), "tests.Db", queue, dict(payload), now, now)


CONSUMER = """
import sys
from kashq.drivers.database import DatabaseDriver
driver = DatabaseDriver(sys.argv[1])
driver.sizes(["default"])  # connect (and migrate a new SQLite file) before the start signal
print("ready", flush=True)
sys.stdin.readline()
while (res := driver.reserve(["default"], lease_s=60)) is not None:
    driver.ack(res)
    print(res.id, flush=True)
driver.close()
"""


@pytest.mark.parametrize("kind", KINDS)
def test_two_processes_reserving_concurrently_never_get_the_same_job(kind, tmp_path):
    with database(kind, tmp_path, migrated=True) as url:
        driver = DatabaseDriver(url)
        pushed = [envelope(n=i) for i in range(300)]
        driver.push_many(pushed)
        outputs = run_together([start_python(CONSUMER, url) for _ in range(2)])
        taken = Counter(job_id for out in outputs for job_id in out)
        assert sorted(taken) == sorted(env.id for env in pushed)
        assert set(taken.values()) == {1}, "a job was handed to two processes"
        if kind != "sqlite":  # SQLite's write lock is not fair: one process may take all
            assert all(outputs), "both processes should have taken jobs"
        assert driver.sizes(["default"])["default"].total == 0
        driver.close()


def test_job_pushed_in_one_process_is_reserved_in_another_on_a_new_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'queue.sqlite'}"
    env = envelope(n=42)
    producer = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from kashq.drivers.database import DatabaseDriver; "
            "from kashq.envelope import decode; "
            "DatabaseDriver(sys.argv[1]).push(decode(sys.argv[2]))",
            url,
            env.encode(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert producer.returncode == 0, producer.stderr
    driver = DatabaseDriver(url)
    res = driver.reserve(["default"], lease_s=30)
    assert res is not None
    assert decode(res.raw) == env
    driver.ack(res)
    driver.close()


def test_reserve_waits_for_a_job_pushed_by_another_process(tmp_path):
    url = f"sqlite:///{tmp_path / 'queue.sqlite'}"
    driver = DatabaseDriver(url, poll_interval_s=0.02)
    env = envelope(n=1)
    producer = start_python(
        """
        import sys, time
        from kashq.drivers.database import DatabaseDriver
        from kashq.envelope import decode
        time.sleep(0.3)
        DatabaseDriver(sys.argv[1]).push(decode(sys.argv[2]))
        """,
        url,
        env.encode(),
    )
    started = time.monotonic()
    res = driver.reserve(["default"], lease_s=30, wait_s=30)
    assert producer.wait(30) == 0
    assert res is not None and res.id == env.id
    assert time.monotonic() - started < 10
    driver.close()


def insert_raw(driver: DatabaseDriver, job_id: str, raw: str) -> None:
    with driver.engine.begin() as conn:
        conn.execute(
            insert(jobs).values(
                id=job_id, queue="default", raw=raw, priority=0, available_at=0.0, deliveries=0
            )
        )


def unknown_type_envelope() -> Envelope:
    now = time.time()
    return Envelope(new_job_id(), "nobody.Registered", "default", {"x": 1}, now, now)


@pytest.mark.parametrize("kind", KINDS)
def test_garbage_rows_written_straight_into_the_table_are_handed_out(kind, tmp_path):
    with database(kind, tmp_path, migrated=True) as url:
        driver = DatabaseDriver(url)
        unknown = unknown_type_envelope()
        insert_raw(driver, "garbage-1", "not json")
        insert_raw(driver, unknown.id, unknown.encode())
        first = driver.reserve(["default"], lease_s=30)
        second = driver.reserve(["default"], lease_s=30)
        assert first is not None and second is not None
        assert (first.id, first.raw) == ("garbage-1", "not json")
        assert second.raw == unknown.encode()
        driver.close()


@pytest.mark.parametrize("kind", KINDS)
def test_worker_records_garbage_rows_as_failed_and_keeps_processing(kind, tmp_path):
    RAN.clear()
    with database(kind, tmp_path, migrated=True) as url:
        driver = DatabaseDriver(url)
        store = DatabaseFailedJobStore(url)
        unknown = unknown_type_envelope()
        insert_raw(driver, "garbage-1", "not json")
        insert_raw(driver, unknown.id, unknown.encode())
        driver.push(Recorded(n=7).to_envelope(default_queue="default", now=time.time()))
        options = WorkerOptions(connection="database", stop_when_empty=True, tries=1)
        worker = Worker(driver, store, options)

        outcomes = [worker.run_next() for _ in range(4)]

        assert outcomes == [Outcome.FAILED, Outcome.FAILED, Outcome.COMPLETED, None]
        assert RAN == [7]
        garbage = store.find("garbage-1")
        assert garbage is not None
        assert garbage.payload == "not json"
        assert "not valid JSON" in garbage.error
        stranger = store.find(unknown.id)
        assert stranger is not None
        assert stranger.job_type == "nobody.Registered"
        assert "unknown job type 'nobody.Registered'" in stranger.error
        assert store.count() == 2
        assert driver.sizes(["default"])["default"].total == 0
        store.close()
        driver.close()


def test_unreachable_database_is_a_one_line_driver_error_without_the_password():
    url = f"postgresql+psycopg://kashq:s3cret-pw@127.0.0.1:{free_port()}/nowhere"
    driver = DatabaseDriver(url)
    with pytest.raises(DriverError) as caught:
        driver.push(envelope())
    message = str(caught.value)
    assert "s3cret-pw" not in message
    assert "\n" not in message
    assert "127.0.0.1" in message
    driver.close()


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
def test_server_database_without_tables_asks_for_kashq_migrate(kind, tmp_path):
    with database(kind, tmp_path) as url:
        driver = DatabaseDriver(url)
        with pytest.raises(DriverError, match="run `kashq migrate`"):
            driver.reserve(["default"], lease_s=30)
        driver.close()


def test_sizes_count_a_lapsed_lease_as_ready_again(tmp_path):
    driver = DatabaseDriver(f"sqlite:///{tmp_path / 'q.sqlite'}")
    driver.push(envelope())
    assert driver.reserve(["default"], lease_s=0.05) is not None
    assert driver.sizes(["default"])["default"].reserved == 1
    time.sleep(0.1)
    sizes = driver.sizes(["default"])["default"]
    assert (sizes.ready, sizes.reserved) == (1, 0)
    again = driver.reserve(["default"], lease_s=30)
    assert again is not None and again.deliveries == 2
    driver.close()


@pytest.mark.parametrize("kind", KINDS)
def test_capped_sizes_stop_at_the_cap_and_agree_with_sizes_below_it(kind, tmp_path):
    with database(kind, tmp_path, migrated=True) as url:
        driver = DatabaseDriver(url)
        now = time.time()
        driver.push_many([envelope("mail") for _ in range(5)])
        later = [dataclasses.replace(envelope("mail"), available_at=now + 600) for _ in range(3)]
        driver.push_many([*later, envelope("sms")])
        assert driver.reserve(["sms"], lease_s=30) is not None
        assert driver.queue_names() == ["mail", "sms"]  # one index probe per queue
        capped = driver.sizes_up_to(["mail", "sms", "none"], 2)
        assert [(s.ready, s.delayed, s.reserved) for s in capped.values()] == [
            (2, 2, 0), (0, 0, 1), (0, 0, 0)
        ]  # fmt: skip
        assert driver.sizes_up_to(["mail", "sms"], 100) == driver.sizes(["mail", "sms"])
        driver.close()


def test_pushing_an_id_again_replaces_the_stored_job(tmp_path):
    driver = DatabaseDriver(f"sqlite:///{tmp_path / 'q.sqlite'}")
    first = envelope(n=1)
    driver.push(first)
    replacement = Envelope(first.id, first.type, "default", {"n": 2}, time.time(), time.time())
    driver.push_many([replacement, envelope(n=3)])
    res = driver.reserve(["default"], lease_s=30)
    assert res is not None
    assert json.loads(res.raw)["payload"] == {"n": 2}
    assert driver.sizes(["default"])["default"].total == 2
    driver.close()


def test_closing_a_driver_leaves_an_engine_it_was_given_alone(tmp_path):
    owner = DatabaseDriver(f"sqlite:///{Path(tmp_path) / 'q.sqlite'}")
    pool = owner.engine.pool
    borrower = DatabaseDriver(owner.engine)
    borrower.push(envelope())
    borrower.close()
    assert owner.engine.pool is pool, "the borrowed engine was disposed"
    assert owner.sizes(["default"])["default"].ready == 1
    owner.close()
    assert owner.engine.pool is not pool


@pytest.mark.parametrize(
    "url",
    [
        "nosuchdb://user:pw-123456@host/db",
        "postgresql+psycopg://user:pw-123456@host:notaport/db",
        "sqlite:////proc/no-such-dir/kashq.sqlite",
    ],
)
def test_unusable_url_is_a_one_line_driver_error_without_the_password(url):
    with pytest.raises(DriverError) as caught:
        DatabaseDriver(url)
    message = str(caught.value)
    assert "pw-123456" not in message
    assert "\n" not in message
    assert "database" in message.lower()


@pytest.mark.parametrize("kind", KINDS)
def test_extending_twice_at_the_same_instant_still_reports_the_lease_as_held(kind, tmp_path):
    clock = FakeClock()  # MySQL counts only changed rows unless told otherwise
    with database(kind, tmp_path, migrated=True) as url:
        driver = DatabaseDriver(url, clock=clock)
        driver.push(dataclasses.replace(envelope(), available_at=clock.time()))
        res = driver.reserve(["default"], lease_s=30)
        assert res is not None
        assert driver.extend(res, 30) is True
        assert driver.extend(res, 30) is True
        driver.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_repeated_reserve_with_the_same_token_returns_the_same_job(kind, tmp_path):
    """A reserve statement repeated after a dropped connection takes no second job."""
    with database(kind, tmp_path, migrated=kind != "sqlite") as url:
        driver = DatabaseDriver(url)
        try:
            driver.push_many([envelope(n=1), envelope(n=2)])
            calls = [0]

            def take() -> object:
                return driver._db.run(
                    lambda conn: driver._take(
                        conn, queues=["default"], lease_s=30, acks=(), token="t-1", limit=1,
                        calls=calls,
                    ),
                    what="reserve",
                )  # fmt: skip

            first, again = take(), take()
            assert first and again
            assert first[0].id == again[0].id  # type: ignore[index]
            assert driver.sizes(["default"])["default"].ready == 1
        finally:
            driver.close()
