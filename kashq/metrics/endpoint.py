"""The ``/metrics`` endpoint: one object that is both a WSGI and an ASGI application.

A WSGI server calls an application with two arguments (``environ,
start_response``), an ASGI server with three (``scope, receive, send``), so
:class:`MetricsEndpoint` tells them apart by arity. ``.wsgi`` and ``.asgi``
are the two applications on their own, for servers that inspect what they are
given (``uvicorn`` serving the endpoint as its top-level app wants ``.asgi``).
Both serve the Prometheus text format (OpenMetrics when the scraper asks for it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from kashq.asgi import App as ASGIApp
from kashq.asgi import Receive, Scope, Send, lifespan, respond

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class MetricsEndpoint:
    """Serves the metrics of ``registry``; mount it at ``/metrics`` as WSGI or ASGI.

    ``wsgi`` and ``asgi`` are plain functions (not methods), so servers that
    tell ASGI 3 apps by ``inspect.iscoroutinefunction`` recognise ``asgi``.
    """

    def __init__(self, registry: Collector) -> None:
        self.registry = registry
        self.wsgi: WSGIApp = make_wsgi_app(registry)
        self.asgi: ASGIApp = asgi_app(registry)

    def __call__(self, *args: Any) -> Any:
        """``(environ, start_response)``: WSGI; ``(scope, receive, send)``: ASGI."""
        if len(args) == 2:
            return self.wsgi(*args)
        if len(args) == 3:
            return self.asgi(*args)
        raise TypeError(
            "MetricsEndpoint is a WSGI app (environ, start_response) or an ASGI app "
            f"(scope, receive, send); called with {len(args)} arguments"
        )


def asgi_app(registry: Collector) -> ASGIApp:
    """An ASGI application serving ``registry``; collecting runs in a thread (it may do I/O)."""

    async def metrics_app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, b"text/plain", b"use GET\n")
            return
        accept = b",".join(v for k, v in scope.get("headers", ()) if k.lower() == b"accept")
        encode, content_type = choose_encoder(accept.decode("latin-1"))
        body = await asyncio.to_thread(encode, registry)
        await _respond(send, 200, content_type.encode("latin-1"), b"" if method == "HEAD" else body)

    return metrics_app


async def _respond(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    await respond(send, status, body, [(b"content-type", content_type)])
