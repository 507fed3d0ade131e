"""A ``queue:work`` worker process SIGKILLed while it holds a prefetched batch (Redis).

Its completed jobs whose acknowledgements were still to ride on its next reserve,
and the jobs waiting behind the one it ran, are recorded in its supervisor's slot:
the process started in its place acknowledges the first and gives the others back
at once, so none runs twice and none waits for its lease.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kashq.drivers.redis import RedisDriver
from tests.e2e.work_app import App, make_app
from tests.support.services import REDIS_URL

LEASE_S = 120  # far longer than the test: a job left to its lease would fail it


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    with make_app(tmp_path, "redis") as made:
        made.env["KASHQ_RETRY_AFTER"] = str(LEASE_S)
        yield made


def test_a_killed_prefetching_worker_leaves_no_job_to_run_twice_or_to_wait_for_its_lease(
    app: App,
) -> None:
    ids = app.dispatch(
        "[j.Record(n=i) for i in range(30)] + [j.DiesOnce()]"
        " + [j.Record(n=i) for i in range(30, 60)]"
    )
    driver = RedisDriver(REDIS_URL, prefix=app.env["KASHQ_PREFIX"])
    worker = app.start_work("--json", "-v", "--prefetch", "8")
    try:
        worker.wait_for('"worker.died"')
        app.wait_for_ledger(len(ids), timeout_s=LEASE_S / 2)
        deadline = time.monotonic() + LEASE_S / 2
        while driver.sizes(["default"])["default"].total:  # completed jobs left unacknowledged?
            assert time.monotonic() < deadline, driver.sizes(["default"])
            time.sleep(0.1)
    finally:
        worker.kill()
        driver.close()

    ledger = app.ledger()
    assert set(ledger) == set(ids)
    twice = [job_id for job_id, count in ledger.items() if count > 1]
    assert not twice, f"{len(twice)} completed job(s) ran again"
