"""Every screen and action of the dashboard on every connection, without a server.

Requests go straight to :class:`kashq.dashboard.core.Dashboard`; the browser tests
(``tests/e2e/test_dashboard_browser.py``) drive the same screens through a real
``kashq dashboard`` and real workers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kashq import FailJob, Job, QueueManager, batch
from kashq.dashboard.core import Dashboard
from kashq.supervisor.control import STATS_PREFIX
from kashq.testing import FakeClock
from tests.support.dashboard import get, note, post, text
from tests.support.managers import KINDS, current_manager
from tests.support.waiting import eventually


class Greet(Job):
    name: str
    queue = "mail"

    def handle(self) -> str:
        return f"hello {self.name}"


class Charge(Job):
    cents: int
    queue = "billing"
    tries = 1

    def handle(self) -> None:
        raise FailJob(f"card declined for {self.cents} cents")


GREET, CHARGE = f"{__name__}.Greet", f"{__name__}.Charge"


@pytest.fixture(params=KINDS)
def manager(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueManager]:
    clock = FakeClock(start=time.time())
    with current_manager(request, request.param, tmp_path, clock, keep_completed=3600) as made:
        yield made


def drain(manager: QueueManager, *queues: str) -> None:
    manager.worker(queues=queues, stop_when_empty=True, sleep_s=0.05).run(1)
    recorder = manager.history_recorder()
    assert recorder is not None and recorder.flush()
    manager.write_records()


def test_every_screen_shows_what_the_stores_hold(manager: QueueManager) -> None:
    done = Greet(name="Ada").with_tags("user:1").dispatch()
    Charge(cents=250).dispatch()
    drain(manager, "mail", "billing")
    waiting = Greet(name="Bob").with_tags("user:2").dispatch()
    later = Greet(name="Cy").dispatch_after(600)
    made = batch([Greet(name=f"b{i}") for i in range(3)]).name("greetings").dispatch()
    dash = Dashboard(manager)

    home = text(get(dash, "/"))
    assert "mail" in home and "billing" in home and "jobs per minute" in home
    assert "No workers are running" in home
    queues = text(get(dash, "/queues?range=day"))
    assert 'data-queue="mail"' in queues and "billing: jobs per minute" in queues
    ready = text(get(dash, "/jobs?state=ready&queue=mail"))
    assert waiting in ready and later not in ready
    assert later in text(get(dash, "/jobs?state=delayed"))
    assert waiting in text(get(dash, "/jobs?state=ready&tag=user:2"))
    assert done in text(get(dash, "/jobs?state=completed"))
    failed = text(get(dash, "/failed"))
    assert "card declined for 250 cents" in failed and CHARGE in failed

    detail = text(get(dash, f"/jobs/{done}"))
    assert "completed" in detail and "&#34;hello Ada&#34;" in detail  # the result, escaped
    assert "started" in detail and "completed" in detail  # the timeline
    charge_id = manager.failed_store().all()[0].uuid
    failed_detail = text(get(dash, f"/jobs/{charge_id}"))
    assert "card declined" in failed_detail and "Traceback" in failed_detail

    batches = text(get(dash, "/batches"))
    assert "greetings" in batches and made.id in batches
    one = text(get(dash, f"/batches/{made.id}"))
    assert "Pending" in one and made.job_ids()[0] in one

    metrics = text(get(dash, "/metrics?by=type"))
    assert GREET in metrics and CHARGE in metrics
    assert get(dash, "/schedules").status == 200
    assert get(dash, "/jobs/not-a-job").status == 404
    assert get(dash, "/metrics?range=year").status == 400


def test_live_workers_are_listed_from_their_supervisors_reports(manager: QueueManager) -> None:
    record = {
        "host": "web-1", "pid": 4242, "queues": ["mail"], "workers": 1, "processed": 7,
        "failed": 1, "started_at": time.time() - 60, "at": time.time(),
        "processes": [{"pid": 4243, "state": "running", "processed": 7, "failed": 1,
                       "rss_bytes": 50 << 20, "started_at": time.time() - 59,
                       "job": {"id": "j-1", "type": "app.Greet", "queue": "mail",
                               "since": time.time() - 2}}],
    }  # fmt: skip
    driver = manager.connection()
    driver.put_control(f"{STATS_PREFIX}web-1:4242:abc", json.dumps(record), 10)
    stale = {**record, "host": "gone", "at": time.time() - 3600}
    driver.put_control(f"{STATS_PREFIX}gone:1:abc", json.dumps(stale), 10)
    page = text(get(Dashboard(manager), "/"))
    assert "web-1" in page and "4243" in page and "app.Greet" in page and "50.0 MB" in page
    assert "gone" not in page


def test_queue_and_job_actions_do_what_their_commands_do(manager: QueueManager) -> None:
    dash = Dashboard(manager)
    assert "paused" in note(post(dash, "pause", {"queue": "mail", "next": "/queues"}))
    assert "mail" in manager.paused()
    assert "continued" in note(post(dash, "resume", {"queue": "mail"}))
    assert manager.paused() == {}

    waiting = Greet(name="Bob").dispatch()
    assert "cancelled" in note(post(dash, "cancel", {"id": waiting}))
    assert manager.connection().find(waiting) is None

    later = Greet(name="Cy").dispatch_after(600)
    assert "ready now" in note(post(dash, "run-now", {"id": later}))
    found = manager.connection().find(later)
    assert found is not None and found.state == "ready"
    assert note(post(dash, "run-now", {"id": later})).startswith("error: ")

    Charge(cents=1).dispatch()
    drain(manager, "billing")
    (failed,) = manager.failed_store().all()
    assert "pushed back" in note(post(dash, "retry", {"id": failed.uuid}))
    assert manager.failed_store().count() == 0
    assert manager.connection().find(failed.uuid) is not None


def test_failed_jobs_are_retried_or_forgotten_by_selection_or_by_filter(
    manager: QueueManager,
) -> None:
    for cents in range(6):
        Charge(cents=cents).dispatch()
    Charge(cents=99).on_queue("refunds").dispatch()
    drain(manager, "billing", "refunds")
    store = manager.failed_store()
    assert store.count() == 7
    dash = Dashboard(manager)
    page = text(get(dash, "/failed?queue=billing&error=CENTS"))  # any case
    assert page.count("data-failed-id=") == 6

    picked = [str(job.id) for job in store.all(queue="billing")[:2]]
    assert "2 failed job(s) forgotten" in note(post(dash, "failed-forget", {"ids": picked}))
    assert store.count() == 5
    assert note(post(dash, "failed-retry", {"ids": []})).startswith("error: select")

    started = note(post(dash, "failed-retry", {"all": "1", "queue": "billing", "error": "cents"}))
    assert "retry of 4 failed job(s) started" in started
    assert eventually(lambda: not dash.operations.running(), 30)
    (op,) = dash.operations.recent()
    assert (op.done, op.errors) == (4, 0)
    assert [job.queue for job in store.all()] == ["refunds"]  # the filter left it alone
    assert manager.connection().sizes(["billing"])["billing"].ready == 4

    note(post(dash, "failed-forget", {"all": "1", "queue": "refunds"}))
    assert eventually(lambda: not dash.operations.running(), 30)
    assert store.count() == 0


def test_a_batch_is_cancelled_and_its_failures_retried(manager: QueueManager) -> None:
    dash = Dashboard(manager)
    failing = batch([Charge(cents=1), Greet(name="a")]).allow_failures().dispatch()
    drain(manager, "billing", "mail")
    assert "1 failed job(s) of batch" in note(post(dash, "batch-retry", {"id": failing.id}))
    assert manager.failed_store().count() == 0
    waiting = batch([Greet(name="x"), Greet(name="y")]).dispatch()
    assert "cancelled" in note(post(dash, "batch-cancel", {"id": waiting.id}))
    assert waiting.fresh().cancelled
    assert note(post(dash, "batch-cancel", {"id": "nope"})).startswith("error: no batch")
