"""Idle workers of a sharded connection wake when a job is pushed to any shard.

A blocking pop can wait on one server only. So each process watches every
shard with one thread per shard, blocking on that shard's wake-up lists (the
tokens a push leaves, which a plain Redis worker blocks on); a token bumps a
counter that waiting ``reserve`` calls sleep on. A job pushed anywhere is
seen within a round trip instead of a polling interval. Watchers block only
while a ``reserve`` of their process is waiting, so a busy process does not
take the wake-up tokens meant for idle ones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from kashq.drivers.redis import RedisDriver
from kashq.exceptions import DriverError

log = logging.getLogger(__name__)

_WATCH_BLOCK_S = 1.0  # each watcher blocks this long per call (and notices close() as often)
_DOWN_PAUSE_S = 0.5


class WakeWatch:
    """Watches the wake-up lists of ``queues`` on every shard, from daemon threads."""

    def __init__(
        self,
        shards: Sequence[RedisDriver],
        queues: Sequence[str],
        *,
        on_error: Callable[[int, DriverError], None],
        on_answer: Callable[[int], None],
    ) -> None:
        self._changed = threading.Condition()
        self._wakes = 0
        self._waiting = 0
        self._closed = threading.Event()
        self._on_error = on_error
        self._on_answer = on_answer
        for index, shard in enumerate(shards):
            name = f"kashq-shard-wake-{index}"
            args = (index, shard, tuple(queues))
            threading.Thread(target=self._watch, args=args, name=name, daemon=True).start()

    @property
    def wakes(self) -> int:
        """How many wake-ups were seen so far (compare before and after a look)."""
        return self._wakes

    def wait(self, seen: int, timeout_s: float) -> bool:
        """Sleep until a wake-up after ``seen`` (True) or ``timeout_s`` passes (False)."""
        with self._changed:
            self._waiting += 1
            self._changed.notify_all()  # the watchers start blocking on their shards
            try:
                return self._changed.wait_for(lambda: self._wakes != seen, timeout_s)
            finally:
                self._waiting -= 1

    def close(self) -> None:
        """Stop watching; each thread ends when its current wait returns."""
        self._closed.set()
        with self._changed:
            self._changed.notify_all()

    def _watch(self, index: int, shard: RedisDriver, queues: tuple[str, ...]) -> None:
        while not self._closed.is_set():
            with self._changed:
                wanted = lambda: self._waiting > 0 or self._closed.is_set()  # noqa: E731
                if not self._changed.wait_for(wanted, _WATCH_BLOCK_S) or self._closed.is_set():
                    continue
            try:
                woke = shard.wait(queues, _WATCH_BLOCK_S)
            except DriverError as exc:
                if self._closed.is_set():
                    return
                self._on_error(index, exc)
                time.sleep(_DOWN_PAUSE_S)
                continue
            except Exception:  # a closed client while shutting down, or a kashq bug
                if self._closed.is_set():
                    return
                log.exception("shard %d wake-up watcher failed; going on", index)
                time.sleep(_DOWN_PAUSE_S)
                continue
            self._on_answer(index)  # the shard answered: it is up (again)
            if woke:
                with self._changed:
                    self._wakes += 1
                    self._changed.notify_all()
