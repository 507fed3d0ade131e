"""oban-py on PostgreSQL: the workers ``oban start`` runs, and its client.

Async workers ``Noop`` and ``Stamp`` on queue ``bench``; the client is an
``Oban`` instance in client mode (no queues) on ``Oban.create_pool`` to
``BENCH_PG_URL``. enqueue: ``await Noop.enqueue()`` per job (oban's enqueue is
async only); bulk: ``await oban.enqueue_many([Noop.new() ...])`` (one ``INSERT``).
"""

from __future__ import annotations

import os
from typing import Any

from oban import Oban, worker

from pg_peer_systems import probe


@worker(queue="bench")
class Noop:
    async def process(self, job: Any) -> None:
        probe.done()


@worker(queue="bench")
class Stamp:
    async def process(self, job: Any) -> None:
        probe.stamp(job.args["sent"])


class Client:
    async def open(self) -> None:
        self.pool = await Oban.create_pool(os.environ["BENCH_PG_URL"])
        self.oban = Oban(pool=self.pool)

    async def enqueue(self, n: int) -> None:
        for _ in range(n):
            await Noop.enqueue()

    async def bulk(self, n: int) -> None:
        await self.oban.enqueue_many([Noop.new() for _ in range(n)])

    async def stamp(self, sent: float) -> None:
        await Stamp.enqueue({"sent": sent})

    async def prepare(self, setting: int) -> None:
        pass

    async def close(self) -> None:
        await self.pool.close()
