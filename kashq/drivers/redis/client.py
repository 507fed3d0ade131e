"""Building a redis-py client from a URL, plain or Redis Cluster."""

from __future__ import annotations

import math
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from kashq.exceptions import ConfigError, DriverError
from kashq.redact import hide_secrets_in

CONNECT_TIMEOUT_S = 5.0
# A server that stops answering (hung, paused, cut off mid-connection) fails a command
# after this long instead of blocking its caller forever. Blocking commands block for
# less (see longest_block_s).
REPLY_TIMEOUT_S = 5.0
_REPLY_MARGIN_S = 1.0  # a blocking command's reply must arrive this long before the timeout
CLUSTER_SCHEMES = {"redis+cluster://": "redis://", "rediss+cluster://": "rediss://"}


def connect(url: str, *, socket_timeout_s: float | None = REPLY_TIMEOUT_S) -> Any:
    """A client for ``url``: ``redis://``, ``rediss://`` (TLS), ``unix://``, or a cluster.

    ``redis+cluster://host:port`` (or ``rediss+cluster://``) connects to a Redis
    Cluster through any one of its nodes. A host that does not answer fails
    after ``CONNECT_TIMEOUT_S`` instead of the system's TCP timeout, and a reply
    that never comes after ``socket_timeout_s`` (blocking commands are kept
    shorter: see :func:`longest_block_s`). A URL's own timeouts win. A plain client
    retries nothing itself: kashq's one retry policy (:mod:`.retry`) wraps
    every call, so attempts never multiply.
    """
    timeouts: dict[str, Any] = {"socket_connect_timeout": CONNECT_TIMEOUT_S}
    if socket_timeout_s is not None:
        timeouts["socket_timeout"] = socket_timeout_s
    try:
        for scheme, plain in CLUSTER_SCHEMES.items():
            if url.startswith(scheme):
                # The cluster client keeps its own retries: they refresh its slot map.
                return RedisCluster.from_url(plain + url[len(scheme) :], **timeouts)
        return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **timeouts)
    except ValueError as exc:  # it may quote a piece of a password holding a '/' or '@'
        raise ConfigError(f"invalid Redis URL: {hide_secrets_in(str(exc), url)}") from None
    except (redis.RedisError, RedisClusterException) as exc:  # a cluster client connects at once
        raise DriverError(f"cannot reach the Redis cluster: {exc}") from None


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def longest_block_s(client: Any) -> float:
    """How long one blocking command (BLPOP, XREAD BLOCK) may block on ``client``.

    Its reply must come before the client's reply timeout gives up on it, with a
    margin; without a timeout there is no limit.
    """
    if is_cluster(client):
        options = client.nodes_manager.connection_kwargs
    else:
        options = client.connection_pool.connection_kwargs
    timeout_s = options.get("socket_timeout")
    if timeout_s is None:
        return math.inf
    return max(float(timeout_s) - _REPLY_MARGIN_S, float(timeout_s) / 2)
