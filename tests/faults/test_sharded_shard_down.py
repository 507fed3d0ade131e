"""``queue:work sharded --stop-when-empty`` with a shard down ends once the others are empty.

"Empty" with a shard down means every shard that answers is empty: the down
shard's jobs wait on it (with AOF) and run once it is back, and a warning line
names it. The real ``kashq queue:work`` runs against two private redis-servers,
one of which is killed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.e2e.work_app import App, make_app
from tests.support.services import RedisServer


@pytest.fixture
def shards(tmp_path: Path) -> Iterator[list[RedisServer]]:
    servers = [RedisServer(tmp_path / "shards", appendonly=True).start() for _ in range(2)]
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def app(tmp_path: Path, shards: list[RedisServer]) -> Iterator[App]:
    with make_app(tmp_path, "sqlite") as made:
        made.env.update(
            KASHQ_CONNECTION="sharded",
            KASHQ_SHARDS=",".join(server.url for server in shards),
            KASHQ_SHARD_STRATEGY="round_robin",
            KASHQ_PREFIX=f"kashq-e2e-{uuid.uuid4().hex[:10]}",
        )
        yield made


def jobs_on(server: RedisServer, prefix: str) -> int:
    client = redis.Redis.from_url(server.url)
    try:
        return int(client.hlen(f"{prefix}:{{default}}:jobs"))
    finally:
        client.close()


def test_stop_when_empty_ends_when_the_shards_that_answer_are_empty(
    app: App, shards: list[RedisServer]
):
    ids = app.dispatch("[j.Record(n=i) for i in range(20)]")
    prefix = app.env["KASHQ_PREFIX"]
    assert [jobs_on(server, prefix) for server in shards] == [10, 10]
    shards[1].kill()

    code, output = app.work("sharded", "--workers", "2", "--stop-when-empty", timeout_s=30)

    assert code == 0, output
    ran = app.ledger()
    assert len(ran) == 10 and set(ran) <= set(ids) and set(ran.values()) == {1}
    down = f"shard 127.0.0.1:{shards[1].port}/0 is down"
    assert f"{down}: its jobs wait until it is back" in output  # at start
    assert f"{down}: its jobs are not counted and wait until it is back" in output  # at the end

    shards[1].start()  # its append-only file kept its ten jobs
    code, output = app.work("sharded", "--stop-when-empty", timeout_s=30)
    assert code == 0, output
    assert app.ledger() == dict.fromkeys(ids, 1), "the down shard's jobs ran once it was back"
