"""The webhook handler as a WSGI application, and mounting it beside another.

``handler.wsgi_app`` routes on ``PATH_INFO``, the path below its mount point
(``SCRIPT_NAME``), as werkzeug's ``DispatcherMiddleware`` and Django set them.
The body is read in chunks up to the limit: by ``CONTENT_LENGTH`` when the
client declared one, else to the end of a chunked body the server has
terminated (``wsgi.input_terminated``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import IO, TYPE_CHECKING, Any

from kashq.webhooks.handler import NOT_FOUND, Response, below, mount_prefix

if TYPE_CHECKING:
    from kashq.webhooks.handler import WebhookHandler

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
App = Callable[[Environ, StartResponse], Iterable[bytes]]

_CHUNK = 64 * 1024


def headers_of(environ: Environ) -> dict[str, str]:
    """The request headers by lower-case name, from ``HTTP_*`` and the two CGI names."""
    headers = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = str(environ[key])
    return headers


def respond(start_response: StartResponse, response: Response) -> list[bytes]:
    """Start ``response`` and return its JSON body."""
    body = json.dumps(response.body).encode()
    status = f"{response.status} {HTTPStatus(response.status).phrase}"
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        *((name.title(), value) for name, value in response.headers),
    ]
    start_response(status, headers)
    return [body]


def read_body(environ: Environ, limit: int) -> bytes | None:
    """The body, or None as soon as it passes ``limit`` bytes."""
    stream: IO[bytes] = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        left = int(length)  # checked against the limit before reading
    elif environ.get("wsgi.input_terminated"):
        left = limit + 1
    else:
        return b""  # no length and no end marker: WSGI says there is no body
    chunks, size = [], 0
    while left > 0:
        chunk = stream.read(min(_CHUNK, left))
        if not chunk:
            break
        size += len(chunk)
        left -= len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class WSGIApp:
    """``handler.wsgi_app``: serves a :class:`~kashq.webhooks.handler.WebhookHandler` over WSGI."""

    def __init__(self, handler: WebhookHandler) -> None:
        self.handler = handler

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        handler = self.handler
        found = handler.route(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO") or "/")
        if isinstance(found, Response):
            return respond(start_response, found)
        early = handler.check_length(environ.get("CONTENT_LENGTH") or None)
        if early is not None:
            return respond(start_response, early)
        body = read_body(environ, handler.max_body_bytes)
        if body is None:
            return respond(start_response, handler.too_large())
        return respond(start_response, handler.accept(found, body, headers_of(environ)))


def mount_wsgi(prefix: str, app: App, fallback: App | None = None) -> App:
    """A WSGI app serving ``app`` under ``prefix`` and everything else with ``fallback``.

    For a Django ``wsgi.py`` (Flask has werkzeug's ``DispatcherMiddleware``);
    without ``fallback`` other paths get a JSON 404.
    """
    prefix = mount_prefix(prefix)

    def mounted(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        rest = below(prefix, environ.get("PATH_INFO") or "")
        if rest is not None:
            script_name = environ.get("SCRIPT_NAME", "") + prefix
            return app({**environ, "SCRIPT_NAME": script_name, "PATH_INFO": rest}, start_response)
        if fallback is not None:
            return fallback(environ, start_response)
        return respond(start_response, NOT_FOUND)

    return mounted
