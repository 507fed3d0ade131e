"""One Redis server of a sharded connection: its name, and how long it is skipped when down."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from kashq.drivers.redis import RedisDriver
from kashq.drivers.redis.client import reason
from kashq.exceptions import DriverError

_MAX_WAIT_S = 10.0


@dataclass
class Shard:
    """One Redis server of a sharded connection."""

    index: int
    name: str
    driver: RedisDriver
    down_until: float = 0.0
    down: bool = False
    failures: int = 0  # in a row: each doubles the wait before the next probe
    left_out: bool = False  # reachable_sizes warned that its jobs are not counted


def wait_after(failures: int, first_s: float) -> float:
    """How long a shard that failed ``failures`` times in a row is skipped: doubling
    from ``first_s`` up to 10 s."""
    return float(min(first_s * 2 ** max(failures - 1, 0), _MAX_WAIT_S))


def shard_name(shard: str | RedisDriver) -> str:
    """A stable name for a shard: its address without credentials (``host:port/db``)."""
    if isinstance(shard, RedisDriver):
        kwargs = getattr(shard.client, "connection_pool", None)
        params = getattr(kwargs, "connection_kwargs", {})
        if "path" in params:
            return f"unix:{params['path']}/{params.get('db', 0)}"
        return f"{params.get('host', '?')}:{params.get('port', 6379)}/{params.get('db', 0)}"
    parts = urlsplit(shard)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    db = parts.path.strip("/") or "0"
    return f"{parts.hostname or '?'}:{parts.port or 6379}/{db}"


def what_failed(exc: Exception) -> str:
    """What went wrong on a shard, without the server's URL (messages name the shard)."""
    return reason(exc.__cause__ or exc)


def never_connected(exc: DriverError) -> bool:
    """Whether ``exc`` is a failure to connect, so nothing was sent: only then may the
    jobs go to another shard without risking a second copy."""
    return "connecting to" in str(exc).lower()
