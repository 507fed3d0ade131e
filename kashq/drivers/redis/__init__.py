"""The Redis driver (Redis, Valkey, DragonflyDB, Redis Cluster)."""

from kashq.drivers.redis.driver import RedisDriver

__all__ = ["RedisDriver"]
