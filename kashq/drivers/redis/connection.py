"""Each thread's own connection to a plain Redis server, for the hot paths.

The Redis driver (and the batch store, counting a worker's batch jobs) sends
its scripts on a connection that belongs to the calling thread, skipping the
client's per-command pool checkout (about 40 us a call). Such a connection
is made from the pool's settings but never taken from the pool, so it never
counts against the pool's limit; it is closed when its thread ends or when
its owner closes.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import redis

from kashq.drivers.redis.client import pack_command


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

    def stream(self, commands: Callable[[], Iterator[list[Any]]]) -> list[Any]:
        """Send ``commands()`` on this thread's connection without waiting, then read
        every reply: Redis runs one command while the next is being built.

        One attempt (the caller's retry policy makes the others). A connection
        that failed is closed, so the next attempt connects afresh; the first
        error among the replies is raised once every reply is read.
        """
        conn = self.get()
        try:
            sent = 0
            for command in commands():
                conn.send_packed_command((pack_command(command),))
                sent += 1
            replies: list[Any] = []
            error: Exception | None = None
            for _ in range(sent):
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as exc:  # read the rest before raising
                    error = error or exc
        except OSError as exc:
            conn.disconnect()
            raise redis.ConnectionError(str(exc)) from exc
        except BaseException:  # failed, or replies left unread: the connection cannot be reused
            conn.disconnect()
            raise
        if error is not None:
            raise error
        return replies

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
