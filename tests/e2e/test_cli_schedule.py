"""End-to-end tests of ``kashq schedule:list`` and ``kashq schedule:work``.

``schedule:list`` runs in-process and as the installed executable (see
``conftest.py``); ``schedule:work`` runs as the executable only, since it runs
until SIGTERM. The schedules come from a user module written into the test's
directory, dispatching onto the SQLite default connection there.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime

import pytest

from kashq.drivers.database import DatabaseDriver
from kashq.scheduler import SchedulerProcess, schedule
from tests.e2e.conftest import Cli, assert_one_line_error
from tests.e2e.test_cli import _kashq_executable

GENEROUS_S = 30.0

MODULE = """
from kashq import NamedJob
from kashq.scheduler import schedule

schedule.every(seconds=1).name("heartbeat").dispatch(NamedJob("heartbeat", {"n": 1}))


@schedule.cron("0 9 * * mon-fri", tz="Europe/Paris")
def morning() -> None:
    NamedJob("morning", {}).dispatch()
"""


@pytest.fixture
def module(kashq_cli: Cli, db_url: str) -> Iterator[str]:
    """A fresh user module (unique name) declaring schedules; the registry is emptied after."""
    name = f"schedules_{uuid.uuid4().hex[:8]}"
    (kashq_cli.cwd / f"{name}.py").write_text(MODULE)
    yield name
    schedule.clear()  # the in-process runs declared them in this process
    sys.modules.pop(name, None)


def _ready(db_url: str) -> int:
    driver = DatabaseDriver(db_url)
    try:
        return driver.sizes(["default"])["default"].ready
    finally:
        driver.close()


def _start_work(cli: Cli, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(_kashq_executable()), "schedule:work", *args],
        cwd=cli.cwd,
        env=cli.subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_jobs(db_url: str, count: int) -> None:
    deadline = time.monotonic() + GENEROUS_S
    while _ready(db_url) < count:
        assert time.monotonic() < deadline, f"fewer than {count} scheduled jobs arrived"
        time.sleep(0.2)


def _stop(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=GENEROUS_S)
    return process.returncode, out, err


# -- schedule:list -------------------------------------------------------------------


def test_list_shows_each_schedule_with_its_zone_and_next_run(kashq_cli: Cli, module: str) -> None:
    run = kashq_cli(["schedule:list", "--import", module])
    assert run.exit_code == 0, run.output
    heartbeat = next(line for line in run.stdout.splitlines() if "heartbeat" in line)
    assert "every 1s" in heartbeat and "UTC" in heartbeat and "job heartbeat" in heartbeat
    morning = next(line for line in run.stdout.splitlines() if "morning" in line)
    assert "0 9 * * mon-fri" in morning and "Europe/Paris" in morning
    assert re.search(r"09:00:00 CES?T", morning)


def test_list_json_gives_the_next_runs_in_iso_8601(kashq_cli: Cli, module: str) -> None:
    run = kashq_cli(["schedule:list", "--import", module, "--json", "--next", "3"])
    assert run.exit_code == 0, run.output
    rows = {row["name"]: row for row in json.loads(run.stdout)}
    heartbeat, morning = rows["heartbeat"], rows[f"{module}.morning"]
    assert (heartbeat["kind"], heartbeat["period_s"], heartbeat["job"]) == (
        "interval",
        1,
        "heartbeat",
    )
    times = [datetime.fromisoformat(t) for t in heartbeat["next_runs"]]
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(times)] == [1.0, 1.0]
    assert morning["function"] == f"{module}.morning"
    assert morning["timezone"] == "Europe/Paris"
    mornings = [datetime.fromisoformat(t) for t in morning["next_runs"]]
    assert len(mornings) == 3
    assert all((t.hour, t.minute) == (9, 0) and t.isoweekday() <= 5 for t in mornings)


def test_list_reads_modules_from_kashq_imports(kashq_cli: Cli, module: str) -> None:
    kashq_cli.setenv("KASHQ_IMPORTS", module)
    run = kashq_cli(["schedule:list", "--json"])
    assert run.exit_code == 0, run.output
    assert {row["name"] for row in json.loads(run.stdout)} == {"heartbeat", f"{module}.morning"}


def test_list_without_schedules_says_so(kashq_cli: Cli, db_url: str) -> None:
    run = kashq_cli(["schedule:list"])
    assert run.exit_code == 0 and "No schedules" in run.stdout
    assert json.loads(kashq_cli(["schedule:list", "--json"]).stdout) == []


def test_bad_cron_expression_is_a_one_line_error_naming_its_line(
    kashq_cli: Cli, db_url: str
) -> None:
    name = f"bad_{uuid.uuid4().hex[:8]}"
    source = "from kashq.scheduler import schedule\n\nschedule.cron('61 * * * *').call(print)\n"
    (kashq_cli.cwd / f"{name}.py").write_text(source)
    try:
        for command in ("schedule:list", "schedule:work"):
            line = assert_one_line_error(kashq_cli([command, "--import", name]))
            assert "invalid cron expression '61 * * * *'" in line
            assert "minute value 61 is out of range 0-59" in line
            assert f"{name}.py, line 3" in line
    finally:
        sys.modules.pop(name, None)


# -- schedule:work -------------------------------------------------------------------


@pytest.mark.parametrize(
    "kashq_cli", ["executable"], indirect=True
)  # schedule:work runs until a signal: tested as the executable
def test_work_dispatches_every_tick_and_stops_cleanly_on_sigterm(
    kashq_cli: Cli, module: str, db_url: str
) -> None:
    process = _start_work(kashq_cli, "--import", module)
    try:
        _wait_for_jobs(db_url, 2)
    finally:
        code, out, err = _stop(process)
    assert code == 0, err
    assert "heartbeat  fired  job" in out and "Scheduler stopped." in out
    size = kashq_cli(["queue:size", "--json"])
    assert json.loads(size.stdout)["default"]["ready"] >= 2


@pytest.mark.parametrize(
    "kashq_cli", ["executable"], indirect=True
)  # schedule:work runs until a signal: tested as the executable
def test_two_work_processes_fire_each_tick_once(kashq_cli: Cli, module: str, db_url: str) -> None:
    processes = [_start_work(kashq_cli, "--import", module) for _ in range(2)]
    try:
        _wait_for_jobs(db_url, 4)
    finally:
        results = [_stop(process) for process in processes]
    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    fired = Counter(
        line.split("  heartbeat")[0]
        for _, out, _ in results
        for line in out.splitlines()
        if "heartbeat  fired" in line
    )
    assert fired and set(fired.values()) == {1}, fired  # no tick fired by both
    assert _ready(db_url) == sum(fired.values())


def test_work_refuses_the_memory_connection_and_an_empty_schedule(
    kashq_cli: Cli, module: str
) -> None:
    line = assert_one_line_error(kashq_cli(["schedule:work", "memory", "--import", module]))
    assert "cannot use the memory connection" in line
    schedule.clear()
    line = assert_one_line_error(kashq_cli(["schedule:work"]))
    assert "no schedules to run" in line


@pytest.mark.parametrize(
    "kashq_cli", ["executable"], indirect=True
)  # one run is enough: it starts its own process either way
def test_scheduler_process_runs_beside_a_program_and_stops_with_exit_0(
    kashq_cli: Cli, module: str, db_url: str
) -> None:
    child = SchedulerProcess(
        imports=[module], cwd=str(kashq_cli.cwd), env=kashq_cli.subprocess_env()
    )
    child.start()
    try:
        _wait_for_jobs(db_url, 1)
        assert child.poll() is None
    finally:
        assert child.stop(GENEROUS_S) == 0


@pytest.mark.parametrize(
    "kashq_cli", ["executable"], indirect=True
)  # one run is enough: it runs in its own interpreter either way
def test_run_scheduler_in_a_program_stops_cleanly_on_sigterm(
    kashq_cli: Cli, module: str, db_url: str
) -> None:
    code = f"from kashq.scheduler import run_scheduler; run_scheduler(imports=[{module!r}])"
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=kashq_cli.cwd,
        env=kashq_cli.subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_jobs(db_url, 1)
    finally:
        returncode, _, err = _stop(process)
    assert returncode == 0, err
