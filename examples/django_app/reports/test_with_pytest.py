"""The same checks as tests.py, with pytest-django and kashq's fixtures: ``pytest``."""

import pytest

from reports.jobs import SumReport
from reports.models import Report

pytestmark = pytest.mark.django_db


def test_the_view_dispatches_a_sum(client, kashq_fake):
    client.post("/reports?n=4")
    kashq_fake.assert_dispatched(SumReport, lambda job: job.report_id > 0)


def test_the_worker_stores_the_total(client, kashq_worker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post("/reports?n=10").json()
    stats = kashq_worker.drain("reports")
    assert stats.completed == 1
    assert Report.objects.get(pk=created["id"]).total == 55
