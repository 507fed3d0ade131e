"""PgQueuer on PostgreSQL: the factory ``pgq run`` starts, and its client.

One asyncpg connection per process (``AsyncpgDriver``, as PgQueuer's own
examples do) to ``BENCH_PG_URL``; async entrypoints ``noop`` and ``stamp``.
enqueue: ``await queries.enqueue("noop", None)`` per job; bulk: one
``queries.enqueue`` call with lists of N entrypoints, payloads and priorities.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from pgqueuer import PgQueuer, Queries
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job

from pg_peer_systems import probe


@asynccontextmanager
async def factory() -> AsyncIterator[PgQueuer]:
    connection = await asyncpg.connect(os.environ["BENCH_PG_URL"])
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        probe.done()

    @pgq.entrypoint("stamp")
    async def stamp(job: Job) -> None:
        assert job.payload is not None
        probe.stamp(float(job.payload))

    try:
        yield pgq
    finally:
        await connection.close()


class Client:
    async def open(self) -> None:
        self.connection = await asyncpg.connect(os.environ["BENCH_PG_URL"])
        self.queries = Queries(AsyncpgDriver(self.connection))

    async def enqueue(self, n: int) -> None:
        for _ in range(n):
            await self.queries.enqueue("noop", None)

    async def bulk(self, n: int) -> None:
        await self.queries.enqueue(["noop"] * n, [None] * n, [0] * n)

    async def stamp(self, sent: float) -> None:
        await self.queries.enqueue("stamp", repr(sent).encode())

    async def prepare(self, setting: int) -> None:
        pass

    async def close(self) -> None:
        await self.connection.close()
