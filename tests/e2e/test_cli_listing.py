"""``queue:jobs`` and ``queue:cancel --tag`` with the installed executable, on SQLite and Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.work_app import App, make_app


@pytest.fixture(params=["sqlite", "redis"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    with make_app(tmp_path, request.param) as made:
        yield made


def _page(app: App, *args: str) -> dict[str, object]:
    run = app.kashq("queue:jobs", "--json", *args)
    assert run.returncode == 0, run.stderr
    page: dict[str, object] = json.loads(run.stdout)
    return page


def test_jobs_are_listed_by_state_and_tag_a_page_at_a_time(app: App) -> None:
    ids = app.dispatch("[j.Record(n=i).with_tags('batch:7') for i in range(5)] + [j.Record(n=9)]")
    first = _page(app, "--tag", "batch:7", "--limit", "3")
    rest = _page(app, "--tag", "batch:7", "--limit", "3", "--cursor", str(first["cursor"]))
    listed = [job["id"] for job in [*first["jobs"], *rest["jobs"]]]  # type: ignore[misc]
    assert listed == ids[:5] and rest["cursor"] is None
    table = app.kashq("queue:jobs", "--queue", "default", "--limit", "2")
    assert table.returncode == 0, table.stderr
    assert ids[0] in table.stdout and "batch:7" in table.stdout and "--cursor" in table.stdout
    bad = app.kashq("queue:jobs", "--state", "sleeping")
    assert bad.returncode == 2 and "state must be one of" in bad.stderr


def test_cancel_by_tag_cancels_only_the_tagged_jobs_and_lists_them_cancelled(app: App) -> None:
    app.env["KASHQ_KEEP_COMPLETED"] = "3600"  # the recent jobs are kept: cancelled ones listed
    ids = app.dispatch("[j.Record(n=1).with_tags('import:3'), j.Record(n=2)]")
    cancelled = app.kashq("queue:cancel", "--tag", "import:3")
    assert cancelled.returncode == 0, cancelled.stderr
    assert "1 waiting job(s) cancelled, 0 running job(s) told to stop." in cancelled.stdout
    assert [job["id"] for job in _page(app)["jobs"]] == [ids[1]]  # type: ignore[index]
    gone = _page(app, "--state", "cancelled")["jobs"]
    assert [(job["id"], job["error"]) for job in gone] == [  # type: ignore[index]
        (ids[0], "cancelled before it started")
    ]
    neither = app.kashq("queue:cancel")
    assert neither.returncode == 2 and "give job ids" in neither.stderr
