"""Tiny real HTTP servers on 127.0.0.1 that record what they receive.

``http_server(status=200)`` answers every request with ``status``;
``hang_s`` makes it wait that long before answering (a hung endpoint; stopping
the server releases it at once). ``closed_url()`` is a URL on a port nobody
listens on (connection refused). ``uvicorn_serving(app)`` runs an ASGI app on
a real uvicorn, ``wsgi_serving(app)`` a WSGI app on werkzeug's threaded server.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.services import free_port


@dataclass(frozen=True)
class Recorded:
    """One request a server received (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RecordingServer:
    """A ThreadingHTTPServer on a free loopback port; see the module docstring."""

    def __init__(self, *, status: int = 200, hang_s: float = 0.0, answer: bytes = b"ok") -> None:
        self.status = status
        self.hang_s = hang_s
        self.answer = answer
        self.requests: list[Recorded] = []
        self._cond = threading.Condition()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                server._record(Recorded("POST", self.path, headers, body))
                if server.hang_s:
                    server._release.wait(server.hang_s)
                self.send_response(server.status)
                self.send_header("Content-Length", str(len(server.answer)))
                self.end_headers()
                self.wfile.write(server.answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        return Handler

    def _record(self, request: Recorded) -> None:
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[Recorded]:
        """The first ``count`` requests, waiting up to ``timeout_s`` for them to arrive."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} request(s) within {timeout_s}s, got {len(self.requests)}"
                    )
                self._cond.wait(left)
            return list(self.requests[:count])

    def start(self) -> RecordingServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@contextmanager
def http_server(*, status: int = 200, hang_s: float = 0.0) -> Iterator[RecordingServer]:
    """A running :class:`RecordingServer`, stopped afterwards."""
    server = RecordingServer(status=status, hang_s=hang_s).start()
    try:
        yield server
    finally:
        server.stop()


def closed_url(path: str = "/hook") -> str:
    """A URL on a loopback port with no listener: connecting is refused."""
    return f"http://127.0.0.1:{free_port()}{path}"


@contextmanager
def uvicorn_serving(app: Any, **config: Any) -> Iterator[str]:
    """ASGI ``app`` on a real uvicorn in a thread, on a free loopback port; yields its base URL.

    ``config`` goes to ``uvicorn.Config`` (lifespan off and quiet logs unless given).
    """
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    options = {"lifespan": "off", "log_level": "warning", "access_log": False, **config}
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def wsgi_serving(app: Any) -> Iterator[str]:
    """WSGI ``app`` on werkzeug's threaded server, on a free loopback port; yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
