"""Each thread's own connection to a plain Redis server, for the driver's hot path.

The Redis driver sends its scripts on a connection that belongs to the calling
thread, skipping the client's per-command pool checkout (about 40 us a call).
Such a connection is made from the pool's settings but never taken from the
pool, so it never counts against the pool's limit; it is closed when its
thread ends or when the driver closes.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any


class ThreadConnections:
    """One connection per thread to the server of a plain Redis ``client``, made from
    its pool's settings on first use (a cluster client has no such pool)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._local = threading.local()
        self._held: weakref.WeakSet[_HeldConnection] = weakref.WeakSet()

    def get(self) -> Any:
        """This thread's connection, made on first use.

        The holder lives in thread-local storage, which Python drops when the
        thread exits: the connection is then disconnected.
        """
        held: _HeldConnection | None = getattr(self._local, "held", None)
        if held is None:
            pool = self._client.connection_pool
            held = _HeldConnection(pool.connection_class(**pool.connection_kwargs))
            self._local.held = held
            self._held.add(held)
        return held.conn

    def close(self) -> None:
        """Disconnect every thread's connection (a thread's next call connects afresh)."""
        for held in list(self._held):
            held.conn.disconnect()


class _HeldConnection:
    """One thread's dedicated connection; disconnected when the thread's storage goes."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def __del__(self) -> None:
        try:
            self.conn.disconnect()
        except Exception:  # interpreter shutdown, already closed: nothing to do
            return
