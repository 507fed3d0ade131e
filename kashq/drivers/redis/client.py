"""Building a redis-py client from a URL, plain or Redis Cluster."""

from __future__ import annotations

from typing import Any

import redis
from redis.cluster import RedisCluster

from kashq.exceptions import ConfigError

CLUSTER_SCHEMES = {"redis+cluster://": "redis://", "rediss+cluster://": "rediss://"}


def connect(url: str) -> Any:
    """A client for ``url``: ``redis://``, ``rediss://`` (TLS), ``unix://``, or a cluster.

    ``redis+cluster://host:port`` (or ``rediss+cluster://``) connects to a Redis
    Cluster through any one of its nodes.
    """
    try:
        for scheme, plain in CLUSTER_SCHEMES.items():
            if url.startswith(scheme):
                return RedisCluster.from_url(plain + url[len(scheme) :])
        return redis.Redis.from_url(url)
    except (ValueError, redis.RedisError) as exc:
        raise ConfigError(f"invalid Redis URL: {exc}") from None


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)
