"""Jobs used by fault tests; each records what happened in a Redis ledger."""

from __future__ import annotations

import functools
import os
import signal
import time

import redis

from kashq import Job


@functools.cache
def ledger(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


class LedgerJob(Job):
    """Appends its number to ``<key>:start`` when it starts and ``<key>:done`` when done."""

    n: int
    ledger_url: str
    ledger_key: str
    sleep_s: float = 0.0

    def handle(self) -> None:
        client = ledger(self.ledger_url)
        client.rpush(f"{self.ledger_key}:start", self.n)
        time.sleep(self.sleep_s)
        client.rpush(f"{self.ledger_key}:done", self.n)


class KillsItsWorker(Job):
    """Kills the process running it, every time: a job that crashes its worker."""

    tries = 2

    def handle(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)
