"""kashq's database connection on PostgreSQL: the jobs ``queue:work`` imports, and its client.

The environment names the database (``KASHQ_CONNECTION=database``,
``KASHQ_DATABASE_URL``); everything else is kashq's default. enqueue:
``Noop().dispatch()`` per job; bulk: ``kashq.dispatch_many([Noop(), ...])``.
"""

from __future__ import annotations

import kashq
from kashq import Job
from kashq.manager import manager
from pg_peer_systems import probe


class Noop(Job):
    def handle(self) -> None:
        probe.done()


class Stamp(Job):
    sent: float

    def handle(self) -> None:
        probe.stamp(self.sent)


class Client:
    async def open(self) -> None:
        manager().connection().sizes(["default"])  # connects: one query

    async def enqueue(self, n: int) -> None:
        for _ in range(n):
            Noop().dispatch()

    async def bulk(self, n: int) -> None:
        kashq.dispatch_many([Noop() for _ in range(n)])

    async def stamp(self, sent: float) -> None:
        Stamp(sent=sent).dispatch()

    async def prepare(self, setting: int) -> None:
        pass

    async def close(self) -> None:
        manager().close()
