"""The webhook handler as an ASGI application, and mounting it beside another.

``handler.app`` routes on the path below its mount point: Starlette's
``Mount`` and ``uvicorn --root-path`` say where that is in ``root_path``, which
is taken off ``path`` when ``path`` starts with it. The body is read in chunks
and reading stops as soon as it passes the limit; the blocking part (checking,
queueing) runs in the event loop's thread pool.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from kashq.asgi import App, Receive, Scope, Send, lifespan
from kashq.asgi import respond as send_response
from kashq.webhooks.handler import NOT_FOUND, Response, Route, below, mount_prefix

if TYPE_CHECKING:
    from kashq.webhooks.handler import WebhookHandler


class _Disconnected(Exception):
    """The client went away before sending the whole body."""


def route_path(scope: Scope) -> str:
    """The request path below the app's mount point (``root_path``)."""
    path: str = scope.get("path") or "/"
    root: str = scope.get("root_path") or ""
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


def headers_of(scope: Scope) -> dict[str, str]:
    """The request headers by lower-case name, repeated ones joined with ``", "``."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers") or ():
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


async def respond(send: Send, response: Response) -> None:
    """Send ``response`` as JSON."""
    headers = [
        (b"content-type", b"application/json"),
        *((name.encode(), value.encode()) for name, value in response.headers),
    ]
    await send_response(send, response.status, json.dumps(response.body).encode(), headers)


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes ``limit`` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected()
        chunk = message.get("body") or b""
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class ASGIApp:
    """``handler.app``: serves a :class:`~kashq.webhooks.handler.WebhookHandler` over ASGI."""

    def __init__(self, handler: WebhookHandler) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1000})
            return
        if scope["type"] != "http":
            return
        found = self.handler.route(scope["method"], route_path(scope))
        if isinstance(found, Response):
            await respond(send, found)
            return
        await self._post(found, scope, receive, send)

    async def _post(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.handler
        headers = headers_of(scope)
        early = handler.check_length(headers.get("content-length"))
        if early is not None:
            await respond(send, early)
            return
        try:
            body = await read_body(receive, handler.max_body_bytes)
        except _Disconnected:
            return  # nobody to answer, nothing queued
        if body is None:
            await respond(send, handler.too_large())
            return
        loop = asyncio.get_running_loop()
        response = await loop.run_in_executor(None, handler.accept, route, body, headers)
        await respond(send, response)


def mount_asgi(prefix: str, app: App, fallback: App | None = None) -> App:
    """An ASGI app serving ``app`` under ``prefix`` and everything else with ``fallback``.

    For frameworks without a mount of their own (Django's ``asgi.py``);
    without ``fallback`` other paths get a JSON 404. Lifespan events go to
    ``fallback`` if there is one.
    """
    prefix = mount_prefix(prefix)

    async def mounted(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path = route_path(scope)
            if below(prefix, path) is not None:
                root = scope.get("root_path") or ""
                inner = {**scope, "root_path": root + prefix, "path": root + path}
                await app(inner, receive, send)
                return
        if fallback is not None:
            await fallback(scope, receive, send)
        elif scope["type"] == "lifespan":
            await lifespan(receive, send)
        elif scope["type"] == "http":
            await respond(send, NOT_FOUND)

    return mounted
