"""The dashboard in a real browser (Playwright on Debian's chromium), against a real
``kashq dashboard`` and real ``kashq queue:work`` processes, on SQLite, PostgreSQL, Redis
and sharded Redis.

One walk per connection: every screen opens, live counters move without a reload,
a failed job is retried and leaves the list, the failures matching a filter are
retried in bulk, a running job is cancelled, a paused queue is left alone by the
workers until it is continued. A screenshot of every screen lands in
``artifacts/dashboard/`` (``KASHQ_TEST_ARTIFACTS`` moves it); the docs' pictures
are the SQLite ones.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.work_app import App, Worker, kashq_executable, make_app
from tests.support.databases import postgres_database
from tests.support.services import free_port, unavailable

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("KASHQ_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("KASHQ_TEST_ARTIFACTS", ROOT / "artifacts")) / "dashboard"
WAIT_MS = 30_000
SCHEDULES = """
from kashq.scheduler import schedule
import e2e_jobs

schedule.cron("0 3 * * *", name="nightly-report").dispatch(e2e_jobs.Record(n=-1))
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright", "pip install playwright")
    if not Path(CHROMIUM).exists():
        unavailable("chromium", f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(params=["sqlite", "postgres", "redis", "sharded"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    kind = request.param
    with contextlib.ExitStack() as stack:
        made = stack.enter_context(make_app(tmp_path, "redis" if kind == "sharded" else kind))
        if kind == "postgres":
            url = stack.enter_context(postgres_database())
            made.env.update(KASHQ_CONNECTION="database", KASHQ_DATABASE_URL=url)
        if kind == "sharded":
            shards = request.getfixturevalue("redis_shards")
            made.env.update(KASHQ_CONNECTION="sharded", KASHQ_SHARDS=",".join(shards))
        made.env["KASHQ_KEEP_COMPLETED"] = "3600"
        (tmp_path / "e2e_schedules.py").write_text(SCHEDULES)
        assert made.kashq("migrate").returncode == 0
        made.kind = kind  # type: ignore[attr-defined]
        yield made


@contextlib.contextmanager
def dashboard(app: App) -> Iterator[str]:
    port = free_port()
    log = app.root / "dashboard.log"
    with log.open("w") as out:
        popen = subprocess.Popen(
            [kashq_executable(), "dashboard", "--port", str(port), "--refresh", "1",
             "--import", "e2e_jobs", "--import", "e2e_schedules"],
            cwd=app.root, env=app.env, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    server = Worker(popen, log)
    try:
        server.wait_for("listening on")
        yield f"http://127.0.0.1:{port}"
    finally:
        popen.terminate()
        assert popen.wait(timeout=15) == 0, server.output()


def test_every_screen_and_action_works_in_a_browser(app: App, browser: object) -> None:
    kind = app.kind  # type: ignore[attr-defined]
    shots = ARTIFACTS / kind
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    (app.root / "fail.flag").touch()
    flaky = app.dispatch("[j.Flaky() for _ in range(3)] + [j.Record(n=i) for i in range(5)]")[:3]
    batch_id = _batch(app)
    worker = app.start_work("--queue", "default,slow", "--workers", "2")
    page = browser.new_page(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
    page.on("dialog", lambda dialog: dialog.accept())
    try:
        with dashboard(app) as url:
            # Overview: the supervisor and its two workers, live.
            page.goto(url + "/")
            page.wait_for_selector("#workers td:has-text('idle'), #workers td:has-text('running')",
                                   timeout=WAIT_MS)  # fmt: skip
            app.wait_for_ledger(5 + 20)  # the Record jobs and the batch's
            _eventually(lambda: _failed_count(page, url) == 3)

            # Live counters move without a reload.
            page.goto(url + "/")
            before = page.inner_text("[data-figure=hour_done]")
            app.dispatch("[j.Record(n=100 + i) for i in range(4)]")
            page.wait_for_function(
                "before => document.querySelector('[data-figure=hour_done]').innerText !== before",
                arg=before, timeout=WAIT_MS,
            )  # fmt: skip
            page.screenshot(path=shots / "overview.png", full_page=True)

            # Failed: retry one, see it leave the list; then retry the rest by filter.
            (app.root / "fail.flag").unlink()
            page.goto(url + "/failed")
            page.screenshot(path=shots / "failed.png", full_page=True)
            first = page.locator("tr[data-failed-id]").first
            first.locator("button", has_text="Retry").click()
            page.wait_for_selector(".note:has-text('pushed back')")
            assert page.locator("tr[data-failed-id]").count() == 2
            page.fill("input[name=error]", "FAIL.FLAG")
            page.click("#failed-filter button[type=submit]")
            page.click("button[data-action=failed-retry]")
            page.wait_for_selector(".note:has-text('retry of 2 failed job(s) started')")
            _eventually(lambda: _failed_count(page, url) == 0)
            app.wait_for_ledger(5 + 20 + 4 + 3)
            assert all(app.ledger()[job_id] == 1 for job_id in flaky)

            # Jobs and one job's page: cancel a running job.
            (polite,) = app.dispatch("[j.Polite()]")
            _eventually(lambda: app.started()[polite] == 1)
            page.goto(url + "/jobs?state=running")
            page.wait_for_selector(f"a[href$='/jobs/{polite}']", timeout=WAIT_MS)
            page.screenshot(path=shots / "jobs.png", full_page=True)
            page.goto(f"{url}/jobs/{polite}")
            page.screenshot(path=shots / "job.png", full_page=True)
            page.click("button[data-action=cancel]")
            page.wait_for_selector(".note:has-text('told to stop')")
            page.wait_for_selector("h1 .state-cancelled", timeout=WAIT_MS)  # live, no reload

            # Queues: pause "slow", see the workers leave it, continue it.
            (held,) = app.dispatch("[j.Record(n=7).on_queue('slow')]")
            app.wait_for_ledger(5 + 20 + 4 + 3 + 1)
            page.goto(url + "/queues")  # "slow" is listed once its minute is written (live)
            page.click("tr[data-queue=slow] button[data-action=pause]")
            page.wait_for_selector("tr[data-queue=slow] .state-paused")
            time.sleep(1.5)  # workers see a pause within a second (control.md)
            (paused,) = app.dispatch("[j.Record(n=8).on_queue('slow')]")
            time.sleep(2.5)  # a worker polls much more often than this
            assert app.ledger()[paused] == 0
            page.reload()
            assert page.inner_text("tr[data-queue=slow] [data-figure=ready]") == "1"
            page.screenshot(path=shots / "queues.png", full_page=True)
            page.click("tr[data-queue=slow] button[data-action=resume]")
            _eventually(lambda: app.ledger()[paused] == 1)
            assert app.ledger()[held] == 1

            # Batches, a batch, schedules and metrics open and show what they hold.
            page.goto(url + "/batches")
            page.wait_for_selector(f"tr[data-batch='{batch_id}'] .state-finished", timeout=WAIT_MS)
            page.screenshot(path=shots / "batches.png", full_page=True)
            page.goto(f"{url}/batches/{batch_id}")
            assert "20 done" in page.inner_text("main")
            page.screenshot(path=shots / "batch.png", full_page=True)
            page.goto(url + "/schedules")
            assert "nightly-report" in page.inner_text("#schedules")
            page.screenshot(path=shots / "schedules.png", full_page=True)
            page.goto(url + "/metrics?by=type")
            _eventually(lambda: "e2e_jobs.Record" in _text(page, url + "/metrics?by=type"))
            page.screenshot(path=shots / "metrics.png", full_page=True)
    finally:
        page.close()
        worker.kill()


def _batch(app: App) -> str:
    code = (
        "import kashq, e2e_jobs as j\n"
        "jobs = [j.Record(n=1000 + i) for i in range(20)]\n"
        "print(kashq.batch(jobs).name('import').dispatch().id)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=app.root, env=app.env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _text(page: object, address: str) -> str:
    page.goto(address)  # type: ignore[attr-defined]
    return str(page.inner_text("main"))  # type: ignore[attr-defined]


def _failed_count(page: object, url: str) -> int:
    found = re.search(r"Failed jobs\s+([\d,]+)", _text(page, url + "/failed"))
    return int(found.group(1).replace(",", "")) if found else -1


def _eventually(check: object, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail("the dashboard never showed what was expected")
        time.sleep(0.3)
