"""Found by kashq at start-up (each app's ``jobs`` module), in the server and in workers."""

from kashq import Job
from reports.models import Report


class SumReport(Job):
    """Adds 0..n up and stores the total on the report: the slow part of a request."""

    report_id: int

    def handle(self) -> int:
        report = Report.objects.get(pk=self.report_id)
        report.total = sum(range(report.n + 1))
        report.save(update_fields=["total"])
        return report.total
