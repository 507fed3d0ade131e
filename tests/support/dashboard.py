"""Driving the dashboard without a server: requests in, responses out (and a CSRF token)."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from kashq.dashboard.core import Dashboard
from kashq.dashboard.http import Request, Response

CSRF = "c" * 64  # what the browser's kashq_csrf cookie holds in these tests
HOME = "127.0.0.1"
HOST = "localhost:8000"  # what a browser on this machine sends


def get(dash: Dashboard, path: str, *, client: str = HOME, **headers: str) -> Response:
    """GET ``path`` (with its query string) from a loopback client."""
    bare, _, query = path.partition("?")
    sent = {"host": HOST, "cookie": f"kashq_csrf={CSRF}", **headers}
    return dash(Request("GET", bare, query_string=query, headers=sent, client=client))


def post(
    dash: Dashboard, action: str, fields: dict[str, str | list[str]] | None = None, *,
    csrf: str | None = CSRF, client: str = HOME, **headers: str,
) -> Response:  # fmt: skip
    """POST the form ``fields`` to ``/actions/<action>`` (or to a path starting with /)."""
    form = dict(fields or {})
    if csrf is not None:
        form["csrf"] = csrf
    body = urlencode(form, doseq=True).encode()
    sent = {
        "host": HOST, "cookie": f"kashq_csrf={CSRF}",
        "content-type": "application/x-www-form-urlencoded", **headers,
    }  # fmt: skip
    path = action if action.startswith("/") else f"/actions/{action}"
    return dash(Request("POST", path, headers=sent, body=body, client=client))


def text(response: Response) -> str:
    return response.body.decode()


def note(response: Response) -> str:
    """The note an action redirected back with (``note=`` or ``error=``), decoded."""
    from urllib.parse import unquote

    location = dict(response.headers)["location"]
    found = re.search(r"[?&](note|error)=([^&]*)", location)
    assert found is not None, location
    return f"{found.group(1)}: {unquote(found.group(2))}"
