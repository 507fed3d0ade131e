from django.db import models


class Report(models.Model):
    """A sum a job computes: 0 + 1 + ... + n."""

    n = models.PositiveIntegerField()
    total = models.BigIntegerField(null=True)
    job_id = models.CharField(max_length=36, blank=True)
