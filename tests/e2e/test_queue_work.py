"""``kashq queue:work`` end to end: the installed executable, real worker processes.

Each test gets an application directory (see ``work_app.py``) on the embedded
SQLite default and, where the behaviour depends on the driver, on Redis too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kashq.cli import app as cli_app
from tests.e2e.work_app import App, json_events, make_app
from tests.support.http import http_server


@pytest.fixture(params=["sqlite", "redis"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    with make_app(tmp_path, request.param) as made:
        yield made


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[App]:
    with make_app(tmp_path, "sqlite") as made:
        yield made


# --------------------------------------------------------------------------- processing


def test_four_workers_process_each_of_500_jobs_exactly_once(app: App) -> None:
    ids = app.dispatch("[j.Record(n=i) for i in range(500)]")

    code, output = app.work("--workers", "4", "--stop-when-empty", "--quiet")

    assert code == 0, output
    ledger = app.ledger()
    assert set(ledger) == set(ids)
    assert all(count == 1 for count in ledger.values()), ledger.most_common(3)


def test_banner_names_connection_queues_workers_and_failed_store(sqlite_app: App) -> None:
    code, output = sqlite_app.work("--workers", "2", "--queue", "high,default", "--stop-when-empty")

    assert code == 0, output
    assert "kashq queue:work · database (sqlite:///kashq.sqlite)" in output
    assert "queues       high, default" in output
    assert "2 processes" in output
    assert "failed_jobs table at sqlite:///kashq.sqlite" in output
    assert "Traceback" not in output


def test_banner_names_the_failed_jobs_table_with_its_prefix(sqlite_app: App) -> None:
    sqlite_app.env["KASHQ_TABLE_PREFIX"] = "app_"

    code, output = sqlite_app.work("--stop-when-empty")

    assert code == 0, output
    assert "the app_failed_jobs table at sqlite:///kashq.sqlite" in output


def test_plain_output_has_a_running_and_a_done_line_per_job(sqlite_app: App) -> None:
    sqlite_app.dispatch("[j.Record(n=1)]")

    code, output = sqlite_app.work("--stop-when-empty")

    assert code == 0, output
    lines = [line for line in output.splitlines() if "e2e_jobs.Record" in line]
    assert len(lines) == 2, output
    assert lines[0].rstrip().endswith("RUNNING")
    assert lines[1].rstrip().endswith("DONE")
    assert "ms DONE" in lines[1]
    assert "\x1b[" not in output  # no colour codes when stdout is not a terminal


def test_json_output_is_one_object_per_event(sqlite_app: App) -> None:
    (job_id,) = sqlite_app.dispatch("[j.Record(n=1)]")

    code, output = sqlite_app.work("--stop-when-empty", "--json")

    assert code == 0, output
    events = json_events(output)
    assert all(line.startswith("{") for line in output.splitlines() if line.strip())
    kinds = [e["event"] for e in events if e.get("job_id") == job_id]
    assert kinds == ["job.started", "job.completed"]
    done = next(e for e in events if e["event"] == "job.completed")
    assert done["job"] == "e2e_jobs.Record"
    assert done["queue"] == "default"
    assert done["attempt"] == 1
    assert done["duration_ms"] >= 0
    assert events[0]["event"] == "supervisor.starting"


# --------------------------------------------------------------------------- failures


def test_failing_job_is_failed_after_its_tries_and_retry_all_clears_it(app: App) -> None:
    (app.root / "fail.flag").touch()
    (job_id,) = app.dispatch("[j.Flaky()]")

    code, output = app.work("--stop-when-empty")

    assert code == 0, output
    assert "RETRY in 0s" in output
    assert "FAIL" in output
    (failed,) = app.failed()
    assert failed["uuid"] == job_id
    assert failed["attempts"] == 2  # Flaky.tries
    assert "fail.flag is set" in failed["error"]

    (app.root / "fail.flag").unlink()
    retried = app.kashq("queue:retry", "all")
    assert retried.returncode == 0, retried.stderr
    code, output = app.work("--stop-when-empty")

    assert code == 0, output
    assert app.ledger() == {job_id: 1}
    assert app.failed() == []


def test_timeout_kills_a_sleeping_job_which_fails_after_its_tries(app: App) -> None:
    (job_id,) = app.dispatch("[j.Sleeper()]")
    started = time.monotonic()

    code, output = app.work("--timeout", "1", "--stop-when-empty")

    assert code == 0, output
    assert time.monotonic() - started < 25, "the sleeping job was not killed"
    assert output.count("TIMEOUT") == 2, output
    (failed,) = app.failed()
    assert failed["uuid"] == job_id
    assert failed["attempts"] == 2
    assert "timeout of 1s" in failed["error"]
    assert app.ledger() == {}


def test_timeout_kills_a_job_of_megabytes_too(sqlite_app: App) -> None:
    (job_id,) = sqlite_app.dispatch("[j.BigSleeper(blob='x' * 3_000_000)]")

    code, output = sqlite_app.work("--stop-when-empty", timeout_s=60)

    assert code == 0, output
    assert "TIMEOUT" in output
    [failed] = sqlite_app.failed()
    assert failed["uuid"] == job_id
    assert "timeout of 1s" in failed["error"]
    assert sqlite_app.ledger() == {}


def test_timeout_kills_a_job_stuck_in_c_code_holding_the_gil(sqlite_app: App) -> None:
    (job_id,) = sqlite_app.dispatch("[j.Backtrack().with_timeout(1)]")

    code, output = sqlite_app.work("--stop-when-empty")

    assert code == 0, output
    assert "TIMEOUT" in output
    (failed,) = sqlite_app.failed()
    assert failed["uuid"] == job_id
    assert "timeout of 1s" in failed["error"]


def test_the_timeout_covers_handle_only_not_the_failed_hook(sqlite_app: App) -> None:
    (job_id,) = sqlite_app.dispatch("[j.SlowHook()]")

    code, output = sqlite_app.work("--stop-when-empty")

    assert code == 0, output
    assert "TIMEOUT" not in output
    (failed,) = sqlite_app.failed()
    assert failed["error"] == "RuntimeError: the real cause"
    assert (sqlite_app.root / "hooks.txt").read_text().split() == [job_id]


def test_worker_process_that_dies_is_replaced_and_its_job_run_again(app: App) -> None:
    (job_id,) = app.dispatch("[j.DiesOnce()]")

    code, output = app.work("--stop-when-empty")

    assert code == 0, output
    assert "was killed by SIGKILL; starting a new one" in output
    assert app.ledger() == {job_id: 1}
    assert app.failed() == []


# --------------------------------------------------------------------------- signals


def test_sigterm_lets_running_jobs_finish_loses_nothing_and_exits_0(app: App) -> None:
    ids = app.dispatch("[j.Record(n=i, pause=0.02) for i in range(150)]")
    worker = app.start_work("--workers", "2", "--quiet")
    app.wait_for_ledger(10)

    worker.signal(signal.SIGTERM)
    code = worker.popen.wait(timeout=30)

    assert code == 0, worker.output()
    assert "Stopping" in worker.output()
    done_first = sum(app.ledger().values())
    assert done_first < len(ids), "stopped too late to prove anything"
    code, output = app.work("--workers", "2", "--stop-when-empty", "--quiet")
    assert code == 0, output
    ledger = app.ledger()
    assert set(ledger) == set(ids)
    assert all(count == 1 for count in ledger.values())


def test_sigterm_to_the_whole_process_group_still_lets_the_job_finish(sqlite_app: App) -> None:
    (job_id,) = sqlite_app.dispatch("[j.Record(n=1, pause=2)]")
    worker = sqlite_app.start_work()
    worker.wait_for("RUNNING")

    os.killpg(worker.popen.pid, signal.SIGTERM)  # what a service manager may do
    code = worker.popen.wait(timeout=30)

    assert code == 0, worker.output()
    assert sqlite_app.ledger() == {job_id: 1}
    assert "DONE" in worker.output()


def test_a_worker_stopped_from_outside_is_replaced(sqlite_app: App) -> None:
    worker = sqlite_app.start_work("--json", "-v")
    try:
        worker.wait_for('"worker.started"')
        (first,) = [e["pid"] for e in worker.events() if e["event"] == "worker.started"]
        time.sleep(0.5)
        os.kill(first, signal.SIGTERM)

        deadline = time.monotonic() + 20
        while len([e for e in worker.events() if e["event"] == "worker.started"]) < 2:
            assert time.monotonic() < deadline, worker.output()
            time.sleep(0.1)
    finally:
        worker.signal(signal.SIGTERM)
        worker.popen.wait(timeout=30)
    assert worker.popen.returncode == 0


def test_second_signal_stops_at_once_and_hands_the_job_back_at_once(app: App) -> None:
    (job_id,) = app.dispatch("[j.SlowOnce()]")
    worker = app.start_work()
    worker.wait_for("RUNNING")

    worker.signal(signal.SIGINT)
    time.sleep(0.3)
    worker.signal(signal.SIGINT)
    code = worker.popen.wait(timeout=10)

    assert code != 0
    assert "Stopping at once" in worker.output()
    assert app.ledger() == {}
    started = time.monotonic()
    code, output = app.work("--stop-when-empty")
    assert code == 0, output
    assert app.ledger() == {job_id: 1}
    assert time.monotonic() - started < 15, "the job waited for its 30 s lease"


def test_sigkill_of_the_whole_process_group_loses_nothing(app: App) -> None:
    app.env["KASHQ_RETRY_AFTER"] = "2"
    ids = app.dispatch("[j.Record(n=i, pause=0.01) for i in range(300)]")
    worker = app.start_work("--workers", "3", "--quiet", "--timeout", "1")
    app.wait_for_ledger(20)

    worker.kill_group()
    assert sum(app.ledger().values()) < len(ids), "finished before the kill"
    code, output = app.work("--workers", "2", "--stop-when-empty", "--quiet", "--timeout", "1")

    assert code == 0, output
    ledger = app.ledger()
    assert set(ledger) == set(ids)
    duplicates = sum(count - 1 for count in ledger.values())
    assert duplicates <= 3  # at most the jobs in flight when the group died


# --------------------------------------------------------------------------- limits


def test_max_jobs_replaces_each_worker_process_after_that_many_jobs(sqlite_app: App) -> None:
    ids = sqlite_app.dispatch("[j.Record(n=i) for i in range(20)]")

    code, output = sqlite_app.work("--max-jobs", "5", "--stop-when-empty", "--quiet")

    assert code == 0, output
    pids = sqlite_app.ledger_pids()
    assert set(pids) == set(ids)
    per_process: dict[int, int] = {}
    for pid in pids.values():
        per_process[pid] = per_process.get(pid, 0) + 1
    assert len(per_process) >= 4
    assert max(per_process.values()) <= 5


def test_max_time_replaces_a_worker_process_after_that_many_seconds(sqlite_app: App) -> None:
    ids = sqlite_app.dispatch("[j.Record(n=i, pause=0.1) for i in range(25)]")

    code, output = sqlite_app.work("--max-time", "1", "--stop-when-empty", "--quiet")

    assert code == 0, output
    pids = sqlite_app.ledger_pids()
    assert set(pids) == set(ids)
    assert len(set(pids.values())) >= 2


def test_once_processes_a_single_job_then_exits(app: App) -> None:
    app.dispatch("[j.Record(n=i) for i in range(3)]")

    code, output = app.work("--once")

    assert code == 0, output
    assert sum(app.ledger().values()) == 1
    size = app.kashq("queue:size", "--json")
    assert size.returncode == 0, size.stderr
    assert '"ready": 2' in size.stdout.replace('"ready":2', '"ready": 2')


def test_stop_when_empty_exits_at_once_on_an_empty_queue(app: App) -> None:
    started = time.monotonic()

    code, output = app.work("--workers", "2", "--stop-when-empty")

    assert code == 0, output
    assert time.monotonic() - started < 20
    assert "Stopped." in output


def test_memory_limit_replaces_the_worker_after_its_job(sqlite_app: App) -> None:
    hog, *rest = sqlite_app.dispatch("[j.Hog(mb=300)] + [j.Record(n=i) for i in range(3)]")

    code, output = sqlite_app.work("--memory", "200", "--stop-when-empty", "--quiet")

    assert code == 0, output
    pids = sqlite_app.ledger_pids()
    assert set(pids) == {hog, *rest}
    assert all(pids[job] != pids[hog] for job in rest)


# --------------------------------------------------------------------------- start-up


def test_module_that_fails_to_import_stops_start_up_with_its_error(sqlite_app: App) -> None:
    (sqlite_app.root / "broken.py").write_text("import os\nraise ValueError('broken at import')\n")

    proc = sqlite_app.kashq("queue:work", "--import", "broken", timeout_s=30)

    assert proc.returncode == 1
    assert "cannot import job module 'broken': ValueError: broken at import" in proc.stderr
    assert 'broken.py", line 2' in proc.stderr
    assert "importlib" not in proc.stderr


def test_missing_module_is_one_line(sqlite_app: App) -> None:
    proc = sqlite_app.kashq("queue:work", "--import", "no_such_module", timeout_s=30)

    assert proc.returncode == 1
    assert "No module named 'no_such_module'" in proc.stderr


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"KASHQ_CONNECTION": "bogus"}, "invalid setting connection"),
        ({"KASHQ_CONNECTION": "memory"}, "cannot use the memory connection"),
        ({"KASHQ_CONNECTION": "redis", "KASHQ_REDIS_URL": "redis://127.0.0.1:1/0"}, "127.0.0.1:1"),
        ({"KASHQ_REDIS_URL": "http://example.com"}, "invalid setting redis_url"),
    ],
)
def test_bad_settings_are_one_line_errors(
    sqlite_app: App, env: dict[str, str], expected: str
) -> None:
    sqlite_app.env.update(env)

    proc = sqlite_app.kashq("queue:work", timeout_s=30)

    assert proc.returncode == 1
    assert expected in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_timeout_not_shorter_than_the_lease_is_warned_about(sqlite_app: App) -> None:
    code, output = sqlite_app.work("--timeout", "40", "--stop-when-empty")

    assert code == 0, output
    assert "timeout 40s is not shorter than the lease (30s" in output


def test_default_timeout_is_shorter_than_the_lease_so_nothing_is_warned(sqlite_app: App) -> None:
    code, output = sqlite_app.work("--stop-when-empty")

    assert code == 0, output
    assert "warning" not in output


def test_queue_restart_replaces_every_worker_process(app: App) -> None:
    worker = app.start_work("--workers", "2", "--json", "-v")
    try:
        worker.wait_for('"worker.started"')
        time.sleep(1.5)  # the supervisor has read the restart record once
        restart = app.kashq("queue:restart")
        assert restart.returncode == 0, restart.stderr

        deadline = time.monotonic() + 20
        while len({e["pid"] for e in worker.events() if e["event"] == "worker.started"}) < 4:
            assert time.monotonic() < deadline, worker.output()
            time.sleep(0.1)
    finally:
        worker.signal(signal.SIGTERM)
        worker.popen.wait(timeout=30)
    assert worker.popen.returncode == 0


# --------------------------------------------------------------------------- in-process (CliRunner)


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["queue:work", "nope"], {}, "invalid setting connection"),
        (["queue:work", "sync"], {}, "cannot use the sync connection"),
        (["queue:work", "redis"], {"KASHQ_REDIS_URL": "redis://127.0.0.1:1/0"}, "127.0.0.1:1"),
        (["queue:work", "--import", "no_such_module_here"], {}, "No module named"),
    ],
)
def test_bad_input_in_process_is_one_line_and_exit_1(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    expected: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("KASHQ_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    result = CliRunner().invoke(cli_app, args, catch_exceptions=False)

    assert result.exit_code == 1
    assert expected in result.stderr
    assert "Traceback" not in result.output


def test_queue_work_help_lists_its_options() -> None:
    result = CliRunner().invoke(cli_app, ["queue:work", "--help"], catch_exceptions=False)

    assert result.exit_code == 0
    for option in ("--workers", "--timeout", "--max-jobs", "--memory", "--once", "--import"):
        assert option in result.stdout


# --------------------------------------------------------------------------- events and alerts


def test_queue_work_records_each_jobs_history_in_the_event_store(app: App) -> None:
    (app.root / "fail.flag").touch()
    (job_id,) = app.dispatch("[j.Flaky()]")

    code, output = app.work("--stop-when-empty")

    assert code == 0, output
    events = app.kashq("queue:events", job_id, "--json")
    assert events.returncode == 0, events.stderr
    kinds = [event["type"] for event in json.loads(events.stdout)]
    assert kinds == [
        "dispatched", "started", "attempt_failed", "released",
        "started", "attempt_failed", "failed",
    ]  # fmt: skip


def test_queue_work_alerts_a_webhook_when_a_job_fails_for_good(sqlite_app: App) -> None:
    (sqlite_app.root / "fail.flag").touch()
    with http_server() as server:
        sqlite_app.env["KASHQ_ALERT_WEBHOOK_URL"] = server.url
        (job_id,) = sqlite_app.dispatch("[j.Flaky()]")

        code, output = sqlite_app.work("--stop-when-empty")

        assert code == 0, output
        (posted,) = server.wait_for(1)
    alert = posted.json()
    assert alert["job_id"] == job_id
    assert alert["job_type"] == "e2e_jobs.Flaky"
    assert alert["attempts"] == 2
    assert "fail.flag is set" in alert["error"]


def test_with_scheduler_runs_recurring_schedules_beside_the_workers(sqlite_app: App) -> None:
    (sqlite_app.root / "e2e_schedules.py").write_text(
        "import kashq\nimport e2e_jobs\n\n"
        "kashq.schedule.every(seconds=1).name('tick').dispatch(e2e_jobs.Record(n=0))\n"
    )
    worker = sqlite_app.start_work("--with-scheduler", "--import", "e2e_schedules")
    try:
        sqlite_app.wait_for_ledger(2, timeout_s=30)  # two ticks ran as jobs
    finally:
        worker.signal(signal.SIGTERM)
        code = worker.popen.wait(timeout=30)
    assert code == 0, worker.output()
    assert "Traceback" not in worker.output()


def _children(pid: int) -> dict[int, str]:
    """The supervisor's child processes and their states (``Z``: a zombie, never reaped)."""
    try:
        pids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return {}
    states = {}
    for child in map(int, pids):
        with contextlib.suppress(OSError):  # it exited meanwhile
            states[child] = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return states


def test_with_scheduler_and_no_schedules_warns_and_runs_the_workers_alone(sqlite_app: App) -> None:
    (job_id,) = sqlite_app.dispatch("[j.Record(n=1)]")
    worker = sqlite_app.start_work("--with-scheduler")
    try:
        sqlite_app.wait_for_ledger(1, timeout_s=30)
        time.sleep(1.5)  # a scheduler child would have started, failed and exited by now
        children = _children(worker.popen.pid)
        assert len(children) == 1, children  # the one worker process, no scheduler
        assert "Z" not in children.values()
    finally:
        worker.signal(signal.SIGTERM)
        code = worker.popen.wait(timeout=30)
    output = worker.output()
    assert code == 0, output
    assert "error" not in output.lower(), output
    warnings = [line for line in output.splitlines() if "no schedules" in line]
    assert warnings == [
        "warning: --with-scheduler: no schedules to run (e2e_jobs declare none on "
        "kashq.scheduler.schedule); the workers run without a scheduler"
    ], output
    assert sqlite_app.ledger() == {job_id: 1}


def test_a_scheduler_that_dies_is_reaped_and_reported(sqlite_app: App) -> None:
    (sqlite_app.root / "e2e_schedules.py").write_text(
        "import kashq\nimport e2e_jobs\n\n"
        "kashq.schedule.every(seconds=1).name('tick').dispatch(e2e_jobs.Record(n=0))\n"
    )
    worker = sqlite_app.start_work("--with-scheduler", "--import", "e2e_schedules", "--json", "-v")
    try:
        sqlite_app.wait_for_ledger(1, timeout_s=30)
        workers = {e["pid"] for e in worker.events() if e["event"] == "worker.started"}
        (scheduler,) = set(_children(worker.popen.pid)) - workers
        os.kill(scheduler, signal.SIGKILL)
        worker.wait_for('"scheduler.exited"')
        time.sleep(0.3)
        assert set(_children(worker.popen.pid)) == workers  # reaped: no zombie left
    finally:
        worker.signal(signal.SIGTERM)
        code = worker.popen.wait(timeout=30)
    assert code == 0, worker.output()
    [exited] = [e for e in worker.events() if e["event"] == "scheduler.exited"]
    assert exited["pid"] == scheduler
    assert exited["exit_code"] == -signal.SIGKILL


def _gone(pid: int) -> bool:
    """Process ``pid`` has ended (a zombie left to an init that does not reap counts)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


@pytest.mark.parametrize("how", ["timeout", "second signal", "worker killed"])
def test_a_killed_job_takes_its_subprocesses_with_it(sqlite_app: App, how: str) -> None:
    (job_id,) = sqlite_app.dispatch("[j.SpawnsSleep()]")
    pid_file = sqlite_app.root / f"sleep-{job_id}"
    worker = sqlite_app.start_work("--json", "-v")
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, worker.output()
            time.sleep(0.05)
        sleep_pid = int(pid_file.read_text())
        if how == "timeout":
            worker.wait_for('"job.timeout"')
        elif how == "second signal":
            worker.signal(signal.SIGINT)
            time.sleep(0.3)
            worker.signal(signal.SIGINT)
            worker.popen.wait(timeout=10)
        else:
            (pid,) = [e["pid"] for e in worker.events() if e["event"] == "worker.started"]
            os.kill(pid, signal.SIGKILL)
            worker.wait_for('"worker.died"')
        deadline = time.monotonic() + 10
        while not _gone(sleep_pid):
            assert time.monotonic() < deadline, f"sleep {sleep_pid} outlived its job ({how})"
            time.sleep(0.05)
    finally:
        worker.kill()
        with contextlib.suppress(ValueError, OSError, ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
