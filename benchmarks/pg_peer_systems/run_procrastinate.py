"""Procrastinate on PostgreSQL: the app its ``procrastinate worker`` loads, and its client.

Async tasks on a ``PsycopgConnector`` to ``BENCH_PG_URL``, queue ``bench``.
enqueue: ``await noop.defer_async()`` per job; bulk: ``await
noop.batch_defer_async(*[{}] * N)`` (one ``INSERT`` of N rows).
"""

from __future__ import annotations

import os

import procrastinate

from pg_peer_systems import probe

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("BENCH_PG_URL", ""))
)


@app.task(name="noop", queue="bench")
async def noop() -> None:
    probe.done()


@app.task(name="stamp", queue="bench")
async def stamp(sent: float) -> None:
    probe.stamp(sent)


class Client:
    async def open(self) -> None:
        await app.open_async()

    async def enqueue(self, n: int) -> None:
        for _ in range(n):
            await noop.defer_async()

    async def bulk(self, n: int) -> None:
        await noop.batch_defer_async(*({} for _ in range(n)))

    async def stamp(self, sent: float) -> None:
        await stamp.defer_async(sent=sent)

    async def prepare(self, setting: int) -> None:
        pass

    async def close(self) -> None:
        await app.close_async()
