"""The batch commands against real ``queue:work`` processes, on the SQLite default and Redis:
``queue:batches``, ``queue:batch``, ``queue:retry-batch``, ``queue:cancel-batch``,
``queue:prune-batches``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.work_app import App, make_app


@pytest.fixture(params=["sqlite", "redis"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    with make_app(tmp_path, request.param) as made:
        yield made


def dispatch_batch(app: App, expression: str) -> str:
    code = f"import kashq, e2e_jobs as j\nprint({expression}.dispatch().id)\n"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=app.root, env=app.env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def shown(app: App, batch_id: str) -> dict[str, object]:
    proc = app.kashq("queue:batch", batch_id, "--json")
    assert proc.returncode == 0, proc.stderr
    data: dict[str, object] = json.loads(proc.stdout)
    return data


def test_a_failed_job_is_retried_into_the_batch_and_its_callback_runs_once(app: App) -> None:
    (app.root / "fail.flag").touch()
    batch_id = dispatch_batch(
        app,
        "kashq.batch([j.Record(n=1), j.Flaky(), j.Record(n=2)]).name('nightly')"
        ".allow_failures().finally_(j.Record(n=99))",
    )
    assert app.work("--stop-when-empty")[0] == 0
    first = shown(app, batch_id)
    assert {k: first[k] for k in ("name", "state", "total", "processed", "failed", "pending")} == {
        "name": "nightly", "state": "finished", "total": 3, "processed": 2, "failed": 1,
        "pending": 0,
    }  # fmt: skip
    [flaky] = first["failed_job_ids"]
    listed = app.kashq("queue:batches")
    assert "nightly" in listed.stdout and "66% (2/3)" in listed.stdout, listed.stdout
    (app.root / "fail.flag").unlink()
    retried = app.kashq("queue:retry-batch", batch_id)
    assert "Retried 1 failed job(s)" in retried.stdout, retried.stdout + retried.stderr
    assert app.work("--stop-when-empty")[0] == 0
    after = shown(app, batch_id)
    assert (after["processed"], after["failed"], after["progress"]) == (3, 0, 100)
    assert app.ledger()[flaky] == 1
    assert sum(app.ledger().values()) == 4  # three jobs and one finally, once
    late = app.kashq("queue:cancel-batch", batch_id)
    assert late.returncode == 1 and "has already finished" in late.stderr
    assert "Pruned 1 finished batch(es)." in app.kashq("queue:prune-batches", "--hours", "0").stdout
    gone = app.kashq("queue:batch", batch_id)
    assert gone.returncode == 1 and "no batch" in gone.stderr


def test_a_cancelled_batch_runs_none_of_its_waiting_jobs(app: App) -> None:
    batch_id = dispatch_batch(
        app, "kashq.batch([j.Record(n=1), j.Record(n=2)]).then(j.Record(n=3))"
    )
    cancelled = app.kashq("queue:cancel-batch", batch_id)
    assert "cancelled: 2 job(s) had not ended" in cancelled.stdout, cancelled.stdout
    assert app.work("--stop-when-empty")[0] == 0
    assert app.ledger() == {}
    data = shown(app, batch_id)
    assert (data["state"], data["pending"], data["processed"]) == ("cancelled", 0, 0)
    as_json = json.loads(app.kashq("queue:batches", "--json").stdout)
    assert [b["id"] for b in as_json] == [batch_id]
    unknown = app.kashq("queue:batch", "not-a-batch")
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1
