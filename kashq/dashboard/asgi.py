"""The dashboard as an ASGI app: for uvicorn, FastAPI, Starlette (``app.mount("/queues", ...)``).

The dashboard's reads and writes block (Redis and SQL clients), so each
request runs on a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio

from kashq.asgi import Receive, Scope, Send, lifespan, respond
from kashq.dashboard.core import Dashboard
from kashq.dashboard.http import BODY_MAX, Request, Response


class DashboardASGI:
    """An ASGI app answering with ``dashboard``."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _body(receive)
        if body is None:
            response = Response.text("request body too large", 413)
        else:
            response = await asyncio.to_thread(self.dashboard, _request(scope, body))
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        if scope.get("method") == "HEAD":  # the GET's headers, its length included; no body
            length = (b"content-length", str(len(response.body)).encode())
            await send({"type": "http.response.start", "status": response.status,
                        "headers": [*headers, length]})  # fmt: skip
            await send({"type": "http.response.body", "body": b""})
        else:
            await respond(send, response.status, response.body, headers)


async def _body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > BODY_MAX:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _request(scope: Scope, body: bytes) -> Request:
    root = scope.get("root_path", "") or ""
    path = scope.get("path", "/") or "/"
    if root and path.startswith(root):  # servers differ on whether path includes root_path
        path = path[len(root) :] or "/"
    headers: dict[str, str] = {}
    for key, value in scope["headers"]:
        name, text = key.decode("latin-1").lower(), value.decode("latin-1")
        joiner = "; " if name == "cookie" else ", "  # repeated headers are one list
        headers[name] = f"{headers[name]}{joiner}{text}" if name in headers else text
    client = scope.get("client")
    return Request(
        method=scope.get("method", "GET"), path=path, base=root.rstrip("/"),
        query_string=scope.get("query_string", b"").decode("latin-1"), headers=headers,
        body=body, client=client[0] if client else None, scheme=scope.get("scheme", "http"),
        raw=scope,
    )  # fmt: skip
