"""The Lua scripts, each called through one typed method.

Scripts are loaded from the ``lua/`` folder beside this module and run with
EVALSHA, directly or queued on a pipeline (redis-py's ``Script`` objects would
add a ``SCRIPT EXISTS`` round trip to every pipeline). If Redis lost its script
cache (a restart), the call loads every script and runs once more; that is
safe because a NOSCRIPT error means no script of the call ran.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from kashq.drivers.redis.keys import QueueKeys

_NAMES = (
    "push", "reserve", "ack", "unreserve", "release", "extend", "clear",
    "control_get", "control_delete",
)  # fmt: skip


def _source(name: str) -> str:
    return resources.files("kashq.drivers.redis").joinpath(f"lua/{name}.lua").read_text("utf-8")


class Scripts:
    """The scripts' sources and SHA1s, and a typed method to queue each one."""

    def __init__(self, client: Any, execute: Callable[..., Any] | None = None) -> None:
        self._client = client
        # Runs one command at once; defaults to the client (a caller may pass a
        # faster path, such as a dedicated connection per thread).
        self._execute = execute or client.execute_command
        self._sources = {name: _source(name) for name in _NAMES}
        self._shas = {
            name: hashlib.sha1(src.encode(), usedforsecurity=False).hexdigest()
            for name, src in self._sources.items()
        }

    def load(self) -> None:
        """Load every script into Redis's script cache."""
        for source in self._sources.values():
            self._client.script_load(source)

    def run(self, build: Callable[[Any], None], *, pipeline: bool) -> list[Any]:
        """Queue commands with ``build(target)`` and run them; results in order.

        With ``pipeline`` the commands go in one round trip; otherwise ``build``
        must queue exactly one command, run on the client directly.
        """
        for attempt in (1, 2):
            try:
                if not pipeline:
                    box: list[Any] = []
                    build(_Direct(self._execute, box))
                    return box
                pipe = self._client.pipeline(transaction=False)
                build(pipe)
                results: list[Any] = pipe.execute(raise_on_error=False)
                for result in results:
                    if isinstance(result, Exception):
                        raise result
                return results
            except NoScriptError:
                if attempt == 2:
                    raise
                self.load()
        raise AssertionError("unreachable")

    # -- one method per script; ``target`` is a pipeline or a _Direct ------
    def push(self, target: Any, keys: QueueKeys, now: float, jobs: Sequence[Any]) -> None:
        """``jobs`` is flat: id, raw, priority, available_at for each job."""
        target.evalsha(*self.push_command(keys, now, jobs)[1:])

    def reserve(
        self,
        target: Any,
        keys: QueueKeys,
        now: float,
        lease_s: float,
        *,
        token: str,
        limit: int = 1,
        acks: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Reserve up to ``limit`` jobs of one queue under ``token``; ``acks`` (id, token)
        are acknowledged first."""
        self._eval(
            target,
            "reserve",
            [keys.jobs, keys.state, keys.ready, keys.delayed, keys.reserved, keys.claims],
            [repr(now), repr(lease_s), token, limit, *_flat(acks)],
        )

    def ack(self, target: Any, keys: QueueKeys, held: Sequence[tuple[str, str]]) -> None:
        """Acknowledge each (id, token) of ``held``."""
        self._eval(target, "ack", [keys.jobs, keys.state, keys.reserved, keys.claims], _flat(held))

    def unreserve(self, target: Any, keys: QueueKeys, held: Sequence[tuple[str, str]]) -> None:
        """Give each (id, token) of ``held`` back to the queue as it was, uncounted."""
        self._eval(
            target,
            "unreserve",
            [keys.state, keys.ready, keys.reserved, keys.wake, keys.claims],
            _flat(held),
        )

    def release(
        self,
        target: Any,
        keys: QueueKeys,
        job_id: str,
        token: str,
        *,
        raw: str,
        priority: int,
        available_at: float,
        now: float,
    ) -> None:
        self._eval(
            target,
            "release",
            [
                keys.jobs,
                keys.state,
                keys.ready,
                keys.delayed,
                keys.reserved,
                keys.seq,
                keys.wake,
                keys.claims,
            ],
            [job_id, token, raw, priority, repr(available_at), repr(now)],
        )

    def extend(self, target: Any, keys: QueueKeys, job_id: str, token: str, until: float) -> None:
        self._eval(target, "extend", [keys.state, keys.reserved], [job_id, token, repr(until)])

    def clear(self, target: Any, keys: QueueKeys) -> None:
        self._eval(
            target,
            "clear",
            [
                keys.jobs,
                keys.state,
                keys.ready,
                keys.delayed,
                keys.reserved,
                keys.wake,
                keys.claims,
            ],
            [],
        )

    def control_get(self, target: Any, key: str, now: float, prefix: str) -> None:
        """Live control records under ``prefix`` as a flat name, value list."""
        self._eval(target, "control_get", [key], [repr(now), prefix])

    def control_delete(self, target: Any, key: str, now: float, name: str) -> None:
        self._eval(target, "control_delete", [key], [repr(now), name])

    def push_command(self, keys: QueueKeys, now: float, jobs: Sequence[Any]) -> list[Any]:
        """The whole ``EVALSHA push ...`` command, for callers that send it themselves."""
        key_list = [keys.jobs, keys.state, keys.ready, keys.delayed, keys.seq, keys.wake]
        return ["EVALSHA", self._shas["push"], len(key_list), *key_list, repr(now), *jobs]

    def _eval(self, target: Any, name: str, keys: list[str], args: Sequence[Any]) -> None:
        target.evalsha(self._shas[name], len(keys), *keys, *args)


def _flat(pairs: Sequence[tuple[str, str]]) -> list[str]:
    return [part for pair in pairs for part in pair]


class _Direct:
    """Runs one EVALSHA at once, collecting its result like a pipeline."""

    def __init__(self, execute: Callable[..., Any], box: list[Any]) -> None:
        self._execute = execute
        self._box = box

    def evalsha(self, *args: Any) -> None:
        self._box.append(self._execute("EVALSHA", *args))
