"""kashq's dashboard inside the Django admin: "kashq > Dashboard", for staff.

The admin's own login guards it; staff see every screen, and those with the
``kashq.operate_dashboard`` permission (superusers have it) may act: retry,
forget, cancel, pause. The dashboard keeps its own CSRF check (a cookie and a
form field, and the request's ``Origin``), so Django's is not applied to it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path, re_path
from django.views.decorators.csrf import csrf_exempt

from kashq.contrib.django.models import Dashboard
from kashq.dashboard.http import Request
from kashq.manager import QueueManager
from kashq.manager import manager as current_manager

PERMISSION = "kashq.operate_dashboard"


@admin.register(Dashboard)
class DashboardAdmin(admin.ModelAdmin):
    """The dashboard's screens, served under ``<admin>/kashq/dashboard/``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._board: tuple[QueueManager, Any] | None = None  # the test runner makes new ones

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(csrf_exempt(self.dashboard_view))
        info = self.opts.app_label, self.opts.model_name
        return [
            path("", view, {"rest": ""}, name="{}_{}_changelist".format(*info)),
            re_path(r"^(?P<rest>.+)$", view, name="{}_{}_screen".format(*info)),
        ]

    def dashboard_view(self, request: HttpRequest, rest: str) -> HttpResponse:
        """One request to the dashboard, answered through Django."""
        if not self.has_view_permission(request):  # admin_view let a non-staff user in?
            return HttpResponse("forbidden", status=403, content_type="text/plain")
        base = request.path[: len(request.path) - len(rest)].rstrip("/")
        answer = self._dashboard(current_manager())(
            Request(
                method=request.method or "GET", path="/" + rest, base=base,
                query_string=request.META.get("QUERY_STRING", ""),
                headers={name.lower(): value for name, value in request.headers.items()},
                body=request.body, client=request.META.get("REMOTE_ADDR"),
                scheme=request.scheme or "http", raw=request,
            )
        )  # fmt: skip
        response = HttpResponse(answer.body, status=answer.status)
        for name, value in answer.headers:
            if name.lower() == "set-cookie":
                response.cookies.load(value)
            else:
                response[name] = value
        return response

    def _dashboard(self, manager: QueueManager) -> Any:
        """The dashboard of ``manager`` (made again when the current manager changed)."""
        if self._board is None or self._board[0] is not manager:
            from kashq.dashboard import dashboard

            self._board = (manager, dashboard(manager, authorize=_access))
        return self._board[1]


def _access(request: Request) -> str:
    """Staff read; the ``kashq.operate_dashboard`` permission acts."""
    user = request.raw.user
    return "write" if user.has_perm(PERMISSION) else "read"
