"""The Redis driver: Lua-scripted, atomic, Redis Cluster safe.

Works with Redis 6.2+, Valkey and DragonflyDB. Every multi-key step is one
script from ``lua/`` over the keys of one queue (one hash tag). Idle workers
block on the queue's wake-up list instead of polling. Every call goes through
the retry policy of :mod:`.retry`, so the first call after a Redis restart
succeeds, and no reply is awaited longer than the client's reply timeout
(blocking waits are cut into slices shorter than it). Redis errors leave this
module as :class:`~kashq.exceptions.DriverError`, naming the server.

Each tag has an index per queue (:class:`~.keys.QueueKeys`), kept by the scripts
that move a job; a job without tags (read from its envelope text) runs the same
scripts with the same keys as before tags existed. Listings: :mod:`.listing`.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, cast

import redis

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.drivers.base import (
    ONCE_KEEP_S,
    Cleared,
    FoundJob,
    JobListing,
    JobState,
    QueueSizes,
    Reservation,
    RidingCounts,
    Storage,
    check_control_name,
    is_job_id,
    reserve_one,
    tags_of,
)
from kashq.drivers.redis import listing, retry
from kashq.drivers.redis.client import (
    address_of,
    connect,
    failure,
    is_cluster,
    longest_block_s,
)
from kashq.drivers.redis.connection import ThreadConnections
from kashq.drivers.redis.keys import (
    QueueKeys,
    batch_keys,
    control_key,
    jobs_key_pattern,
    queue_keys,
    queue_of_jobs_key,
)
from kashq.drivers.redis.scripts import (
    Scripts,
    all_of,
    counted_replies,
    due_at,
    found_job,
    push_chunks,
    reserved_jobs,
    text_of,
)
from kashq.envelope import Envelope, unique_claim
from kashq.exceptions import DriverError

T = TypeVar("T")
_CLUSTER_WAIT_SLICE_S = 0.05  # a cluster cannot block on keys of several slots at once
_MIN_BLOCK_S = 0.01
_SCAN_COUNT = 1000  # jobs read per HSCAN step while clearing a queue
_TAGGED = '"tags"'  # in the text of every tagged envelope (and of few others)
_RIDING_MAX = 1000  # batch jobs counted in one reserve script at most
_TAG_ROUNDS = 10  # calls a remove or clear makes while a job's tags keep changing


class RedisDriver:
    """Queues in Redis under ``prefix``.

    ``client`` is a URL (see :func:`~kashq.drivers.redis.client.connect`) or a
    redis-py client; ``address`` is how errors name its server.
    """

    def __init__(
        self, client: Any | str, *, prefix: str = "kashq", clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.client = connect(client) if isinstance(client, str) else client
        self.prefix = prefix
        self._clock = clock
        self.address = address_of(self.client)
        self._block_s = longest_block_s(self.client)
        # A cluster pipeline cannot mix slots atomically; run steps one by one there.
        self._pipelines = not is_cluster(self.client)
        # Plain Redis: each thread sends its scripts on a connection of its own.
        self._connections = ThreadConnections(self.client)
        self._scripts = Scripts(self.client, self._execute if self._pipelines else None)
        self._keys: dict[str, QueueKeys] = {}
        self._control_key = control_key(prefix)

    @property
    def storage(self) -> Storage:
        return Storage("redis", self.client, prefix=self.prefix, clock=self._clock)

    def keys(self, queue: str) -> QueueKeys:
        found = self._keys.get(queue)
        if found is None:
            found = self._keys[queue] = queue_keys(self.prefix, queue)
        return found

    # -- producing ------------------------------------------------------
    def push(self, envelope: Envelope) -> None:
        if not self._pipelines:
            self.push_many((envelope,))
            return
        command = self._scripts.push_command(self.keys(envelope.queue), self._now(), (envelope,))
        self._call(lambda: self._execute(*command))

    def push_many(self, envelopes: Sequence[Envelope]) -> None:
        now = self._now()
        if not self._pipelines:  # a cluster: one script call per queue (one slot each)
            for queue, chunk in push_chunks(envelopes):
                keys = self.keys(queue)
                self._run(lambda t, k=keys, c=chunk: self._scripts.push(t, k, now, c))  # type: ignore[misc]
            return
        self._call(lambda: self._stream(lambda: self._push_commands(envelopes, now)))

    def push_once(self, envelope: Envelope, keep_s: float = ONCE_KEEP_S) -> bool:
        keys, now = self.keys(envelope.queue), self._now()
        command = self._scripts.push_command(keys, now, (envelope,), once_s=keep_s)
        return bool(self._run(lambda t: self._scripts.send(t, command))[0])

    def _push_commands(self, envelopes: Sequence[Envelope], now: float) -> Iterator[list[Any]]:
        for queue, chunk in push_chunks(envelopes):
            yield self._scripts.push_command(self.keys(queue), now, chunk)

    # -- consuming ------------------------------------------------------
    def reserve(
        self,
        queues: Sequence[str],
        *,
        lease_s: float,
        wait_s: float = 0.0,
        ack: Reservation | None = None,
    ) -> Reservation | None:
        return reserve_one(self, queues, lease_s=lease_s, wait_s=wait_s, ack=ack)

    def reserve_batch(
        self,
        queues: Sequence[str],
        *,
        lease_s: float,
        wait_s: float = 0.0,
        acks: Sequence[Reservation] = (),
        limit: int = 1,
        counts: RidingCounts | None = None,
    ) -> list[Reservation]:
        """Up to ``limit`` jobs of the first queue of ``queues`` that has any, in one round trip.

        ``acks`` are acknowledged first, in the same round trip; ``counts`` (where
        :meth:`counts_ride` allows) are counted before them, in the same script. The
        first job is delivered as :meth:`reserve` delivers it; the others are
        prefetched: their leases run from now, and if their worker vanishes their
        delivery is not counted (see ``lua/reserve.lua``).
        """
        deadline = time.monotonic() + wait_s
        token = os.urandom(8).hex()  # the same token on a retry: the same job comes back
        found, next_due = self._reserve_pass(queues, lease_s, token, acks, limit, counts=counts)
        while not found:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            until_due = next_due - self._now()
            wait_s = min(remaining, max(until_due, _MIN_BLOCK_S))
            if self._pipelines and len(queues) == 1 and until_due >= remaining:
                # Nothing falls due meanwhile: only a push can bring a job.
                found, next_due = self._wait_then_reserve(queues[0], wait_s, lease_s, token, limit)
            else:
                self.wait(queues, wait_s)
                found, next_due = self._reserve_pass(queues, lease_s, token, (), limit)
        return found

    def _reserve_pass(
        self,
        queues: Sequence[str],
        lease_s: float,
        token: str,
        acks: Sequence[Reservation],
        limit: int,
        *,
        counts: RidingCounts | None = None,
    ) -> tuple[list[Reservation], float]:
        """One reserve of each queue in turn: the jobs of the first that has any, or
        none and the earliest time a delayed job or a lease falls due (inf: none)."""
        next_due = float("inf")
        for queue in queues:
            result = self._reserve_one(queue, lease_s, token, acks, limit, counts=counts)
            acks, counts = (), None
            if result[0]:
                return reserved_jobs(queue, result), next_due
            next_due = min(next_due, due_at(result))
        return [], next_due

    def _wait_then_reserve(
        self, queue: str, wait_s: float, lease_s: float, token: str, limit: int
    ) -> tuple[list[Reservation], float]:
        """Block for the queue's wake-up token and reserve right after, in one round trip;
        as :meth:`_reserve_pass` answers.

        Redis runs a command sent behind a blocking one as soon as that one
        returns, so a job pushed to an idle worker is reserved without a
        second round trip. The reserve's ``now`` is read before the wait, so
        its leases start up to the wait early: the wait is kept within an
        eighth of the lease. A retry (after a lost connection or script cache)
        only reserves: it neither waits again nor reuses the old ``now``.
        """
        keys = self.keys(queue)
        block_s = max(min(wait_s, self._block_s, lease_s / 8), _MIN_BLOCK_S)
        tries = 0

        def attempt() -> Any:
            nonlocal tries
            tries += 1
            now = self._now()
            reserve = self._scripts.reserve_command(keys, now, lease_s, token=token, limit=limit)
            if tries > 1:
                return self._stream(lambda: iter([reserve]))[0]
            return self._stream(lambda: iter([["BLPOP", keys.wake, repr(block_s)], reserve]))[1]

        result = self._call(attempt)
        if result[0]:
            return reserved_jobs(queue, result), float("inf")
        return [], due_at(result)

    def counts_ride(self, queue: str, acks: Sequence[Reservation], jobs: int) -> bool:
        """Whether batch counts can go in the reserve script of ``queue`` acknowledging
        ``acks``: on plain Redis (a batch's keys are another hash tag), when that script
        acknowledges every one of them (same queue, no tags), for up to 1,000 jobs."""
        return (
            self._pipelines
            and jobs <= _RIDING_MAX
            and all(a.queue == queue and _TAGGED not in a.raw for a in acks)
        )

    def _reserve_one(
        self,
        queue: str,
        lease_s: float,
        token: str,
        acks: Sequence[Reservation],
        limit: int,
        *,
        counts: RidingCounts | None = None,
    ) -> list[Any]:
        """Reserve from ``queue``, acknowledging ``acks`` first in the same round trip (those
        of this queue without tags in the reserve script, the others beside it); ``counts``
        are counted first of all, in the script."""
        keys = self.keys(queue)
        same = [(a.id, a.token) for a in acks if a.queue == queue and _TAGGED not in a.raw]
        others = [a for a in acks if a.queue != queue or _TAGGED in a.raw]
        if counts is not None and (others or not self._pipelines):
            raise ValueError("batch counts cannot ride with these acks (see counts_ride)")
        if others and not self._pipelines:
            self.ack_many(others)
            others = []
        batches = (
            []
            if counts is None
            else [(batch_keys(self.prefix, b), ids) for b, ids in counts.jobs.items()]
        )

        def command() -> list[Any]:
            return self._scripts.reserve_command(
                keys, self._now(), lease_s, token=token, limit=limit, acks=same,
                counts=batches, counted_at=0.0 if counts is None else counts.now,
            )  # fmt: skip

        if not others:  # one script does it all: same queue, same slot (counts: first)
            result: list[Any] = self._run(lambda t: self._scripts.send(t, command()))[0]
            if counts is not None:
                result, replies = counted_replies(result)
                counts.replies = dict(zip(counts.jobs, replies, strict=True))
            return result

        def build(pipe: Any) -> None:
            for step in self._scripts.ack_steps(self.keys, others):
                step(pipe)
            self._scripts.send(pipe, command())

        return self._run(build, pipeline=True)[-1]  # type: ignore[no-any-return]

    def ack(self, reservation: Reservation) -> None:
        self.ack_many((reservation,))

    def ack_many(self, reservations: Sequence[Reservation]) -> None:
        """Acknowledge several finished jobs, in one round trip where the queues allow."""
        self._run_steps(self._scripts.ack_steps(self.keys, reservations))

    def unreserve(self, reservations: Sequence[Reservation]) -> None:
        """Give jobs this worker will not run back to their queues, as they were.

        Each keeps its place in its queue, and its delivery is not counted. A
        reservation that is no longer held (its lease lapsed) is skipped.
        """
        self._run_steps(self._scripts.unreserve_steps(self.keys, reservations))

    def _run_steps(self, steps: Sequence[Callable[[Any], None]]) -> None:
        """Run script steps: one round trip in all where pipelines work, else one each."""
        if len(steps) > 1 and self._pipelines:
            self._run(all_of(steps), pipeline=True)
            return
        for step in steps:
            self._run(step)

    def release(self, reservation: Reservation, envelope: Envelope) -> None:
        keys, now = self.keys(reservation.queue), self._now()
        raw, old_tags = envelope.encode(), tags_of(reservation.raw)
        self._run(
            lambda t: self._scripts.release(
                t, keys, reservation.id, reservation.token, raw=raw,
                priority=envelope.priority, available_at=envelope.available_at, now=now,
                tags=tuple(dict.fromkeys(envelope.tags)), old_tags=old_tags,
            )
        )  # fmt: skip

    def extend(self, reservation: Reservation, lease_s: float) -> bool:
        keys, until = self.keys(reservation.queue), self._now() + lease_s
        result = self._run(
            lambda t: self._scripts.extend(t, keys, reservation.id, reservation.token, until)
        )
        return bool(result[0])

    # -- inspecting -----------------------------------------------------
    def sizes(self, queues: Sequence[str]) -> dict[str, QueueSizes]:
        now = repr(self._now())

        def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for queue in queues:
                keys = self.keys(queue)
                pipe.zcard(keys.ready)
                pipe.zcount(keys.delayed, "-inf", now)
                pipe.zcount(keys.delayed, f"({now}", "+inf")
                pipe.zcard(keys.reserved)
            return list(pipe.execute())

        counts = self._call(run)
        result = {}
        for i, queue in enumerate(queues):
            ready, due, delayed, reserved = counts[4 * i : 4 * i + 4]
            result[queue] = QueueSizes(int(ready) + int(due), int(delayed), int(reserved))
        return result

    def queue_names(self) -> list[str]:
        # A queue's jobs hash exists exactly while it holds a job in any state
        # (Redis drops empty hashes). On a cluster, scan_iter walks every primary.
        pattern = jobs_key_pattern(self.prefix)
        keys = self._call(lambda: list(self.client.scan_iter(match=pattern, count=1000)))
        names = {queue_of_jobs_key(self.prefix, text_of(key)) for key in keys}
        return sorted(name for name in names if name is not None)

    def find(self, job_id: str, queues: Sequence[str] | None = None) -> FoundJob | None:
        """One read-only script per queue looked at, all in one pipeline (on a cluster, one
        round trip per node); without ``queues``, every queue :meth:`queue_names` lists."""
        if not is_job_id(job_id):
            return None
        names, now = (self.queue_names() if queues is None else list(queues)), self._now()

        def build(pipe: Any) -> None:
            for queue in names:
                self._scripts.find(pipe, self.keys(queue), job_id, now)

        replies = self._run(build, pipeline=True) if names else []
        found = (found_job(queue, reply) for queue, reply in zip(names, replies, strict=True))
        return next((job for job in found if job is not None), None)

    def remove(self, job_id: str, queues: Sequence[str] | None = None) -> FoundJob | None:
        """One atomic script per queue looked at, in turn, stopping at the first that holds
        the job, as :meth:`find` answers (a copy of the id in a later queue stays); without
        ``queues``, every queue :meth:`queue_names` lists."""
        if not is_job_id(job_id):
            return None
        for queue in self.queue_names() if queues is None else queues:
            found = found_job(queue, self._remove_from(queue, job_id))
            if found is not None:
                return found
        return None

    def _remove_from(self, queue: str, job_id: str) -> list[Any]:
        """The remove script's reply; a job with tags takes a second call with them."""
        keys, tags = self.keys(queue), cast(tuple[str, ...], ())
        for _ in range(_TAG_ROUNDS):
            reply = self._run(
                lambda t, g=tags: self._scripts.remove(t, keys, job_id, self._now(), g)  # type: ignore[misc]
            )[0]
            if not reply or text_of(reply[0]) != "tags":
                return reply  # type: ignore[no-any-return]
            tags = tuple(text_of(tag) for tag in reply[1:])
        raise DriverError(f"removing job {job_id} from {queue}: its tags kept changing")

    def clear(self, queue: str) -> Cleared:
        """Collect the unique claims of the queue's jobs, then delete them all.

        The scan runs before the delete, not in one script, so a large queue
        never blocks Redis: a job pushed in between is deleted with its claim
        left to expire, as before; freeing the claim of a job that finished
        in between is harmless (its token no longer matches).
        """
        keys = self.keys(queue)

        def claims() -> tuple[tuple[str, str], ...]:
            raws = self.client.hscan_iter(keys.jobs, count=_SCAN_COUNT)
            return tuple(filter(None, (unique_claim(text_of(raw)) for _, raw in raws)))

        found = self._call(claims)
        for _ in range(_TAG_ROUNDS):  # again if a job got a new tag meanwhile
            indexes = [text_of(key) for key in self._call(lambda: self.client.smembers(keys.tags))]
            count = int(self._run(lambda t, i=indexes: self._scripts.clear(t, keys, i))[0])  # type: ignore[misc]
            if count >= 0:
                return Cleared(count, found)
        raise DriverError(f"clearing {queue}: new tags kept coming")

    def list_jobs(
        self,
        queue: str,
        state: JobState,
        *,
        limit: int = 50,
        cursor: str | None = None,
        tag: str | None = None,
    ) -> JobListing:
        """One script call per page, O(limit + log n) (see :mod:`.listing`)."""
        return listing.page(
            self._run, self._scripts, self.keys(queue), queue, state,
            limit=limit, cursor=cursor, tag=tag, now=self._now,
        )  # fmt: skip

    def oldest_ready(self, queues: Sequence[str]) -> dict[str, float | None]:
        """One read-only script per queue, in one pipeline (see :func:`.listing.oldest`)."""
        return listing.oldest(self._run, self._scripts, self.keys, queues, self._now())

    # -- control records ------------------------------------------------
    def put_control(self, name: str, value: str, ttl_s: float | None = None) -> None:
        check_control_name(name)
        expires_at = None if ttl_s is None else self._now() + ttl_s
        record = json.dumps({"v": value, "exp": expires_at})
        self._call(lambda: self.client.hset(self._control_key, name, record))

    def get_control(self, prefix: str = "") -> dict[str, str]:
        now, key = self._now(), self._control_key
        flat = self._run(lambda t: self._scripts.control_get(t, key, now, prefix))[0]
        return dict(
            sorted((text_of(flat[i]), text_of(flat[i + 1])) for i in range(0, len(flat), 2))
        )

    def delete_control(self, name: str) -> bool:
        now, key = self._now(), self._control_key
        return bool(self._run(lambda t: self._scripts.control_delete(t, key, now, name))[0])

    def close(self) -> None:
        self._connections.close()
        self.client.close()

    # -- internals ------------------------------------------------------
    def _now(self) -> float:
        return self._clock.time()

    def _execute(self, *args: Any) -> Any:
        """Send one command on this thread's own connection and read the reply."""
        return self._stream(lambda: iter((list(args),)))[0]

    def _stream(self, commands: Callable[[], Iterator[list[Any]]]) -> list[Any]:
        """Send ``commands()`` on this thread's connection, then read every reply."""
        return self._connections.stream(commands)

    def _run(self, build: Callable[[Any], None], *, pipeline: bool = False) -> list[Any]:
        return self._call(lambda: self._scripts.run(build, pipeline=pipeline))

    def wait(self, queues: Sequence[str], timeout_s: float) -> bool:
        """Block until a job is pushed to one of ``queues`` (True) or ``timeout_s`` passes.

        Takes the wake-up token the push left, as an idle ``reserve`` does. One
        BLPOP never outlasts the reply timeout (a longer wait is several); on a
        cluster, where one BLPOP cannot span slots, queues take turns.
        """
        end = time.monotonic() + max(timeout_s, _MIN_BLOCK_S)
        if self._pipelines or len(queues) == 1:
            groups, longest_s = [[self.keys(q).wake for q in queues]], self._block_s
        else:
            groups = [[self.keys(q).wake] for q in queues]
            longest_s = min(self._block_s, _CLUSTER_WAIT_SLICE_S)
        for wake in itertools.cycle(groups):
            left_s = end - time.monotonic()
            if left_s <= 0:
                return False
            block_s = max(min(left_s, longest_s), _MIN_BLOCK_S)
            if self._call(lambda w=wake, b=block_s: self.client.blpop(w, timeout=b)):  # type: ignore[misc]
                return True
        return False

    def _call(self, fn: Callable[[], T]) -> T:
        """``fn()`` under the retry policy, its Redis errors one line naming the server."""
        try:
            return retry.call(fn, reload_scripts=self._scripts.load)
        except redis.RedisError as exc:
            raise failure(exc, self.address) from exc
