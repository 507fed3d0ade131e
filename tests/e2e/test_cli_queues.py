"""End-to-end tests of queue:size, queue:clear, queue:monitor and queue:restart.

Each runs in-process and as the installed executable (see ``conftest.py``),
on the SQLite default and on the machine's Redis (database 15, a fresh key
prefix per test, removed afterwards). Jobs are put in place through the real
driver; failed jobs through the real store.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from kashq.cli.queues import Throughput
from kashq.db import migrate
from kashq.drivers.base import Driver
from kashq.drivers.database import DatabaseDriver
from kashq.drivers.redis import RedisDriver
from kashq.envelope import UNIQUE_KEY, UNIQUE_TOKEN, Envelope, new_job_id
from kashq.failed.base import FailedJob
from kashq.failed.database import DatabaseFailedJobStore
from kashq.locks import backend_for
from tests.e2e.conftest import Cli, assert_one_line_error, stderr_lines
from tests.e2e.test_cli import _kashq_executable
from tests.support.redis import delete_prefix, shared_client
from tests.support.services import REDIS_URL

ZERO = {"ready": 0, "delayed": 0, "reserved": 0, "failed": 0, "paused": False}


@pytest.fixture(params=["database", "redis"])
def driver(request: pytest.FixtureRequest, kashq_cli: Cli, db_url: str) -> Iterator[Driver]:
    """The driver of the configured connection: SQLite, or Redis under a fresh prefix."""
    if request.param == "database":
        database = DatabaseDriver(db_url)
        database.sizes(["default"])  # creates the database the commands read
        yield database
        database.close()
        return
    client = shared_client(REDIS_URL)
    prefix = f"kashq-test-{uuid.uuid4().hex[:10]}"
    for name, value in [("CONNECTION", "redis"), ("REDIS_URL", REDIS_URL), ("PREFIX", prefix)]:
        kashq_cli.setenv(f"KASHQ_{name}", value)
    redis_driver = RedisDriver(REDIS_URL, prefix=prefix)
    try:
        yield redis_driver
    finally:
        delete_prefix(client, prefix)
        redis_driver.close()
        client.close()


def push(driver: Driver, queue: str = "default", *, delay_s: float = 0.0) -> Envelope:
    now = time.time()
    envelope = Envelope(
        id=new_job_id(),
        type="app.jobs.ChargeCard",
        queue=queue,
        payload={"amount": 1},
        created_at=now,
        available_at=now + delay_s,
    )
    driver.push(envelope)
    return envelope


def fail(store: DatabaseFailedJobStore, queue: str) -> FailedJob:
    job_id = new_job_id()
    return store.log(
        FailedJob(
            uuid=job_id,
            connection="database",
            queue=queue,
            job_type="app.jobs.ChargeCard",
            payload="{}",
            error="ValueError: no",
            exception="Traceback ...",
            attempts=3,
            failed_at=datetime.now(timezone.utc),
        )
    )


def fill(driver: Driver, store: DatabaseFailedJobStore) -> None:
    """default: 2 ready, 1 delayed, 1 failed; emails: 1 ready, 1 reserved; reports: 1 failed."""
    push(driver)
    push(driver)
    push(driver, delay_s=3600)
    push(driver, "emails")
    assert driver.reserve(["emails"], lease_s=3600) is not None
    push(driver, "emails")
    fail(store, "default")
    fail(store, "reports")


FILLED = {
    "default": {"ready": 2, "delayed": 1, "reserved": 0, "failed": 1, "paused": False},
    "emails": {"ready": 1, "delayed": 0, "reserved": 1, "failed": 0, "paused": False},
    "reports": {"ready": 0, "delayed": 0, "reserved": 0, "failed": 1, "paused": False},
}


def table_cells(stdout: str) -> dict[str, list[str]]:
    """Rows of a table by their first cell."""
    rows = {}
    for line in stdout.splitlines():
        if line.startswith(("│", "┃")):
            cells = [cell.strip() for cell in line.replace("┃", "│").strip("│").split("│")]
            rows[cells[0]] = cells[1:]
    return rows


def supervisor_record(processed: int, *, workers: int = 4, at: float | None = None) -> str:
    return json.dumps(
        {
            "host": "web-1",
            "pid": 4321,
            "connection": "database",
            "queues": ["default"],
            "workers": workers,
            "processed": processed,
            "failed": 0,
            "at": time.time() if at is None else at,
        }
    )


# --------------------------------------------------------------------------- queue:size


def test_size_json_counts_every_state_of_every_known_queue(
    kashq_cli: Cli, driver: Driver, store: DatabaseFailedJobStore
) -> None:
    fill(driver, store)

    run = kashq_cli(["queue:size", "--json"])

    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout) == FILLED
    assert run.stderr == ""


def test_size_table_shows_the_same_figures(
    kashq_cli: Cli, driver: Driver, store: DatabaseFailedJobStore
) -> None:
    fill(driver, store)

    run = kashq_cli(["queue:size"])

    assert run.exit_code == 0, run.output
    rows = table_cells(run.stdout)
    assert rows["queue"] == ["ready", "delayed", "reserved", "failed"]
    for queue, figures in FILLED.items():
        assert rows[queue] == [str(figures[k]) for k in ("ready", "delayed", "reserved", "failed")]


def test_size_of_given_queues_only(
    kashq_cli: Cli, driver: Driver, store: DatabaseFailedJobStore
) -> None:
    fill(driver, store)

    run = kashq_cli(["queue:size", "--queue", "emails, nowhere", "--json"])

    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout) == {"emails": FILLED["emails"], "nowhere": ZERO}


def test_size_of_an_empty_setup_lists_the_default_queue(kashq_cli: Cli, db_url: str) -> None:
    migrate.upgrade(db_url)
    kashq_cli.setenv("KASHQ_QUEUE", "main")

    run = kashq_cli(["queue:size", "--json"])

    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout) == {"main": ZERO}


def test_size_connection_argument_beats_the_setting(kashq_cli: Cli, db_url: str) -> None:
    kashq_cli.setenv("KASHQ_CONNECTION", "redis")
    kashq_cli.setenv("KASHQ_REDIS_URL", "redis://127.0.0.1:1/0")  # never contacted
    migrate.upgrade(db_url)

    run = kashq_cli(["queue:size", "database", "--json"])

    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout) == {"default": ZERO}


@pytest.mark.parametrize(
    "args",
    [["queue:size"], ["queue:size", "--json"], ["queue:monitor", "--once"],
     ["queue:clear", "--force"], ["queue:restart"]],
    ids=" ".join,
)  # fmt: skip
def test_queue_commands_in_a_fresh_directory_say_so_and_create_no_database(
    kashq_cli: Cli, args: list[str]
) -> None:
    # Each created an empty kashq.sqlite (the default URL is relative) and
    # reported empty queues: running from the wrong directory went unnoticed.
    run = kashq_cli(args)

    assert run.exit_code == 1
    line = assert_one_line_error(run)
    assert "no kashq database at sqlite:///kashq.sqlite: " in line
    assert str(kashq_cli.cwd / "kashq.sqlite") in line
    assert list(kashq_cli.cwd.iterdir()) == []


def test_a_dispatch_creates_the_database_the_queue_commands_then_read(kashq_cli: Cli) -> None:
    dispatched = kashq_cli.python("import kashq\nkashq.dispatch('tick', {'n': 1})\n")
    assert dispatched.returncode == 0, dispatched.stderr

    run = kashq_cli(["queue:size", "--json"])

    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout) == {"default": {**ZERO, "ready": 1}}


def test_size_of_redis_in_a_fresh_directory_creates_no_database(
    kashq_cli: Cli, driver: Driver
) -> None:
    if not isinstance(driver, RedisDriver):
        pytest.skip("the redis connection only")
    kashq_cli.setenv("KASHQ_DATABASE_URL", "sqlite:///kashq.sqlite")  # the default, relative
    push(driver)

    run = kashq_cli(["queue:size", "--json"])

    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout) == {"default": {**ZERO, "ready": 1}}
    assert not (kashq_cli.cwd / "kashq.sqlite").exists()


# --------------------------------------------------------------------------- queue:clear


def test_clear_with_force_empties_one_queue(
    kashq_cli: Cli, driver: Driver, store: DatabaseFailedJobStore
) -> None:
    fill(driver, store)

    run = kashq_cli(["queue:clear", "--force"])

    assert run.exit_code == 0, run.output
    assert "Cleared 3 jobs from queue 'default'" in run.stdout
    after = driver.sizes(["default", "emails"])
    assert after["default"].total == 0
    assert after["emails"].total == 2
    assert store.count(queue="default") == 1  # failed jobs stay


def test_clear_given_queue_including_reserved_jobs(
    kashq_cli: Cli, driver: Driver, store: DatabaseFailedJobStore
) -> None:
    fill(driver, store)

    run = kashq_cli(["queue:clear", "--queue", "emails", "-f"])

    assert run.exit_code == 0, run.output
    assert "Cleared 2 jobs from queue 'emails'" in run.stdout
    assert driver.sizes(["emails"])["emails"].total == 0
    assert driver.sizes(["default"])["default"].total == 3


def test_clear_frees_the_unique_claims_of_the_jobs_it_removed(
    kashq_cli: Cli, driver: Driver
) -> None:
    locks = backend_for(driver)
    claim = locks.try_acquire("unique:app.jobs.Rebuild:7", 3600)
    assert claim is not None
    metadata = {UNIQUE_KEY: claim.key, UNIQUE_TOKEN: claim.token}
    driver.push(dataclasses.replace(push(driver), id=new_job_id(), metadata=metadata))

    run = kashq_cli(["queue:clear", "--force"])

    assert run.exit_code == 0, run.output
    assert locks.try_acquire("unique:app.jobs.Rebuild:7", 3600) is not None


@pytest.mark.parametrize("answer", ["n\n", "\n", None])
def test_clear_declined_or_without_input_clears_nothing(
    kashq_cli: Cli, driver: Driver, answer: str | None
) -> None:
    push(driver)

    run = kashq_cli(["queue:clear"], input=answer)

    assert run.exit_code == 1
    assert "Not cleared." in run.stderr
    assert "Traceback" not in run.output
    assert driver.sizes(["default"])["default"].ready == 1


def test_clear_confirmed_clears(kashq_cli: Cli, driver: Driver) -> None:
    push(driver)

    run = kashq_cli(["queue:clear"], input="y\n")

    assert run.exit_code == 0, run.output
    assert "Cleared 1 job from queue 'default'" in run.stdout
    assert driver.sizes(["default"])["default"].ready == 0


# --------------------------------------------------------------------------- queue:monitor


def test_monitor_once_prints_the_sizes_and_exits_0(
    kashq_cli: Cli, driver: Driver, store: DatabaseFailedJobStore
) -> None:
    fill(driver, store)
    driver.put_control("supervisor:web-1:4321", supervisor_record(10), ttl_s=60)

    run = kashq_cli(["queue:monitor", "--once"])

    assert run.exit_code == 0, run.output
    rows = table_cells(run.stdout)
    assert rows["queue"][-2:] == ["oldest wait", "status"]
    assert rows["default"][:4] + rows["default"][-1:] == ["2", "1", "0", "1", "OK"]
    assert rows["emails"][:4] + rows["emails"][-1:] == ["1", "0", "1", "0", "OK"]
    assert rows["reports"][-2:] == ["-", "OK"], "no ready job: no wait"
    assert "supervisors: 1" in run.stdout
    assert "worker processes: 4" in run.stdout
    assert "jobs/s: —" in run.stdout


def test_monitor_once_over_max_alerts_and_exits_1(
    kashq_cli: Cli, driver: Driver, store: DatabaseFailedJobStore
) -> None:
    fill(driver, store)

    run = kashq_cli(["queue:monitor", "--once", "--max", "2"])

    assert run.exit_code == 1, run.output
    rows = table_cells(run.stdout)
    assert rows["default"][-1] == "ALERT"  # 2 ready + 1 delayed > 2
    assert rows["emails"][-1] == "OK"  # reserved jobs do not count
    assert "Traceback" not in run.output


def test_monitor_once_json_has_sizes_and_alerts(
    kashq_cli: Cli, driver: Driver, store: DatabaseFailedJobStore
) -> None:
    fill(driver, store)

    over = kashq_cli(["queue:monitor", "--once", "--json", "--max", "0"])
    under = kashq_cli(["queue:monitor", "--once", "--json", "--max", "3", "-q", "default"])

    assert over.exit_code == 1, over.output
    data = json.loads(over.stdout)
    waits = {name: figures.pop("oldest_wait_s") for name, figures in data["queues"].items()}
    assert data["queues"] == FILLED
    assert waits["reports"] is None, "no ready job: nothing waits"
    assert 0 <= waits["default"] < 60 and 0 <= waits["emails"] < 60
    assert data["alerts"] == ["default", "emails"]
    assert data["supervisors"] == 0
    assert under.exit_code == 0, under.output
    queues = json.loads(under.stdout)["queues"]
    queues["default"].pop("oldest_wait_s")
    assert queues == {"default": FILLED["default"]}
    assert json.loads(under.stdout)["alerts"] == []


def test_monitor_once_alerts_on_a_queue_whose_oldest_job_waited_too_long(
    kashq_cli: Cli, driver: Driver, store: DatabaseFailedJobStore
) -> None:
    fill(driver, store)

    patient = kashq_cli(["queue:monitor", "--once", "--max-wait", "3600"])
    hurried = kashq_cli(["queue:monitor", "--once", "--json", "--max-wait", "0"])

    assert patient.exit_code == 0, patient.output
    assert "oldest wait" in patient.stdout
    assert hurried.exit_code == 1, hurried.output
    assert json.loads(hurried.stdout)["alerts"] == ["default", "emails"]


def test_monitor_json_without_once_is_a_usage_error(kashq_cli: Cli, db_url: str) -> None:
    run = kashq_cli(["queue:monitor", "--json"])

    assert run.exit_code == 2
    assert_one_line_error(run)


@pytest.mark.parametrize("kashq_cli", ["executable"], indirect=True)  # Ctrl-C needs a process
def test_monitor_live_stops_cleanly_on_ctrl_c(tmp_path: Path, kashq_cli: Cli, db_url: str) -> None:
    migrate.upgrade(db_url)
    proc = subprocess.Popen(
        [str(_kashq_executable()), "queue:monitor", "--interval", "0.2"],
        cwd=tmp_path,
        env=kashq_cli.subprocess_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)  # imported, and refreshing
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, stdout + stderr
    assert "Traceback" not in stdout + stderr
    assert "default" in stdout
    assert "jobs/s" in stdout


def test_throughput_is_the_rise_of_processed_jobs_per_second() -> None:
    throughput = Throughput()
    now = time.time()
    records = {
        "supervisor:a": supervisor_record(100, workers=2, at=now),
        "supervisor:b": json.dumps({**json.loads(supervisor_record(5)), "pid": 1, "at": now}),
        "supervisor:stale": json.dumps({**json.loads(supervisor_record(0)), "at": now - 3600}),
        "supervisor:garbage": "{not json",
    }

    throughput.update(records, now)
    first = throughput.summary()
    records["supervisor:a"] = supervisor_record(130, workers=2, at=now + 2)
    records["supervisor:b"] = json.dumps({**json.loads(supervisor_record(15)), "pid": 1})
    throughput.update(records, now + 2)

    assert "jobs/s: —" in first
    assert throughput.supervisors == 2
    assert throughput.workers == 6
    assert throughput.rate == pytest.approx(20.0)  # (30 + 10) jobs in 2 s
    assert "jobs/s: 20.0" in throughput.summary()


# --------------------------------------------------------------------------- queue:restart


def test_restart_writes_the_restart_control_record(kashq_cli: Cli, driver: Driver) -> None:
    before = time.time()

    run = kashq_cli(["queue:restart"])

    assert run.exit_code == 0, run.output
    assert "Broadcast queue restart signal" in run.stdout
    records = driver.get_control("restart")
    assert set(records) == {"restart"}
    assert before - 1 <= float(records["restart"]) <= time.time() + 1


# --------------------------------------------------------------------------- errors and help

QUEUE_COMMANDS = [
    ["queue:size"],
    ["queue:size", "--json"],
    ["queue:clear", "--force"],
    ["queue:monitor", "--once"],
    ["queue:restart"],
]


@pytest.mark.parametrize("args", QUEUE_COMMANDS, ids=" ".join)
def test_unreachable_redis_is_one_line_and_fast(
    kashq_cli: Cli, db_url: str, args: list[str]
) -> None:
    kashq_cli.setenv("KASHQ_CONNECTION", "redis")
    kashq_cli.setenv("KASHQ_REDIS_URL", "redis://:s3cr3t-pw@127.0.0.1:1/0")
    started = time.monotonic()

    run = kashq_cli(args)

    assert run.exit_code == 1
    assert "127.0.0.1" in assert_one_line_error(run, hidden="s3cr3t-pw")
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("args", QUEUE_COMMANDS, ids=" ".join)
def test_unreachable_database_is_one_line(kashq_cli: Cli, args: list[str]) -> None:
    kashq_cli.setenv("KASHQ_DATABASE_URL", "postgresql+psycopg://kashq:s3cr3t-pw@127.0.0.1:1/kq")

    run = kashq_cli(args)

    assert run.exit_code == 1
    assert_one_line_error(run, hidden="s3cr3t-pw")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KASHQ_REDIS_URL", "http://kashq:s3cr3t-pw@127.0.0.1/0"),
        ("KASHQ_DATABASE_URL", "kashq:s3cr3t-pw@127.0.0.1/kq"),
        ("KASHQ_REDIS_URL", "redis://kashq:s3cr3t-pw@127.0.0.1:notaport/0"),
        ("KASHQ_PREFIX", "has space"),
    ],
)
def test_bad_redis_settings_are_one_line(
    kashq_cli: Cli, db_url: str, name: str, value: str
) -> None:
    kashq_cli.setenv("KASHQ_CONNECTION", "redis")
    kashq_cli.setenv(name, value)

    run = kashq_cli(["queue:size"])

    assert run.exit_code == 1
    assert_one_line_error(run, hidden="s3cr3t-pw")


@pytest.mark.parametrize("command", ["queue:size", "queue:clear", "queue:monitor", "queue:restart"])
def test_unknown_connection_argument_is_one_line(kashq_cli: Cli, db_url: str, command: str) -> None:
    run = kashq_cli([command, "nope", "--force"] if command == "queue:clear" else [command, "nope"])

    assert run.exit_code == 1
    assert "connection" in assert_one_line_error(run)


@pytest.mark.parametrize("command", ["queue:size", "queue:clear", "queue:monitor", "queue:restart"])
def test_queue_commands_have_help(kashq_cli: Cli, command: str) -> None:
    run = kashq_cli([command, "--help"])

    assert run.exit_code == 0, run.output
    assert "CONNECTION" in run.stdout
    assert stderr_lines(run) == []


@pytest.mark.parametrize("kashq_cli", ["executable"], indirect=True)  # once is enough
def test_monitor_sees_a_running_queue_work_supervisor(
    kashq_cli: Cli, db_url: str, tmp_path: Path
) -> None:
    (tmp_path / "mini_jobs.py").write_text(
        "from kashq import Job\n\nclass Tick(Job):\n    n: int\n\n    def handle(self) -> None:\n"
        "        pass\n"
    )
    kashq_cli.setenv("KASHQ_IMPORTS", "mini_jobs")
    dispatched = kashq_cli.python(
        "import kashq, mini_jobs\nfor i in range(20):\n    mini_jobs.Tick(n=i).dispatch()\n"
    )
    assert dispatched.returncode == 0, dispatched.stderr
    worker = subprocess.Popen(
        [str(_kashq_executable()), "queue:work", "--workers", "2", "--quiet"],
        cwd=tmp_path,
        env=kashq_cli.subprocess_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline, data = time.monotonic() + 30, dict[str, Any]()
        while time.monotonic() < deadline:
            data = json.loads(kashq_cli(["queue:monitor", "--once", "--json"]).stdout)
            if data["supervisors"] == 1 and data["queues"]["default"]["ready"] == 0:
                break
            time.sleep(0.5)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            _, stderr = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            _, stderr = worker.communicate()
    assert data["supervisors"] == 1, (data, stderr)
    assert data["workers"] == 2
    assert data["queues"]["default"] == {**ZERO, "oldest_wait_s": None}


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("KASHQ_SHARDS", "", "KASHQ_SHARDS"),
        ("KASHQ_SHARDS", "redis://127.0.0.1:6379/15,http://kashq:s3cr3t-pw@h/0", "KASHQ_SHARDS"),
        ("KASHQ_SHARD_STRATEGY", "random", "round_robin"),
        ("KASHQ_SHARDS", "redis://:s3cr3t-pw@127.0.0.1:1/0,redis://:s3cr3t-pw@127.0.0.1:2/0", ":1"),
    ],
    ids=["no-shards", "bad-url", "bad-strategy", "unreachable"],
)
def test_bad_or_unreachable_shards_are_one_line(
    kashq_cli: Cli, db_url: str, name: str, value: str, said: str
) -> None:
    kashq_cli.setenv("KASHQ_CONNECTION", "sharded")
    kashq_cli.setenv(name, value)

    run = kashq_cli(["queue:size"])

    assert run.exit_code == 1
    assert said in assert_one_line_error(run, hidden="s3cr3t-pw")
