"""The Lua scripts, each called through one typed method.

Scripts are loaded from the ``lua/`` folder beside this module and run with
EVALSHA (redis-py falls back to loading them after a server restart).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from kashq.drivers.redis.keys import QueueKeys

_NAMES = ("push", "reserve", "ack", "release", "extend", "clear")


def _source(name: str) -> str:
    return resources.files("kashq.drivers.redis").joinpath(f"lua/{name}.lua").read_text("utf-8")


class Scripts:
    """Registered scripts for one client."""

    def __init__(self, client: Any) -> None:
        self._scripts = {name: client.register_script(_source(name)) for name in _NAMES}

    def push(self, keys: QueueKeys, now: float, jobs: list[Any], client: Any = None) -> Any:
        """``jobs`` is a flat list: id, raw, priority, available_at for each job."""
        return self._scripts["push"](
            keys=[keys.jobs, keys.state, keys.ready, keys.delayed, keys.reserved, keys.seq,
                  keys.wake],
            args=[repr(now), *jobs],
            client=client,
        )  # fmt: skip

    def reserve(self, keys: QueueKeys, now: float, lease_s: float) -> list[Any]:
        result: list[Any] = self._scripts["reserve"](
            keys=[keys.jobs, keys.state, keys.ready, keys.delayed, keys.reserved, keys.seq],
            args=[repr(now), repr(lease_s)],
        )
        return result

    def ack(self, keys: QueueKeys, job_id: str, token: str, client: Any = None) -> Any:
        return self._scripts["ack"](
            keys=[keys.jobs, keys.state, keys.reserved], args=[job_id, token], client=client
        )

    def release(
        self,
        keys: QueueKeys,
        job_id: str,
        token: str,
        *,
        raw: str,
        priority: int,
        available_at: float,
        now: float,
    ) -> int:
        return int(
            self._scripts["release"](
                keys=[keys.jobs, keys.state, keys.ready, keys.delayed, keys.reserved, keys.seq,
                      keys.wake],
                args=[job_id, token, raw, priority, repr(available_at), repr(now)],
            )
        )  # fmt: skip

    def extend(self, keys: QueueKeys, job_id: str, token: str, deadline: float) -> int:
        return int(
            self._scripts["extend"](
                keys=[keys.state, keys.reserved], args=[job_id, token, repr(deadline)]
            )
        )

    def clear(self, keys: QueueKeys) -> int:
        return int(
            self._scripts["clear"](
                keys=[keys.jobs, keys.state, keys.ready, keys.delayed, keys.reserved, keys.wake]
            )
        )
