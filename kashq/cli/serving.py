"""What the commands that serve HTTP share: the ``--port`` check, the listening socket,
and ending quietly on SIGTERM/SIGINT (``webhooks:serve``, ``dashboard``)."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kashq.cli import output
from kashq.imports import ImportFailed, import_job_modules


def import_or_fail(modules: list[str]) -> None:
    """Import the ``--import`` modules; a failure is the user's traceback and one line."""
    try:
        import_job_modules(modules)
    except ImportFailed as exc:
        raise output.import_failed(exc) from None


def port_number_of(value: str) -> int:
    """The ``--port`` number, or a one-line usage error."""
    text = value.strip()
    port = int(text) if text.isascii() and text.isdigit() else -1
    if not 0 <= port <= 65535:
        raise output.fail(f"--port must be a port number (0-65535), got {value!r}", code=2)
    return port


@contextmanager
def listening(host: str, port: int, backlog: int = 2048) -> Iterator[socket.socket]:
    """A listening socket on ``host:port``, or one error line saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise output.fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise output.fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        yield sock
    finally:
        sock.close()


@contextmanager
def signals_end_quietly() -> Iterator[None]:
    """Let SIGTERM/SIGINT end the server with exit code 0.

    uvicorn catches both to shut down gracefully, then raises them again once
    it has: handlers that do nothing make that second delivery harmless.
    """

    def ignore(signum: int, frame: Any) -> None:
        return None

    previous = {sig: signal.signal(sig, ignore) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
