"""The dashboard: one object answering every request, whatever serves it.

:class:`Dashboard` routes a :class:`~kashq.dashboard.http.Request` to a screen
(a GET rendering a template) or an action (a POST that changes something,
then redirects back with a note: the page never re-sends it on reload). A GET
with the ``X-Kashq-Live`` header answers only the screen's ``<main>``: the
page's script fetches it every ``refresh_s`` seconds while the tab is visible,
so an open screen stays current without reloading.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from kashq.dashboard import actions, screens
from kashq.dashboard.data import Board
from kashq.dashboard.format import FILTERS
from kashq.dashboard.http import Request, Response
from kashq.dashboard.operations import Operations
from kashq.dashboard.security import (
    CSRF_FIELD,
    DashboardOptions,
    Guard,
    bearer,
    csrf_cookie,
    csrf_refusal,
    csrf_token,
    secure_headers,
)
from kashq.exceptions import KashqError
from kashq.manager import QueueManager

log = logging.getLogger(__name__)

Screen = Callable[..., "screens.Page | Response | None"]
Action = Callable[..., str]
_STATIC = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
_ID = rf"(?P<id>{screens.ID_TEXT.pattern})"


class Dashboard:
    """Every screen and action of the dashboard of one connection of ``manager``."""

    def __init__(
        self,
        manager: QueueManager,
        *,
        connection: str | None = None,
        options: DashboardOptions | None = None,
    ) -> None:
        self.board = Board(manager, connection or manager.settings.connection)
        self.options = options or DashboardOptions()
        self.guard = Guard(self.options)
        self.operations = Operations()
        self.env = Environment(
            loader=PackageLoader("kashq.dashboard"), autoescape=select_autoescape(default=True)
        )
        self.env.filters.update(FILTERS)
        routes: tuple[tuple[str, Screen], ...] = (
            (r"/", screens.overview),
            (r"/queues", screens.queues),
            (r"/jobs", screens.jobs),
            (rf"/jobs/{_ID}", screens.job),
            (r"/failed", screens.failed),
            (r"/batches", screens.batches),
            (rf"/batches/{_ID}", screens.batch),
            (r"/schedules", screens.schedules),
            (r"/metrics", screens.metrics),
        )
        self._screens = [(re.compile(pattern), screen) for pattern, screen in routes]
        self._actions: dict[str, Action] = {
            "pause": actions.pause,
            "resume": actions.resume,
            "cancel": actions.cancel,
            "run-now": actions.run_now,
            "retry": actions.retry,
            "failed-retry": actions.failed_retry,
            "failed-forget": actions.failed_forget,
            "batch-cancel": actions.batch_cancel,
            "batch-retry": actions.batch_retry,
        }

    def __call__(self, request: Request) -> Response:
        """Answer ``request``; never raises (a failure is a page saying what went wrong)."""
        try:
            response = self._answer(request)
        except Exception:
            log.exception("dashboard request %s %s failed", request.method, request.path)
            response = Response.text("the dashboard failed on this request; see its log", 500)
        return secure_headers(response, page=not request.path.startswith("/static/"))

    def _answer(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        if path.startswith("/static/"):
            return _static(path.removeprefix("/static/"))
        if path == "/login":
            return self._login(request)
        return self._guarded(request, path)

    def _guarded(self, request: Request, path: str) -> Response:
        access = self.guard.access(request)
        if isinstance(access, Response):
            return access
        if path.startswith("/actions/"):
            if request.method != "POST":
                return Response.text("actions are POSTs", 405).header("allow", "POST")
            return self._act(request, path.removeprefix("/actions/"), access)
        if request.method not in ("GET", "HEAD"):
            return Response.text("method not allowed", 405).header("allow", "GET")
        for pattern, screen in self._screens:
            match = pattern.fullmatch(path)
            if match is not None:
                return self._render(request, screen, match.groupdict(), access)
        return self._page(request, "missing.html", {"what": path}, access, status=404)

    # -- screens ------------------------------------------------------------------
    def _render(
        self, request: Request, screen: Screen, params: dict[str, str], access: str
    ) -> Response:
        try:
            page = screen(self, request, **params)
        except ValueError as exc:  # a bad filter or cursor in the query string
            return self._page(request, "missing.html", {"what": str(exc)}, access, status=400)
        except KashqError as exc:  # the connection or a store is down
            down = {"error": str(exc)}
            return self._page(request, "down.html", down, access, status=503, live=True)
        if page is None:
            return self._page(request, "missing.html", {"what": request.path}, access, 404)
        if isinstance(page, Response):
            return page
        return self._page(request, page.template, page.context, access, live=page.live)

    def _page(
        self, request: Request, template: str, context: dict[str, Any], access: str,
        status: int = 200, *, live: bool = False,
    ) -> Response:  # fmt: skip
        token, new = csrf_token(request)
        fragment = request.headers.get("x-kashq-live") == "1"
        html = self.env.get_template(template).render(
            **context, base=request.base, path=request.path, query=request.query_string,
            can_act=access == "write", csrf_field=CSRF_FIELD, csrf=token,
            refresh_s=self.options.refresh_s if live else 0, fragment=fragment,
            note=request.arg("note"), error=request.arg("error"),
            connection=self.board.connection, operations=self.operations.recent(),
        )  # fmt: skip
        response = Response.html(html, status)
        if new:
            response.header("set-cookie", csrf_cookie(request, token))
        return response

    # -- actions ------------------------------------------------------------------
    def _act(self, request: Request, name: str, access: str) -> Response:
        action = self._actions.get(name)
        if action is None:
            return Response.text(f"no action {name!r}", 404)
        form = request.form()
        refused = None if bearer(request) else csrf_refusal(request, form)
        if refused is not None:
            return Response.text(refused, 403)
        if access != "write":
            return Response.text("this dashboard is read-only", 403)
        back = _back(request, form)
        fields = {key: values for key, values in form.items() if key != CSRF_FIELD}
        try:
            note = action(self, fields)
        except (KashqError, ValueError) as exc:
            return Response.redirect(_with(request.url(back), "error", str(exc)))
        return Response.redirect(_with(request.url(back), "note", note))

    def _login(self, request: Request) -> Response:
        if self.options.token is None:
            return Response.redirect(request.url("/"))
        failed = False
        if request.method == "POST":
            form = request.form()
            if csrf_refusal(request, form) is None:
                done = self.guard.login(request, (form.get("token") or [""])[0])
                if done is not None:
                    return done
            failed = True
        return self._page(request, "login.html", {"failed": failed}, "none", 401 if failed else 200)


def _static(name: str) -> Response:
    kind = _STATIC.get(name)
    if kind is None:
        return Response.text("not found", 404)
    body = resources.files("kashq.dashboard").joinpath("static").joinpath(name).read_bytes()
    return Response(200, body, [("content-type", kind), ("cache-control", "max-age=300")])


def _back(request: Request, form: dict[str, list[str]]) -> str:
    """Where an action returns to: the form's ``next`` when it is a path of the dashboard."""
    target = (form.get("next") or ["/"])[0]
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return re.sub(r"([?&])(note|error)=[^&]*&?", r"\1", target).rstrip("?&")


def _with(url: str, key: str, value: str) -> str:
    from urllib.parse import quote

    return f"{url}{'&' if '?' in url else '?'}{key}={quote(value[:300], safe='')}"
