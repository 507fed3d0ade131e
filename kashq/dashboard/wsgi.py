"""The dashboard as a WSGI app: for Flask (``DispatcherMiddleware``), Django, gunicorn."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from kashq.dashboard.core import Dashboard
from kashq.dashboard.http import BODY_MAX, REASONS, Request, Response

StartResponse = Callable[..., Any]


class DashboardWSGI:
    """A WSGI app answering with ``dashboard``."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > BODY_MAX:
            response = Response.text("request body too large", 413)
        else:
            body = environ["wsgi.input"].read(length) if length > 0 else b""
            response = self.dashboard(_request(environ, body))
        reason = REASONS.get(response.status, "")
        start_response(f"{response.status} {reason}".strip(), response.headers)
        if environ.get("REQUEST_METHOD") == "HEAD":
            return [b""]
        return [response.body]


def _request(environ: dict[str, Any], body: bytes) -> Request:
    headers = {
        key[5:].replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    path = environ.get("PATH_INFO", "/") or "/"
    raw_path = path.encode("latin-1").decode("utf-8", "replace")  # PEP 3333 bytes-as-latin-1
    return Request(
        method=environ.get("REQUEST_METHOD", "GET"), path=raw_path,
        base=(environ.get("SCRIPT_NAME", "") or "").rstrip("/"),
        query_string=environ.get("QUERY_STRING", ""), headers=headers, body=body,
        client=environ.get("REMOTE_ADDR"), scheme=environ.get("wsgi.url_scheme", "http"),
        raw=environ,
    )  # fmt: skip
