"""End-to-end tests of queue:events, queue:tail and queue:prune-events.

Each runs in-process and as the installed executable (see ``conftest.py``) on
the SQLite default and on the machine's Redis (database 15, a fresh key prefix
per test, removed afterwards); ``queue:tail`` runs as the executable only, since
stopping it takes a real Ctrl-C (SIGINT). Events are put in place through the
real store of the connection.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from kashq.events import Event, EventStore
from kashq.events.database import DatabaseEventStore
from kashq.events.redis import RedisEventStore
from tests.e2e.conftest import Cli, assert_one_line_error
from tests.e2e.test_cli import _kashq_executable
from tests.support.redis import delete_prefix, shared_client
from tests.support.services import REDIS_URL

WAIT_S = 20.0


@pytest.fixture(params=["database", "redis"])
def store(request: pytest.FixtureRequest, kashq_cli: Cli, db_url: str) -> Iterator[EventStore]:
    """The event store the commands of the test read: SQLite, or Redis under a fresh prefix."""
    if request.param == "database":
        database = DatabaseEventStore(db_url)
        assert database.read() == []  # creates the database the commands read
        yield database
        database.close()
        return
    client = shared_client(REDIS_URL)
    prefix = f"kashq-test-{uuid.uuid4().hex[:10]}"
    for name, value in [("CONNECTION", "redis"), ("REDIS_URL", REDIS_URL), ("PREFIX", prefix)]:
        kashq_cli.setenv(f"KASHQ_{name}", value)
    try:
        yield RedisEventStore(client, prefix=prefix)
    finally:
        delete_prefix(client, prefix)
        client.close()


def history(job_id: str, at: float) -> list[Event]:
    def make(type_: str, seconds: float, attempt: int, **details: object) -> Event:
        return Event(
            type_, job_id, "app.SendEmail", "emails", attempt, at + seconds, details=details
        )

    return [
        make("dispatched", 0, 0),
        make("started", 1, 1),
        make("attempt_failed", 2, 1, error="ValueError: smtp down", duration_ms=12.5),
        make("released", 2.1, 1, delay_s=1.0, error="ValueError: smtp down"),
        make("started", 3, 2),
        make("completed", 4, 2, duration_ms=3.0),
    ]


def test_events_shows_the_timeline_of_one_job(kashq_cli: Cli, store: EventStore) -> None:
    job_id = str(uuid.uuid4())
    store.append_many(history(job_id, time.time()))
    store.append(Event("dispatched", "someone-else", "app.Other", "default", 0, time.time()))

    run = kashq_cli(["queue:events", job_id])

    assert run.exit_code == 0, run.output
    cells = [line.split("│") for line in run.stdout.splitlines() if line.count("│") == 6]
    assert [row[2].strip() for row in cells] == history_types()
    assert "error=ValueError" in run.stdout  # cut to the terminal width in-process
    assert "app.SendEmail" in run.stdout and "someone-else" not in run.stdout


def history_types() -> list[str]:
    return [e.type for e in history("x", 0)]


def test_events_json_lists_every_event_in_order(kashq_cli: Cli, store: EventStore) -> None:
    job_id = str(uuid.uuid4())
    store.append_many(history(job_id, time.time()))

    run = kashq_cli(["queue:events", job_id, "--json"])

    assert run.exit_code == 0, run.output
    data = json.loads(run.stdout)
    assert [e["type"] for e in data] == history_types()
    assert data[2]["details"] == {"error": "ValueError: smtp down", "duration_ms": 12.5}
    assert {"job_id", "attempt", "at", "time", "host", "pid", "position"} <= set(data[0])


def test_events_of_an_unknown_job_is_a_one_line_error(kashq_cli: Cli, store: EventStore) -> None:
    run = kashq_cli(["queue:events", "no-such-job"])

    assert "no events recorded" in assert_one_line_error(run)


def test_events_on_the_memory_connection_is_a_one_line_error(kashq_cli: Cli) -> None:
    run = kashq_cli(["queue:events", "some-job", "memory"])

    assert "memory connection" in assert_one_line_error(run)


def test_events_on_an_unreachable_redis_is_a_one_line_error(kashq_cli: Cli) -> None:
    kashq_cli.setenv("KASHQ_REDIS_URL", "redis://:secret@127.0.0.1:1/0")
    run = kashq_cli(["queue:events", "some-job", "redis"])

    assert "redis" in assert_one_line_error(run, hidden="secret")


def test_tail_with_an_unknown_event_type_is_a_usage_error(kashq_cli: Cli, db_url: str) -> None:
    run = kashq_cli(["queue:tail", "--type", "exploded"])

    assert run.exit_code == 2
    assert "exploded" in assert_one_line_error(run)


def test_tail_after_a_bad_position_is_one_line(kashq_cli: Cli, db_url: str) -> None:
    events = DatabaseEventStore(db_url)
    events.append_many(history("job-1", time.time()))
    events.close()

    run = kashq_cli(["queue:tail", "--after", "garbage"])

    assert run.exit_code == 1
    assert "not a database event position: 'garbage'" in assert_one_line_error(run)


@pytest.mark.parametrize(
    "args", [["queue:events", "some-job"], ["queue:tail"], ["queue:prune-events"]], ids=" ".join
)
def test_event_commands_in_a_fresh_directory_say_so_and_create_no_database(
    kashq_cli: Cli, args: list[str]
) -> None:
    # They created an empty kashq.sqlite; queue:tail then waited forever on it.
    run = kashq_cli(args)

    assert run.exit_code == 1
    assert "no kashq database at sqlite:///kashq.sqlite: " in assert_one_line_error(run)
    assert list(kashq_cli.cwd.iterdir()) == []


def test_prune_events_deletes_old_events(kashq_cli: Cli, db_url: str) -> None:
    events = DatabaseEventStore(db_url)
    now = time.time()
    events.append_many(history("old", now - 10 * 24 * 3600) + history("new", now))

    week = kashq_cli(["queue:prune-events"])
    hour = kashq_cli(["queue:prune-events", "--hours", "1"])

    assert week.exit_code == 0, week.output
    assert "Pruned 6 events older than 168 hours" in week.stdout
    assert "Pruned 0 events" in hour.stdout
    assert {e.job_id for e in events.read()} == {"new"}
    events.close()


@pytest.mark.parametrize("kashq_cli", ["executable"], indirect=True)  # Ctrl-C needs a process
def test_tail_prints_live_events_and_stops_cleanly_on_ctrl_c(
    kashq_cli: Cli, store: EventStore
) -> None:
    proc = subprocess.Popen(
        [str(_kashq_executable()), "queue:tail", "--queue", "emails", "--json"],
        cwd=kashq_cli.cwd,
        env=kashq_cli.subprocess_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(proc, lines))
    reader.start()
    try:
        got = _append_until_printed(store, lines)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(WAIT_S)
    while not lines.empty():
        got.append(json.loads(lines.get()))

    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert got and {e["queue"] for e in got} == {"emails"}  # --queue left "default" out
    assert {e["type"] for e in got} == {"started"}


def _read_lines(proc: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    for line in proc.stdout or ():
        lines.put(line)


def _append_until_printed(store: EventStore, lines: queue.Queue[str]) -> list[dict[str, object]]:
    """Append events until the tail prints one (it follows from when it started)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        now = time.time()
        store.append_many(
            [
                Event("started", "elsewhere", "app.Job", "default", 1, now),
                Event("started", "wanted", "app.Job", "emails", 1, now),
            ]
        )
        try:
            return [json.loads(lines.get(timeout=0.2))]
        except queue.Empty:
            continue
    pytest.fail("queue:tail printed nothing")
