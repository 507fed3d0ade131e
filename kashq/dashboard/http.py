"""The dashboard's own request and response, apart from any server or framework.

The ASGI adapter (:mod:`kashq.dashboard.asgi`) and the WSGI one
(:mod:`kashq.dashboard.wsgi`) turn what their server hands them into a
:class:`Request` and send back the :class:`Response` the dashboard returns,
so every screen and action is written once and runs under uvicorn, FastAPI,
Starlette, Flask or Django alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote

BODY_MAX = 1 << 20
"""The largest request body read (a form of a few thousand job ids fits)."""


@dataclass(frozen=True)
class Request:
    """One HTTP request, as the dashboard sees it.

    ``path`` is the path inside the dashboard (``/failed``), ``base`` where the
    dashboard is mounted (``/admin/queues``; ``""`` at the root), ``client``
    the peer's address. ``raw`` is what the server handed over (the ASGI scope
    or the WSGI environ), for an ``authorize`` hook that wants more.
    """

    method: str
    path: str
    base: str = ""
    query_string: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    client: str | None = None
    scheme: str = "http"
    raw: Any = None

    def query(self) -> dict[str, list[str]]:
        """The query string's fields, each with all its values."""
        return parse_qs(self.query_string, keep_blank_values=True)

    def arg(self, name: str, default: str = "") -> str:
        """The first value of query field ``name``, stripped; ``default`` if absent."""
        values = self.query().get(name)
        return values[0].strip() if values else default

    def form(self) -> dict[str, list[str]]:
        """An ``application/x-www-form-urlencoded`` body's fields (empty for any other body)."""
        kind = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            return {}
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)

    def cookies(self) -> dict[str, str]:
        """The request's cookies (split by hand: one odd cookie of the host app, with a space
        or a quote in it, must not hide the dashboard's)."""
        found: dict[str, str] = {}
        for pair in self.headers.get("cookie", "").split(";"):
            name, sep, value = pair.strip().partition("=")
            if sep and name and name not in found:
                found[name] = value.strip().strip('"')
        return found

    def url(self, path: str) -> str:
        """``path`` inside the dashboard as a path on this server."""
        return self.base + path


@dataclass
class Response:
    """What the dashboard answers: a status, headers and a whole body."""

    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def html(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode(), [("content-type", "text/html; charset=utf-8")])

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode(), [("content-type", "text/plain; charset=utf-8")])

    @classmethod
    def redirect(cls, location: str) -> Response:
        """A 303 to ``location`` (after a POST: the browser GETs it)."""
        return cls(303, b"", [("location", quote(location, safe="/?&=%#:+,;@!$'()*~"))])

    def header(self, name: str, value: str) -> Response:
        self.headers.append((name, value))
        return self


REASONS = {
    200: "OK", 303: "See Other", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
    413: "Content Too Large", 500: "Internal Server Error", 503: "Service Unavailable",
}  # fmt: skip
