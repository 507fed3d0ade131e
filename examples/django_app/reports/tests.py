"""The example's own tests, run by Django's test runner: ``python manage.py test``."""

from django.db import transaction
from django.test import TestCase

import kashq
from reports.jobs import SumReport
from reports.models import Report


class ReportTests(TestCase):
    def test_a_report_is_summed_by_its_job(self) -> None:
        with self.captureOnCommitCallbacks(execute=True) as sent:
            created = self.client.post("/reports?n=100").json()
        self.assertEqual(len(sent), 1)  # the job went out at the commit
        self.assertEqual(kashq.get_job(created["job"]).status().state, "queued")

        worker = kashq.manager().worker(queues=("reports",))
        while worker.run_next() is not None:
            pass
        kashq.manager().write_records()

        shown = self.client.get(f"/reports/{created['id']}").json()
        self.assertEqual(shown, {"n": 100, "total": 5050, "state": "completed"})

    def test_a_rolled_back_block_sends_nothing(self) -> None:
        with self.captureOnCommitCallbacks(execute=True) as sent:
            try:
                with transaction.atomic():
                    SumReport(report_id=Report.objects.create(n=3).pk).dispatch()
                    raise RuntimeError("the request failed")
            except RuntimeError:
                pass
        self.assertEqual(sent, [])
        self.assertIsNone(kashq.manager().worker(queues=("reports",)).run_next())
