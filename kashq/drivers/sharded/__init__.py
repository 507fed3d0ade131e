"""The ``sharded`` connection: queues spread over several Redis servers."""

from kashq.drivers.sharded.driver import ShardedDriver
from kashq.drivers.sharded.ring import HashRing
from kashq.drivers.sharded.shard import Shard, shard_name
from kashq.drivers.sharded.strategy import ShardStrategy

__all__ = ["HashRing", "Shard", "ShardStrategy", "ShardedDriver", "shard_name"]
