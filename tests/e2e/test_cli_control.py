"""``queue:cancel``, ``queue:pause`` and ``queue:continue`` against real ``queue:work`` processes.

On the SQLite default and on Redis (see ``work_app.py``): running jobs stop at a
check, at an ``await``, or are killed once their grace period is over; a cancel
made while no worker runs is carried out by the next one; a paused queue is
left alone until it is continued.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.work_app import App, make_app


@pytest.fixture(params=["sqlite", "redis"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    with make_app(tmp_path, request.param) as made:
        yield made


def _wait_started(app: App, job_ids: list[str], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(app.started()[job_id] for job_id in job_ids):
        if time.monotonic() > deadline:
            pytest.fail(f"jobs never started: {job_ids} (started: {dict(app.started())})")
        time.sleep(0.05)


def _state(app: App, job_id: str) -> dict[str, object]:
    shown = app.kashq("queue:job", job_id, "--json")
    assert shown.returncode == 0, shown.stderr
    status: dict[str, object] = json.loads(shown.stdout)["status"]
    return status


def _wait_state(app: App, job_id: str, state: str, timeout_s: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    status = _state(app, job_id)
    while status["state"] != state:
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} is {status['state']}, never {state}")
        time.sleep(0.2)
        status = _state(app, job_id)
    return status


def test_running_jobs_stop_at_a_check_an_await_or_are_killed_after_their_grace(app: App) -> None:
    app.env["KASHQ_CANCEL_GRACE"] = "1"
    polite, stubborn = app.dispatch("[j.Polite(), j.Stubborn()]")
    worker = app.start_work("--workers", "2")
    try:
        _wait_started(app, [polite, stubborn])
        cancelled = app.kashq("queue:cancel", polite, stubborn)
        assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
        assert cancelled.stdout.count("is held by a worker") == 2, cancelled.stdout
        assert _wait_state(app, polite, "cancelled")["error"] == "cancelled while running"
        killed = _wait_state(app, stubborn, "cancelled")
        assert killed["error"] == "cancelled while running; stopped after its grace period"
        (napper,) = app.dispatch("[j.Napper()]")  # a replaced worker process takes it
        _wait_started(app, [napper])
        assert app.kashq("queue:cancel", napper).returncode == 0
        assert _wait_state(app, napper, "cancelled")["error"] == "cancelled while running"
    finally:
        worker.kill()
    assert app.ledger() == {}, "no cancelled job ran to its end"
    assert app.failed() == []
    assert "CANCELLED" in worker.output()


def test_a_cancel_made_while_no_worker_runs_is_carried_out_by_the_next(app: App) -> None:
    app.env["KASHQ_RETRY_AFTER"] = "2"  # the dead worker's lease lapses in 2 s
    (job_id,) = app.dispatch("[j.Polite()]")
    first = app.start_work()
    try:
        _wait_started(app, [job_id])
    finally:
        first.kill_group()  # every worker is gone, the job still reserved
    cancelled = app.kashq("queue:cancel", job_id, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)[0]["outcome"] == "aborting"
    second = app.start_work()
    try:
        status = _wait_state(app, job_id, "cancelled")
    finally:
        second.kill()
    assert status["error"] == "cancelled before it started"
    assert app.started()[job_id] == 1, "the job never ran again"


def test_a_paused_queue_waits_until_continued(tmp_path: Path) -> None:
    with make_app(tmp_path, "sqlite") as app:
        app.dispatch("[j.Record(n=1)]")
        paused = app.kashq("queue:pause", "default")
        assert paused.returncode == 0, paused.stderr
        assert "Paused queue 'default'" in paused.stdout
        worker = app.start_work()  # a worker starting reads the pause before it reserves
        try:
            worker.wait_for("kashq queue:work")
            time.sleep(2)
            assert app.ledger() == {}, "a paused queue's job ran"
            sizes = json.loads(app.kashq("queue:size", "--json").stdout)
            assert sizes["default"]["paused"] is True and sizes["default"]["ready"] == 1
            resumed = app.kashq("queue:continue", "default")
            assert "Resumed queue 'default'" in resumed.stdout
            app.wait_for_ledger(1, timeout_s=20)
        finally:
            worker.kill()
        again = app.kashq("queue:continue", "default")
        assert again.returncode == 0 and "was not paused" in again.stdout
        unknown = app.kashq("queue:cancel", str(uuid.uuid4()))
        assert unknown.returncode == 1 and "never dispatched" in unknown.stdout
        assert app.kashq("queue:pause", "bad name").returncode == 2
