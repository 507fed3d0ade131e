"""The queue's Lua scripts, each called through one typed method, and the helpers
that shape their arguments and read their replies.

Scripts are loaded from the ``lua/`` folder beside this module and run with
EVALSHA, directly or queued on a pipeline (see :mod:`.lua`). Each call is one
attempt: the driver wraps it in the retry policy of :mod:`.retry`, which
reloads the scripts when Redis lost its script cache (a restart) and runs
the call again; that is safe because a NOSCRIPT error means no script of the
call ran, and every script can be repeated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from kashq.drivers.base import FoundJob, JobState, Reservation
from kashq.drivers.redis.keys import QueueKeys
from kashq.drivers.redis.lua import LuaScripts
from kashq.envelope import Envelope

_NAMES = (
    "push", "reserve", "ack", "unreserve", "release", "extend", "clear", "find", "remove",
    "control_get", "control_delete",
)  # fmt: skip
_STATES: dict[str, JobState] = {"ready": "ready", "delayed": "delayed", "reserved": "reserved"}


class Scripts:
    """The scripts' sources and SHA1s, and a typed method to queue each one."""

    def __init__(self, client: Any, execute: Callable[..., Any] | None = None) -> None:
        self._client = client
        # Runs one command at once; defaults to the client (a caller may pass a
        # faster path, such as a dedicated connection per thread).
        self._execute = execute or client.execute_command
        self._lua = LuaScripts("kashq.drivers.redis", _NAMES)

    def load(self) -> None:
        """Load every script into Redis's script cache."""
        self._lua.load(self._client)

    def run(self, build: Callable[[Any], None], *, pipeline: bool) -> list[Any]:
        """Queue commands with ``build(target)`` and run them once; results in order.

        With ``pipeline`` the commands go in one round trip (the first error
        among the replies is raised); otherwise ``build`` must queue exactly
        one command, run on the client directly.
        """
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

    # -- one method per script; ``target`` is a pipeline or a _Direct ------
    def push(self, target: Any, keys: QueueKeys, now: float, jobs: Sequence[Any]) -> None:
        """``jobs`` is flat: id, raw, priority, available_at for each job."""
        self.send(target, self.push_command(keys, now, jobs))

    def send(self, target: Any, command: list[Any]) -> None:
        """Run (or queue, on a pipeline) a whole command of a ``*_command`` method."""
        target.evalsha(*command[1:])

    def reserve_command(
        self,
        keys: QueueKeys,
        now: float,
        lease_s: float,
        *,
        token: str,
        limit: int = 1,
        acks: Sequence[tuple[str, str]] = (),
    ) -> list[Any]:
        """Reserve up to ``limit`` jobs of one queue under ``token``, acknowledging
        ``acks`` (id, token) first: the whole ``EVALSHA reserve ...`` command."""
        return self._lua.command(
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

    def find(self, target: Any, keys: QueueKeys, job_id: str, now: float) -> None:
        """Job ``job_id`` of the queue as it stands at ``now`` (see :func:`found_job`)."""
        self._eval(
            target,
            "find",
            [keys.jobs, keys.state, keys.delayed, keys.reserved],
            [job_id, repr(now)],
        )

    def remove(self, target: Any, keys: QueueKeys, job_id: str, now: float) -> None:
        """Take job ``job_id`` out of the queue if it is waiting, answering as ``find``
        did just before (see :func:`found_job`); a reserved job is left as it is."""
        self._eval(
            target,
            "remove",
            [keys.jobs, keys.state, keys.ready, keys.delayed, keys.reserved],
            [job_id, repr(now)],
        )

    def control_get(self, target: Any, key: str, now: float, prefix: str) -> None:
        """Live control records under ``prefix`` as a flat name, value list."""
        self._eval(target, "control_get", [key], [repr(now), prefix])

    def control_delete(self, target: Any, key: str, now: float, name: str) -> None:
        self._eval(target, "control_delete", [key], [repr(now), name])

    def push_command(self, keys: QueueKeys, now: float, jobs: Sequence[Any]) -> list[Any]:
        """The whole ``EVALSHA push ...`` command, for callers that send it themselves."""
        key_list = [keys.jobs, keys.state, keys.ready, keys.delayed, keys.seq, keys.wake]
        return self._lua.command("push", key_list, [repr(now), *jobs])

    def _eval(self, target: Any, name: str, keys: list[str], args: Sequence[Any]) -> None:
        self._lua.run(target, name, keys, args)


def reserved_jobs(queue: str, result: list[Any]) -> list[Reservation]:
    """The reservations of a reserve script's reply: id, raw, deliveries, token each."""
    return [
        Reservation(
            id=text_of(result[i]),
            queue=queue,
            raw=text_of(result[i + 1]),
            deliveries=int(result[i + 2]),
            token=text_of(result[i + 3]),
        )
        for i in range(0, len(result), 4)
    ]


def found_job(queue: str, result: list[Any]) -> FoundJob | None:
    """The job a find or remove script's reply describes, or None for its empty reply."""
    if not result:
        return None
    state, raw, deliveries, lease_until = (text_of(part) for part in result)
    return FoundJob(
        queue, _STATES[state], raw, int(deliveries), float(lease_until) if lease_until else None
    )


def due_at(result: list[Any]) -> float:
    """When the first delayed job or lease falls due, from a reserve that found no job."""
    due = float(result[1])
    return due if due >= 0 else float("inf")


def _flat(pairs: Sequence[tuple[str, str]]) -> list[str]:
    return [part for pair in pairs for part in pair]


class _Direct:
    """Runs one EVALSHA at once, collecting its result like a pipeline."""

    def __init__(self, execute: Callable[..., Any], box: list[Any]) -> None:
        self._execute = execute
        self._box = box

    def evalsha(self, *args: Any) -> None:
        self._box.append(self._execute("EVALSHA", *args))


def text_of(value: Any) -> str:
    """A reply's bytes as text (a client may decode replies itself)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


PUSH_CHUNK = 1000  # jobs per push script call: Redis runs one while the next is encoded


def push_chunks(envelopes: Sequence[Envelope]) -> Iterator[tuple[str, Sequence[Envelope]]]:
    """``envelopes`` by queue (first-seen order), one per id, in chunks of ``PUSH_CHUNK``."""
    latest = {env.id: env for env in envelopes}  # a repeated id: its last copy counts
    queued_by: dict[str, list[Envelope]] = {}
    for env in latest.values():
        queued_by.setdefault(env.queue, []).append(env)
    for queue, queued in queued_by.items():
        for start in range(0, len(queued), PUSH_CHUNK):
            yield queue, queued[start : start + PUSH_CHUNK]


def push_args(envelopes: Sequence[Envelope]) -> list[Any]:
    """The push script's per-job arguments: id, raw, priority, available_at each."""
    args: list[Any] = []
    for env in envelopes:
        args += (env.id, env.encode(), env.priority, repr(env.available_at))
    return args


def by_queue(reservations: Sequence[Reservation]) -> list[tuple[str, list[tuple[str, str]]]]:
    """(queue, [(id, token), ...]) for each queue of ``reservations``, first-seen order."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for res in reservations:
        groups.setdefault(res.queue, []).append((res.id, res.token))
    return list(groups.items())
