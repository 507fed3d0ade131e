from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

import kashq
from reports.jobs import SumReport
from reports.models import Report


@csrf_exempt  # an API endpoint of the example: no browser form posts here
@require_POST
def start_report(request: HttpRequest) -> JsonResponse:
    try:
        n = int(request.GET["n"])
    except (KeyError, ValueError):
        return JsonResponse({"error": "give ?n=<a whole number>"}, status=400)
    with transaction.atomic():
        report = Report.objects.create(n=n)
        # Sent when the block commits: the worker always finds the report's row.
        handle = SumReport(report_id=report.pk).dispatch()
        report.job_id = handle.id
        report.save(update_fields=["job_id"])
    return JsonResponse({"id": report.pk, "job": report.job_id}, status=202)


@require_GET
def report(request: HttpRequest, report_id: int) -> JsonResponse:
    report = get_object_or_404(Report, pk=report_id)
    state = kashq.get_job(report.job_id).status().state
    return JsonResponse({"n": report.n, "total": report.total, "state": state})
