"""The servers a page's examples run against, started only for pages that name them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis

from tests.docs import runner
from tests.support.databases import mariadb_database, postgres_database
from tests.support.services import RedisServer


@pytest.fixture(scope="session")
def docs_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server for the pages' examples: each page starts with it empty."""
    server = RedisServer(tmp_path_factory.mktemp("docs-redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


def _flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()


@pytest.fixture
def page_addresses(
    request: pytest.FixtureRequest, docs_redis: str, page_text: str
) -> Iterator[dict[str, str]]:
    """Shown address -> the real one, for the servers this page names."""
    _flush(docs_redis)
    addresses = {shown: runner.spelled_as(shown, docs_redis) for shown in runner.REDIS}
    with ExitStack() as stack:
        if any(shard in page_text for shard in runner.SHARDS):
            shards: list[str] = request.getfixturevalue("redis_shards")
            for shown, real in zip(runner.SHARDS, shards, strict=True):
                _flush(real)
                addresses[shown] = runner.spelled_as(shown, real)
        if runner.CLUSTER in page_text:
            cluster_url: str = request.getfixturevalue("redis_cluster_url")
            addresses[runner.CLUSTER] = runner.spelled_as(runner.CLUSTER, cluster_url)
        if any(url in page_text for url in runner.POSTGRES):
            url = stack.enter_context(postgres_database())
            addresses.update({shown: runner.spelled_as(shown, url) for shown in runner.POSTGRES})
        if any(url in page_text for url in runner.MARIADB):
            url = stack.enter_context(mariadb_database())
            addresses.update({shown: runner.spelled_as(shown, url) for shown in runner.MARIADB})
        yield addresses


@pytest.fixture
def page_text(page_path: Path) -> str:
    return page_path.read_text(encoding="utf-8")
