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

from kashq.drivers.base import FoundJob, JobState, Reservation, tags_of
from kashq.drivers.redis.keys import BatchKeys, QueueKeys
from kashq.drivers.redis.lua import LuaScripts
from kashq.envelope import Envelope

_NAMES = (
    "push", "reserve", "ack", "ack_tagged", "unreserve", "release", "extend", "clear", "find",
    "remove", "list", "list_tag", "oldest", "control_get", "control_delete",
)  # fmt: skip
_JOINED = {
    "push_once": ("push_once", "push"),
    "reserve_counting": (
        "kashq.workflows.batches:count_lib", "reserve_counting", "reserve", "reserve_counted"
    ),
}  # fmt: skip
Step = Callable[[Any], None]
"""One script call, queued on a pipeline (or run, on a :class:`_Direct`) by ``step(target)``."""
_STATES: dict[str, JobState] = {"ready": "ready", "delayed": "delayed", "reserved": "reserved"}


class Scripts:
    """The scripts' sources and SHA1s, and a typed method to queue each one."""

    def __init__(self, client: Any, execute: Callable[..., Any] | None = None) -> None:
        self._client = client
        # Runs one command at once; defaults to the client (a caller may pass a
        # faster path, such as a dedicated connection per thread).
        self._execute = execute or client.execute_command
        self._lua = LuaScripts("kashq.drivers.redis", _NAMES, _JOINED)

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
    def push(self, target: Any, keys: QueueKeys, now: float, jobs: Sequence[Envelope]) -> None:
        """Store ``jobs``, all of the queue of ``keys`` (see :func:`push_chunks`)."""
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
        counts: Sequence[tuple[BatchKeys, Sequence[str]]] = (),
        counted_at: float = 0.0,
    ) -> list[Any]:
        """Reserve up to ``limit`` jobs of one queue under ``token``, acknowledging
        ``acks`` (id, token) first: the whole ``EVALSHA reserve ...`` command. With
        ``counts`` (each batch's keys and completed jobs), those jobs are counted as
        done at ``counted_at`` before anything else, in the same script (its reply:
        :func:`counted_replies`)."""
        names = [keys.jobs, keys.state, keys.ready, keys.delayed, keys.reserved, keys.claims]
        args: list[Any] = [repr(now), repr(lease_s), token, limit, *_flat(acks)]
        if not counts:
            return self._lua.command("reserve", names, args)
        for batch, ids in counts:
            names += (batch.record, batch.jobs)
            args += (*ids, len(ids))
        args += ("done", repr(counted_at), len(counts))
        return self._lua.command("reserve_counting", names, args)

    def ack(self, target: Any, keys: QueueKeys, held: Sequence[tuple[str, str]]) -> None:
        """Acknowledge each (id, token) of ``held``: jobs without tags."""
        self._eval(target, "ack", [keys.jobs, keys.state, keys.reserved, keys.claims], _flat(held))

    def ack_tagged(
        self, target: Any, keys: QueueKeys, held: Sequence[tuple[str, str, Sequence[str]]]
    ) -> None:
        """Acknowledge each (id, token, tags) of ``held``, taking it out of its tags' indexes."""
        fixed = [keys.jobs, keys.state, keys.reserved, keys.claims, keys.tags]
        places: dict[str, int] = {}
        args: list[Any] = []
        for job_id, token, tags in held:
            numbers = [places.setdefault(tag, len(fixed) + 1 + len(places)) for tag in tags]
            args += [job_id, token, len(numbers), *numbers]
        self._eval(target, "ack_tagged", [*fixed, *map(keys.tag, places)], args)

    def ack_steps(
        self, keys: Callable[[str], QueueKeys], reservations: Sequence[Reservation]
    ) -> list[Step]:
        """The ack scripts of ``reservations``: one per queue, and one more for the jobs of
        that queue with tags (see :func:`ack_groups`)."""
        steps: list[Step] = []
        for queue, plain, tagged in ack_groups(reservations):
            of = keys(queue)
            if plain:
                steps.append(lambda t, k=of, h=plain: self.ack(t, k, h))  # type: ignore[misc]
            if tagged:
                steps.append(lambda t, k=of, h=tagged: self.ack_tagged(t, k, h))  # type: ignore[misc]
        return steps

    def unreserve_steps(
        self, keys: Callable[[str], QueueKeys], reservations: Sequence[Reservation]
    ) -> list[Step]:
        """The unreserve scripts of ``reservations``, one per queue."""
        groups = [(keys(queue), held) for queue, held in by_queue(reservations)]
        return [lambda t, k=k, h=h: self.unreserve(t, k, h) for k, h in groups]  # type: ignore[misc]

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
        tags: Sequence[str] = (),
        old_tags: Sequence[str] = (),
    ) -> None:
        """Put a reserved job back; it takes its new place in the indexes of ``tags`` (the
        new envelope's) and leaves those of ``old_tags`` (the old one's) it no longer has."""
        key_list = [
            keys.jobs, keys.state, keys.ready, keys.delayed, keys.reserved, keys.seq,
            keys.wake, keys.claims,
        ]  # fmt: skip
        args: list[Any] = [job_id, token, raw, priority, repr(available_at), repr(now)]
        gone = [tag for tag in old_tags if tag not in tags]
        if tags or gone:
            key_list += [keys.tags, *map(keys.tag, [*tags, *gone])]
            args.append(len(tags))
        self._eval(target, "release", key_list, args)

    def extend(self, target: Any, keys: QueueKeys, job_id: str, token: str, until: float) -> None:
        self._eval(target, "extend", [keys.state, keys.reserved], [job_id, token, repr(until)])

    def clear(self, target: Any, keys: QueueKeys, indexes: Sequence[str]) -> None:
        """Delete the queue, with its tag ``indexes`` (read from ``keys.tags``): the number
        of jobs deleted, or -1 if ``keys.tags`` names another index (read it again)."""
        key_list = [
            keys.jobs, keys.state, keys.ready, keys.delayed, keys.reserved, keys.wake,
            keys.claims, keys.tags, *indexes,
        ]  # fmt: skip
        self._eval(target, "clear", key_list, [])

    def find(self, target: Any, keys: QueueKeys, job_id: str, now: float) -> None:
        """Job ``job_id`` of the queue as it stands at ``now`` (see :func:`found_job`)."""
        self._eval(
            target,
            "find",
            [keys.jobs, keys.state, keys.delayed, keys.reserved],
            [job_id, repr(now)],
        )

    def remove(
        self, target: Any, keys: QueueKeys, job_id: str, now: float, tags: Sequence[str] = ()
    ) -> None:
        """Take job ``job_id`` out of the queue if it is waiting, answering as ``find``
        did just before (see :func:`found_job`); a reserved job is left as it is. A job
        with tags other than ``tags`` is left too, and its tags answered (``"tags", ...``)."""
        key_list = [keys.jobs, keys.state, keys.ready, keys.delayed, keys.reserved]
        if tags:
            key_list += [keys.tags, *map(keys.tag, tags)]
        self._eval(target, "remove", key_list, [job_id, repr(now), *tags])

    def list_page(
        self,
        target: Any,
        keys: QueueKeys,
        state: str,
        now: float,
        *,
        limit: int,
        after: Sequence[str],
    ) -> None:
        """A page of the queue's jobs in ``state`` after the (score, member) ``after``."""
        key_list = [keys.jobs, keys.state, keys.ready, keys.delayed, keys.reserved]
        self._eval(target, "list", key_list, [state, repr(now), limit, *after])

    def list_tag(
        self,
        target: Any,
        keys: QueueKeys,
        tag: str,
        state: str,
        now: float,
        *,
        limit: int,
        after: str,
        walk: int,
    ) -> None:
        """A page of the jobs of ``tag`` in ``state``, after seq ``after`` ('' for the start),
        walking at most ``walk`` entries of the tag's index."""
        key_list = [keys.jobs, keys.state, keys.delayed, keys.reserved, keys.tags, keys.tag(tag)]
        self._eval(target, "list_tag", key_list, [state, repr(now), limit, after, walk])

    def oldest(self, target: Any, keys: QueueKeys, now: float) -> None:
        """The candidates for the queue's oldest ready job (see ``lua/oldest.lua``)."""
        self._eval(target, "oldest", [keys.jobs, keys.state, keys.ready, keys.delayed], [repr(now)])

    def control_get(self, target: Any, key: str, now: float, prefix: str) -> None:
        """Live control records under ``prefix`` as a flat name, value list."""
        self._eval(target, "control_get", [key], [repr(now), prefix])

    def control_delete(self, target: Any, key: str, now: float, name: str) -> None:
        self._eval(target, "control_delete", [key], [repr(now), name])

    def push_command(
        self,
        keys: QueueKeys,
        now: float,
        jobs: Sequence[Envelope],
        *,
        once_s: float | None = None,
    ) -> list[Any]:
        """The whole ``EVALSHA push ...`` command storing ``jobs`` (one queue's), for callers
        that send it themselves. Jobs with tags bring their tags' indexes along.

        With ``once_s``: ``push_once`` of the one job in ``jobs``, its id remembered for
        ``once_s`` seconds (the reply is 0 when it was remembered already)."""
        key_list = [keys.jobs, keys.state, keys.ready, keys.delayed, keys.seq, keys.wake]
        args: list[Any] = [repr(now)]
        places: dict[str, int] = {}
        tagged: list[str] = []  # "j:k,k" for job number j, its tags' KEYS numbers k
        for j, env in enumerate(jobs, 1):
            args += (env.id, env.encode(), env.priority, repr(env.available_at))
            if env.tags:
                numbers = (places.setdefault(tag, 8 + len(places)) for tag in env.tags)
                tagged.append(f"{j}:{','.join(map(str, numbers))}")
        if tagged:
            key_list += [keys.tags, *map(keys.tag, places)]
            args.append(";".join(tagged))
        if once_s is not None:
            return self._lua.command(
                "push_once", [*key_list, keys.once], [*args, repr(now + once_s)]
            )
        return self._lua.command("push", key_list, args)

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


def counted_replies(result: list[Any]) -> tuple[list[Any], list[Any]]:
    """A ``reserve_counting`` reply split: the reserve's own, and each batch's count reply."""
    batches = int(result[-1])
    return result[: -1 - batches], result[-1 - batches : -1]


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


def ack_groups(
    reservations: Sequence[Reservation],
) -> list[tuple[str, list[tuple[str, str]], list[tuple[str, str, tuple[str, ...]]]]]:
    """For each queue of ``reservations`` (first-seen order): the (id, token) of its jobs
    without tags (lua/ack.lua) and the (id, token, tags) of those with tags (ack_tagged).

    A job's tags are read from its envelope text, parsed only when it holds ``"tags"``."""
    groups: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str, tuple[str, ...]]]]] = {}
    for res in reservations:
        plain, tagged = groups.setdefault(res.queue, ([], []))
        if '"tags"' in res.raw:
            tagged.append((res.id, res.token, tags_of(res.raw)))
        else:
            plain.append((res.id, res.token))
    return [(queue, plain, tagged) for queue, (plain, tagged) in groups.items()]


def all_of(steps: Sequence[Step]) -> Step:
    """One step queueing every one of ``steps`` (on one pipeline)."""

    def build(target: Any) -> None:
        for step in steps:
            step(target)

    return build


def by_queue(reservations: Sequence[Reservation]) -> list[tuple[str, list[tuple[str, str]]]]:
    """(queue, [(id, token), ...]) for each queue of ``reservations``, first-seen order."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for res in reservations:
        groups.setdefault(res.queue, []).append((res.id, res.token))
    return list(groups.items())
