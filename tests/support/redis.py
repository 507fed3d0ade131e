"""Fixtures' helpers for Redis tests: a unique key prefix per test, cleaned up after."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.drivers.redis import RedisDriver
from kashq.drivers.sharded import ShardedDriver
from tests.support.services import REDIS_URL, unavailable


def shared_client(url: str = REDIS_URL) -> redis.Redis:
    """A client of the machine's Redis (test database 15), or skip/fail if it is down."""
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at {url}", str(exc))
    return client


def delete_prefix(client: Any, prefix: str) -> None:
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        client.delete(key)


@contextmanager
def redis_driver(url: str = REDIS_URL, *, clock: Clock = SYSTEM_CLOCK) -> Iterator[RedisDriver]:
    """A RedisDriver under a fresh prefix; its keys are deleted afterwards."""
    if "+cluster" not in url:
        shared_client(url)  # skip (locally) or fail (CI) early if Redis is down
    prefix = f"kashq-test-{uuid.uuid4().hex[:10]}"
    driver = RedisDriver(url, prefix=prefix, clock=clock)
    try:
        yield driver
    finally:
        delete_prefix(driver.client, prefix)
        driver.close()


@contextmanager
def sharded_driver(
    urls: list[str], *, strategy: str = "hash", clock: Clock = SYSTEM_CLOCK
) -> Iterator[ShardedDriver]:
    """A ShardedDriver over ``urls`` under a fresh prefix; its keys are deleted afterwards."""
    prefix = f"kashq-test-{uuid.uuid4().hex[:10]}"
    driver = ShardedDriver(urls, strategy=strategy, prefix=prefix, clock=clock)
    try:
        yield driver
    finally:
        for shard in driver.shards:
            with contextlib.suppress(redis.RedisError):
                delete_prefix(shard.driver.client, prefix)
        driver.close()
