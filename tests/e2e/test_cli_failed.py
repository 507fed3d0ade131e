"""End-to-end tests of the failed-job commands: queue:failed, queue:failed:show, queue:retry,
queue:forget, queue:flush and queue:prune-failed.

Each runs in-process and as the installed executable (see ``conftest.py``) on
a SQLite database in the test's directory. Failed jobs are written through
the real store with payloads encoded from real envelopes, or produced by a
real worker in a subprocess.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from kashq.drivers.database import DatabaseDriver
from kashq.envelope import Envelope, decode, new_job_id
from kashq.failed.base import FailedJob
from kashq.failed.database import DatabaseFailedJobStore
from tests.e2e.conftest import Cli, assert_one_line_error, stderr_lines
from tests.support.blackhole import BlackHole

TRACEBACK = 'Traceback (most recent call last):\n  File "app/jobs.py", line 9, in handle\n'


@pytest.fixture
def driver(db_url: str) -> Iterator[DatabaseDriver]:
    queue = DatabaseDriver(db_url)
    yield queue
    queue.close()


def record(
    store: DatabaseFailedJobStore,
    *,
    queue: str = "default",
    job_type: str = "app.jobs.ChargeCard",
    error: str = "ValueError: card declined",
    hours_ago: float = 0.0,
    connection: str = "database",
    payload: str | None = None,
) -> FailedJob:
    """Log a failed job whose payload is a real envelope (or ``payload`` as given)."""
    now = time.time()
    envelope = Envelope(
        id=new_job_id(),
        type=job_type,
        queue=queue,
        payload={"amount": 12},
        created_at=now - 60,
        available_at=now - 60,
        attempts=3,
    )
    return store.log(
        FailedJob(
            uuid=envelope.id,
            connection=connection,
            queue=queue,
            job_type=job_type,
            payload=envelope.encode() if payload is None else payload,
            error=error,
            exception=TRACEBACK + error + "\n",
            attempts=3,
            failed_at=datetime.now(timezone.utc) - timedelta(hours=hours_ago),
            reason="tries_exhausted",
        )
    )


def queued(driver: DatabaseDriver, queue: str = "default") -> list[Envelope]:
    """Every job of ``queue`` (reserved here, so call it once, at the end)."""
    found = []
    while (res := driver.reserve([queue], lease_s=60)) is not None:
        found.append(decode(res.raw))
    return found


def table_rows(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("│")]


# --------------------------------------------------------------------------- queue:failed


def test_failed_lists_newest_first_in_a_table(
    kashq_cli: Cli, store: DatabaseFailedJobStore
) -> None:
    old = record(store, queue="emails", job_type="app.jobs.SendMail", hours_ago=2)
    new = record(store, error="ValueError: card declined\nsecond line of the message")
    middle = record(store, job_type="app.jobs.Refund", hours_ago=1)

    run = kashq_cli(["queue:failed"])

    assert run.exit_code == 0, run.output
    rows = table_rows(run.stdout)
    assert len(rows) == 3, run.stdout
    for row, job in zip(rows, [new, middle, old], strict=True):
        cells = [cell.strip() for cell in row.strip("│").split("│")]
        assert cells[:3] == [str(job.id), job.queue, job.job_type]
        assert cells[3].startswith("ValueError: card")
        assert cells[4:6] == ["3", "tries_exhausted"]
        assert cells[6] == job.failed_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    for header in ("id", "queue", "job", "error", "attempts", "failed at"):
        assert header in run.stdout
    assert "second line" not in run.stdout
    assert run.stderr == ""


def test_failed_table_truncates_a_long_error_but_keeps_ids_whole(
    kashq_cli: Cli, store: DatabaseFailedJobStore
) -> None:
    job = record(store, error="RuntimeError: " + "x" * 300)

    run = kashq_cli(["queue:failed"])

    assert run.exit_code == 0, run.output
    (row,) = table_rows(run.stdout)
    cells = [cell.strip() for cell in row.strip("│").split("│")]
    assert cells[0] == str(job.id)
    assert cells[2] == "app.jobs.ChargeCard"
    assert cells[3].endswith("…")
    assert len(cells[3]) < 100


def test_failed_json_has_the_contract_fields_newest_first(
    kashq_cli: Cli, store: DatabaseFailedJobStore
) -> None:
    old = record(store, queue="emails", hours_ago=5)
    new = record(store, error="KeyError: 'x'")

    run = kashq_cli(["queue:failed", "--json"])

    assert run.exit_code == 0, run.output
    data = json.loads(run.stdout)
    assert [item["id"] for item in data] == [new.id, old.id]
    first = data[0]
    assert first["uuid"] == new.uuid
    assert first["connection"] == "database"
    assert first["queue"] == "default"
    assert first["job_type"] == "app.jobs.ChargeCard"
    assert first["error"] == "KeyError: 'x'"
    assert first["attempts"] == 3
    failed_at = datetime.fromisoformat(first["failed_at"])
    assert failed_at.utcoffset() == timedelta(0)
    assert failed_at == new.failed_at
    assert data[1]["queue"] == "emails"


def test_failed_filters_by_queue_and_limits(kashq_cli: Cli, store: DatabaseFailedJobStore) -> None:
    emails = [record(store, queue="emails", hours_ago=h) for h in (3, 2, 1)]
    record(store, queue="default")

    by_queue = json.loads(kashq_cli(["queue:failed", "--queue", "emails", "--json"]).stdout)
    limited = json.loads(
        kashq_cli(["queue:failed", "-q", "emails", "--limit", "2", "--json"]).stdout
    )
    table = kashq_cli(["queue:failed", "--limit", "1"])

    assert [item["id"] for item in by_queue] == [job.id for job in reversed(emails)]
    assert [item["id"] for item in limited] == [emails[2].id, emails[1].id]
    assert len(table_rows(table.stdout)) == 1
    assert "default" in table_rows(table.stdout)[0]


def test_failed_without_failed_jobs_says_so(kashq_cli: Cli, store: DatabaseFailedJobStore) -> None:
    assert store.count() == 0  # the database exists, empty

    run = kashq_cli(["queue:failed"])
    as_json = kashq_cli(["queue:failed", "--json"])

    assert run.exit_code == 0, run.output
    assert run.stdout.strip() == "No failed jobs."
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == []


def test_failed_with_limit_zero_is_a_usage_error(kashq_cli: Cli, db_url: str) -> None:
    run = kashq_cli(["queue:failed", "--limit", "0"])

    assert run.exit_code == 2
    assert "Traceback" not in run.output


# --------------------------------------------------------------------------- show


@pytest.mark.parametrize("command", [["queue:failed:show"], ["queue:failed"]])
def test_show_prints_fields_payload_and_traceback(
    kashq_cli: Cli, store: DatabaseFailedJobStore, command: list[str]
) -> None:
    job = record(store, error="ValueError: card declined")

    run = kashq_cli([*command, str(job.id)])

    assert run.exit_code == 0, run.output
    assert job.uuid in run.stdout
    assert "app.jobs.ChargeCard" in run.stdout
    assert '"amount": 12' in run.stdout  # pretty-printed payload
    assert 'File "app/jobs.py", line 9, in handle' in run.stdout  # the full traceback
    assert job.failed_at.astimezone().strftime("%Y-%m-%d %H:%M:%S") in run.stdout


def test_show_finds_a_job_by_uuid_and_prints_raw_payload_text(
    kashq_cli: Cli, store: DatabaseFailedJobStore
) -> None:
    job = record(store, payload="\x00garbage{not json", job_type="(undecodable)")

    run = kashq_cli(["queue:failed:show", job.uuid])

    assert run.exit_code == 0, run.output
    assert "garbage{not json" in run.stdout
    assert f"{job.id}" in run.stdout


def test_show_json_has_payload_and_exception(kashq_cli: Cli, store: DatabaseFailedJobStore) -> None:
    job = record(store)

    run = kashq_cli(["queue:failed:show", job.uuid, "--json"])

    assert run.exit_code == 0, run.output
    data = json.loads(run.stdout)
    assert data["id"] == job.id
    assert data["payload"]["payload"] == {"amount": 12}
    assert data["exception"].startswith("Traceback")


@pytest.mark.parametrize("command", [["queue:failed:show"], ["queue:failed"], ["queue:forget"]])
def test_unknown_id_is_one_line_and_exit_1(
    kashq_cli: Cli, store: DatabaseFailedJobStore, command: list[str]
) -> None:
    record(store)

    run = kashq_cli([*command, "999"])

    assert run.exit_code == 1
    assert "999" in assert_one_line_error(run)


@pytest.mark.parametrize(
    "command",
    [["queue:failed"], ["queue:failed:show"], ["queue:forget"], ["queue:retry"]],
)
def test_an_id_beyond_the_column_is_no_failed_job_in_one_line(
    kashq_cli: Cli, store: DatabaseFailedJobStore, command: list[str]
) -> None:
    # SQLite raised OverflowError (a traceback) for each of these.
    kept = record(store)
    huge = "99999999999999999999999"

    run = kashq_cli([*command, huge])

    assert run.exit_code == 1
    assert f"no failed job with id or uuid '{huge}'" in assert_one_line_error(run)
    assert store.find(kept.id) == kept


# --------------------------------------------------------------------------- retry


def test_retry_all_pushes_every_job_back_with_same_id_and_no_attempts(
    kashq_cli: Cli, store: DatabaseFailedJobStore, driver: DatabaseDriver
) -> None:
    first = record(store, hours_ago=2)
    second = record(store, job_type="app.jobs.Refund", hours_ago=1)
    before = time.time()

    run = kashq_cli(["queue:retry", "all"])

    assert run.exit_code == 0, run.output
    assert f"Retried #{first.id} app.jobs.ChargeCard ({first.uuid}) on 'default'" in run.stdout
    assert f"Retried #{second.id} app.jobs.Refund ({second.uuid}) on 'default'" in run.stdout
    assert run.stdout.index(f"#{first.id} ") < run.stdout.index(f"#{second.id} ")  # oldest first
    assert store.count() == 0
    jobs = queued(driver)
    assert [job.id for job in jobs] == [first.uuid, second.uuid]
    for job in jobs:
        assert job.attempts == 0
        assert job.failure is None
        assert job.available_at >= before - 1
        assert job.payload == {"amount": 12}


def test_retry_all_with_queue_retries_only_that_queue(
    kashq_cli: Cli, store: DatabaseFailedJobStore, driver: DatabaseDriver
) -> None:
    email = record(store, queue="emails")
    other = record(store, queue="default")

    run = kashq_cli(["queue:retry", "all", "--queue", "emails"])
    alone = kashq_cli(["queue:retry", "--queue", "nothing-here"])

    assert run.exit_code == 0, run.output
    assert [job.id for job in queued(driver, "emails")] == [email.uuid]
    assert [job.uuid for job in store.all()] == [other.uuid]
    assert alone.exit_code == 0, alone.output
    assert "No failed jobs to retry." in alone.stdout


def test_retry_ids_reports_an_unknown_id_and_retries_the_others(
    kashq_cli: Cli, store: DatabaseFailedJobStore, driver: DatabaseDriver
) -> None:
    jobs = [record(store) for _ in range(3)]

    run = kashq_cli(["queue:retry", str(jobs[0].id), "424242", jobs[2].uuid])

    assert run.exit_code == 1
    assert "424242" in assert_one_line_error(run)
    assert f"Retried #{jobs[0].id} " in run.stdout
    assert f"Retried #{jobs[2].id} " in run.stdout
    assert [job.uuid for job in store.all()] == [jobs[1].uuid]
    assert sorted(job.id for job in queued(driver)) == sorted([jobs[0].uuid, jobs[2].uuid])


def test_retry_range_adds_ids_inclusive(
    kashq_cli: Cli, store: DatabaseFailedJobStore, driver: DatabaseDriver
) -> None:
    jobs = [record(store) for _ in range(4)]

    run = kashq_cli(["queue:retry", "--range", f"{jobs[0].id}-{jobs[2].id}"])

    assert run.exit_code == 0, run.output
    assert [job.uuid for job in store.all()] == [jobs[3].uuid]
    assert len(queued(driver)) == 3


def test_retry_range_skips_ids_that_are_not_there_and_says_how_many_it_retried(
    kashq_cli: Cli, store: DatabaseFailedJobStore, driver: DatabaseDriver
) -> None:
    # Each id used to be looked up alone: 998 error lines for --range 1-1000.
    jobs = [record(store) for _ in range(3)]

    run = kashq_cli(["queue:retry", "--range", "1-1000"])
    empty = kashq_cli(["queue:retry", "--range", "2000-3000"])

    assert run.exit_code == 0, run.output
    assert run.stderr == ""
    assert "Retried 3 failed jobs in range 1-1000." in run.stdout
    assert sorted(job.id for job in queued(driver)) == sorted(job.uuid for job in jobs)
    assert empty.exit_code == 0, empty.output
    assert empty.stdout.strip() == "No failed jobs in range 2000-3000."


def test_retry_of_a_huge_range_is_one_query_not_one_per_id(
    kashq_cli: Cli, store: DatabaseFailedJobStore, driver: DatabaseDriver
) -> None:
    # --range 1-100000000 used to run for more than ten minutes.
    job = record(store, queue="emails")
    record(store, queue="default")

    run = kashq_cli(["queue:retry", "--range", "1-99999999999999999999", "--queue", "emails"])

    assert run.exit_code == 0, run.output
    assert "Retried 1 failed job of queue 'emails' in range 1-99999999999999999999." in run.stdout
    assert [envelope.id for envelope in queued(driver, "emails")] == [job.uuid]
    assert store.count() == 1


@pytest.mark.parametrize("kashq_cli", ["in-process"], indirect=True)  # patches the chunk size
def test_retry_range_reads_the_range_a_chunk_at_a_time(
    kashq_cli: Cli,
    store: DatabaseFailedJobStore,
    driver: DatabaseDriver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kashq.cli import failed

    monkeypatch.setattr(failed, "RANGE_CHUNK", 2)
    jobs = [record(store) for _ in range(5)]

    run = kashq_cli(["queue:retry", "--range", f"{jobs[0].id}-{jobs[-1].id + 10}"])

    assert run.exit_code == 0, run.output
    assert "Retried 5 failed jobs in range" in run.stdout
    assert store.count() == 0
    assert len(queued(driver)) == 5


@pytest.mark.parametrize("bad", ["1-", "a-b", "5-1", "1..3"])
def test_retry_bad_range_is_one_line_and_changes_nothing(
    kashq_cli: Cli, store: DatabaseFailedJobStore, bad: str
) -> None:
    record(store)

    run = kashq_cli(["queue:retry", "--range", bad])

    assert run.exit_code == 2
    assert "--range" in assert_one_line_error(run)
    assert store.count() == 1


@pytest.mark.parametrize("args", [[], ["all", "1"]])
def test_retry_without_a_clear_selection_is_a_usage_error(
    kashq_cli: Cli, store: DatabaseFailedJobStore, args: list[str]
) -> None:
    record(store)

    run = kashq_cli(["queue:retry", *args])

    assert run.exit_code == 2
    assert_one_line_error(run)
    assert store.count() == 1


def test_retry_reports_an_undecodable_payload_and_keeps_the_record(
    kashq_cli: Cli, store: DatabaseFailedJobStore, driver: DatabaseDriver
) -> None:
    garbage = record(store, payload="{not json", hours_ago=1)
    good = record(store)

    run = kashq_cli(["queue:retry", "all"])

    assert run.exit_code == 1
    assert f"#{garbage.id}" in assert_one_line_error(run)
    assert f"Retried #{good.id} " in run.stdout
    assert [job.id for job in store.all()] == [garbage.id]
    assert [job.id for job in queued(driver)] == [good.uuid]


def test_retry_of_an_unknown_connection_goes_to_the_configured_one(
    kashq_cli: Cli, store: DatabaseFailedJobStore, driver: DatabaseDriver
) -> None:
    # e.g. a connection an application added in code (QueueManager.add_connection)
    job = record(store, connection="images")

    run = kashq_cli(["queue:retry", str(job.id)])

    assert run.exit_code == 0, run.output
    assert "'images'" in run.stderr and "'database'" in run.stderr
    assert [env.id for env in queued(driver)] == [job.uuid]
    assert store.count() == 0


def test_retry_of_a_per_process_connection_goes_to_the_given_durable_one(
    kashq_cli: Cli, store: DatabaseFailedJobStore, driver: DatabaseDriver
) -> None:
    # A job recorded from the memory connection cannot go back there from another process.
    job = record(store, connection="memory")
    kashq_cli.setenv("KASHQ_CONNECTION", "memory")

    run = kashq_cli(["queue:retry", "all", "--connection", "database"])

    assert run.exit_code == 0, run.output
    assert "'memory'" in run.stderr
    assert [env.id for env in queued(driver)] == [job.uuid]
    assert store.count() == 0


def test_a_job_failed_by_a_real_worker_can_be_listed_retried_and_then_succeeds(
    kashq_cli: Cli, db_url: str, tmp_path: Path
) -> None:
    (tmp_path / "flaky_jobs.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path
            from kashq import Job

            class ChargeCard(Job):
                amount: int
                tries = 1

                def handle(self) -> None:
                    if not Path("card-fixed").exists():
                        raise ValueError(f"card declined for {self.amount}")
                    Path("charged").write_text(str(self.amount))
            """
        )
    )
    work = (
        "import flaky_jobs, kashq\n"
        "from kashq.manager import QueueManager\n"
        "m = QueueManager()\n"
        "{dispatch}"
        "m.worker().drain()\n"
        "m.close()\n"
    )
    dispatched = kashq_cli.python(
        work.format(dispatch="m.dispatch(flaky_jobs.ChargeCard(amount=12))\n")
    )
    assert dispatched.returncode == 0, dispatched.stderr

    listed = json.loads(kashq_cli(["queue:failed", "--json"]).stdout)
    shown = kashq_cli(["queue:failed:show", "1"])
    retried = kashq_cli(["queue:retry", "1"])
    (tmp_path / "card-fixed").touch()
    worked = kashq_cli.python(work.format(dispatch=""))

    assert [item["job_type"] for item in listed] == ["flaky_jobs.ChargeCard"]
    assert listed[0]["error"].startswith("ValueError: card declined for 12")
    assert "raise ValueError" in shown.stdout
    assert retried.exit_code == 0, retried.output
    assert worked.returncode == 0, worked.stderr
    assert (tmp_path / "charged").read_text() == "12"
    assert json.loads(kashq_cli(["queue:failed", "--json"]).stdout) == []


# --------------------------------------------------------------------------- forget, flush, prune


def test_forget_deletes_one_failed_job(kashq_cli: Cli, store: DatabaseFailedJobStore) -> None:
    gone, kept = record(store), record(store)

    by_id = kashq_cli(["queue:forget", str(gone.id)])
    again = kashq_cli(["queue:forget", str(gone.id)])

    assert by_id.exit_code == 0, by_id.output
    assert f"#{gone.id}" in by_id.stdout
    assert [job.id for job in store.all()] == [kept.id]
    assert again.exit_code == 1
    assert_one_line_error(again)


def test_forget_by_uuid(kashq_cli: Cli, store: DatabaseFailedJobStore) -> None:
    job = record(store)

    run = kashq_cli(["queue:forget", job.uuid])

    assert run.exit_code == 0, run.output
    assert store.count() == 0


def test_flush_deletes_every_failed_job(kashq_cli: Cli, store: DatabaseFailedJobStore) -> None:
    for _ in range(3):
        record(store)

    run = kashq_cli(["queue:flush", "--force"])

    assert run.exit_code == 0, run.output
    assert "Deleted 3 failed jobs." in run.stdout
    assert store.count() == 0


@pytest.mark.parametrize("answer", ["n\n", "\n", None])
def test_flush_declined_or_without_input_deletes_nothing(
    kashq_cli: Cli, store: DatabaseFailedJobStore, answer: str | None
) -> None:
    # It deleted every failed job without asking, unlike queue:clear.
    for _ in range(2):
        record(store)

    run = kashq_cli(["queue:flush"], input=answer)

    assert run.exit_code == 1
    assert "Delete all 2 failed jobs?" in run.stderr
    assert "Not flushed." in run.stderr
    assert "Traceback" not in run.output
    assert store.count() == 2


def test_flush_confirmed_deletes(kashq_cli: Cli, store: DatabaseFailedJobStore) -> None:
    record(store)

    run = kashq_cli(["queue:flush"], input="y\n")

    assert run.exit_code == 0, run.output
    assert "Deleted 1 failed job." in run.stdout
    assert store.count() == 0


def test_flush_of_no_failed_jobs_asks_nothing(
    kashq_cli: Cli, store: DatabaseFailedJobStore
) -> None:
    assert store.count() == 0

    run = kashq_cli(["queue:flush"])

    assert run.exit_code == 0, run.output
    assert run.stdout.strip() == "No failed jobs."
    assert run.stderr == ""


def test_flush_with_hours_keeps_recent_failures(
    kashq_cli: Cli, store: DatabaseFailedJobStore
) -> None:
    record(store, hours_ago=5)
    record(store, hours_ago=3)
    recent = record(store, hours_ago=0.5)

    run = kashq_cli(["queue:flush", "--hours", "2"], input="y\n")

    assert run.exit_code == 0, run.output
    assert "Delete the failed jobs older than 2 hours (3 failed jobs in all)?" in run.stderr
    assert "Deleted 2 failed jobs older than 2 hours." in run.stdout
    assert [job.id for job in store.all()] == [recent.id]


def test_prune_failed_defaults_to_24_hours(kashq_cli: Cli, store: DatabaseFailedJobStore) -> None:
    record(store, hours_ago=30)
    recent = record(store, hours_ago=23)

    run = kashq_cli(["queue:prune-failed"])

    assert run.exit_code == 0, run.output
    assert "Pruned 1 failed job older than 24 hours." in run.stdout
    assert [job.id for job in store.all()] == [recent.id]


def test_prune_failed_with_hours(kashq_cli: Cli, store: DatabaseFailedJobStore) -> None:
    record(store, hours_ago=2)
    record(store, hours_ago=0)

    run = kashq_cli(["queue:prune-failed", "--hours", "1.5"])

    assert run.exit_code == 0, run.output
    assert "Pruned 1 failed job older than 1.5 hours." in run.stdout
    assert store.count() == 1


# --------------------------------------------------------------------------- errors and help

FAILED_COMMANDS = [
    ["queue:failed"],
    ["queue:failed", "--json"],
    ["queue:failed:show", "1"],
    ["queue:retry", "all"],
    ["queue:forget", "1"],
    ["queue:flush"],
    ["queue:prune-failed"],
]


@pytest.mark.parametrize("args", FAILED_COMMANDS, ids=" ".join)
def test_unreachable_database_is_one_line_without_password(kashq_cli: Cli, args: list[str]) -> None:
    kashq_cli.setenv("KASHQ_DATABASE_URL", "postgresql+psycopg://kashq:s3cr3t-pw@127.0.0.1:1/kashq")
    started = time.monotonic()

    run = kashq_cli(args)

    line = assert_one_line_error(run, hidden="s3cr3t-pw")
    assert run.exit_code == 1
    assert "127.0.0.1" in line
    assert time.monotonic() - started < 20


NO_DATABASE = "no kashq database at sqlite:///kashq.sqlite: "


@pytest.mark.parametrize(
    "args", [*FAILED_COMMANDS, ["queue:flush", "--force"], ["queue:retry", "--range", "1-5"]],
    ids=" ".join,
)  # fmt: skip
def test_failed_commands_in_a_fresh_directory_say_so_and_create_no_database(
    kashq_cli: Cli, args: list[str]
) -> None:
    # Each created an empty kashq.sqlite (the default URL is relative) and
    # answered as if the queue were empty: a wrong directory went unnoticed.
    run = kashq_cli(args)

    assert run.exit_code == 1
    line = assert_one_line_error(run)
    assert NO_DATABASE in line and "`kashq migrate` creates it" in line
    assert list(kashq_cli.cwd.iterdir()) == []


def test_failed_jobs_of_redis_in_a_fresh_directory_are_none_and_create_no_database(
    kashq_cli: Cli,
) -> None:
    # Redis keeps its queue elsewhere; failed_jobs appears with the first failure.
    kashq_cli.setenv("KASHQ_REDIS_URL", "redis://127.0.0.1:1/0")  # never contacted

    listed = kashq_cli(["queue:failed", "--connection", "redis"])
    forgot = kashq_cli(["queue:forget", "3", "--connection", "redis"])

    assert listed.exit_code == 0, listed.output
    assert listed.stdout.strip() == "No failed jobs."
    assert "no failed job with id or uuid '3'" in assert_one_line_error(forgot)
    assert list(kashq_cli.cwd.iterdir()) == []


@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "mysql+pymysql"])
def test_a_black_holed_database_is_one_line_after_the_connect_timeout(
    kashq_cli: Cli, scheme: str
) -> None:
    # The command hung: the server takes the connection and never answers.
    with BlackHole() as port:
        kashq_cli.setenv("KASHQ_DATABASE_URL", f"{scheme}://kashq:s3cr3t-pw@127.0.0.1:{port}/app")
        started = time.monotonic()

        run = kashq_cli(["queue:failed"])

    line = assert_one_line_error(run, hidden="s3cr3t-pw")
    assert f"127.0.0.1:{port}" in line
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KASHQ_DATABASE_URL", "not-a-url"),
        ("KASHQ_DATABASE_URL", "postgresql://kashq:s3cr3t-pw@127.0.0.1:notaport/kashq"),
        ("KASHQ_DATABASE_URL", "nosuchdb://kashq:s3cr3t-pw@127.0.0.1/kashq"),
        ("KASHQ_CONNECTION", "nope"),
    ],
)
def test_bad_settings_are_one_line_without_password(kashq_cli: Cli, name: str, value: str) -> None:
    kashq_cli.setenv(name, value)

    run = kashq_cli(["queue:failed"])

    assert_one_line_error(run, hidden="s3cr3t-pw")


def test_unknown_connection_option_is_one_line(kashq_cli: Cli, db_url: str) -> None:
    run = kashq_cli(["queue:retry", "all", "--connection", "nope"])

    assert "connection" in assert_one_line_error(run)


def test_failed_commands_work_when_the_queue_connection_is_redis(
    kashq_cli: Cli, store: DatabaseFailedJobStore
) -> None:
    # The failed_jobs table stays in the database; Redis is not even contacted to list it.
    kashq_cli.setenv("KASHQ_CONNECTION", "redis")
    kashq_cli.setenv("KASHQ_REDIS_URL", "redis://127.0.0.1:1/0")
    job = record(store)

    run = kashq_cli(["queue:failed", "--json"])

    assert run.exit_code == 0, run.output
    assert [item["id"] for item in json.loads(run.stdout)] == [job.id]


@pytest.mark.parametrize(
    "command",
    [
        "queue:failed",
        "queue:failed:show",
        "queue:retry",
        "queue:forget",
        "queue:flush",
        "queue:prune-failed",
    ],
)
def test_failed_commands_have_help(kashq_cli: Cli, command: str) -> None:
    run = kashq_cli([command, "--help"])

    assert run.exit_code == 0, run.output
    assert "Usage" in run.stdout
    assert "--connection" in run.stdout
    assert stderr_lines(run) == []
