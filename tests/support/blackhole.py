"""A TCP port that takes connections and never answers: a black-holed database server.

The kernel completes the handshake for connections waiting in the listen
backlog, so a client connects at once and then waits for a greeting that never
comes (what a hung server, or a firewall that drops packets after the SYN,
looks like). ``with BlackHole() as port:`` listens on a free port until the
block ends.
"""

from __future__ import annotations

import socket
from types import TracebackType


class BlackHole:
    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])

    def __enter__(self) -> int:
        self._listener.listen(64)  # never accepted: the backlog holds the clients
        return self.port

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._listener.close()
