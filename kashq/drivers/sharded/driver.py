"""The sharded driver: one logical connection over several Redis servers.

New jobs go to a shard chosen by the strategy (:mod:`.strategy`); workers
take jobs from every shard in turn, so none starves while another has work.
A reservation remembers its shard in its token (``"<index>:<token>"``), so
acks, releases and lease renewals go back to the server holding the job.

A shard that fails is skipped for ``retry_down_s`` (doubling while it keeps
failing, up to 10 s), then probed by one caller while the others go on
skipping it; no reply takes longer than ``SHARD_REPLY_TIMEOUT_S``, so a hung
server costs one probe, not every worker. Meanwhile ``round_robin`` and
``least_loaded`` place new jobs on the others, workers keep consuming from the
others, and ``hash`` (whose jobs belong to exactly one shard) raises a
:class:`DriverError` naming it. Locks, the event store and
control records (``queue:restart``) live on the first shard.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.drivers.base import (
    ONCE_KEEP_S,
    Cleared,
    FoundJob,
    JobListing,
    JobState,
    QueueSizes,
    Reservation,
    Storage,
    is_job_id,
)
from kashq.drivers.redis import RedisDriver
from kashq.drivers.redis.client import REPLY_TIMEOUT_S, connect
from kashq.drivers.sharded import listing
from kashq.drivers.sharded.ring import HashRing
from kashq.drivers.sharded.shard import Shard, never_connected, shard_name, wait_after, what_failed
from kashq.drivers.sharded.strategy import ShardStrategy, chooser_for
from kashq.drivers.sharded.wake import WakeWatch
from kashq.envelope import Envelope
from kashq.exceptions import ConfigError, DriverError

log = logging.getLogger(__name__)
T = TypeVar("T")

_LOOK_AGAIN_S = 0.25  # an idle reserve looks at every shard at least this often (delayed jobs)
_BURST = 8  # jobs taken from one shard in a row before the next shard goes first
_MAX_UNACKED = 10_000  # acks kept for a shard that is down (else redelivered by lease)
# A shard that stops answering (a hung host) must not hang the workers reading from it:
# the Redis driver's reply timeout (blocking reads are cut shorter than it).
SHARD_REPLY_TIMEOUT_S = REPLY_TIMEOUT_S


class ShardedDriver:
    """Queues spread over several Redis servers (``kashq.ShardedDriver``).

    ``shards`` are Redis URLs (or :class:`RedisDriver` instances); their order
    matters to in-flight reservations, so keep it stable while jobs run.
    ``reply_timeout_s`` bounds every read from a shard given by URL; it must be
    longer than the wake-up watchers' 1 s wait. ``kashq.ShardedQueue`` is an
    older name for this class.
    """

    def __init__(
        self,
        shards: Sequence[str | RedisDriver],
        *,
        strategy: ShardStrategy | str = ShardStrategy.LEAST_LOADED,
        prefix: str = "kashq",
        clock: Clock = SYSTEM_CLOCK,
        retry_down_s: float = 1.0,
        reply_timeout_s: float = SHARD_REPLY_TIMEOUT_S,
    ) -> None:
        if not shards:
            raise ConfigError("a sharded connection needs at least one Redis URL (KASHQ_SHARDS)")
        try:
            self.strategy = ShardStrategy(strategy)
        except ValueError:
            choices = ", ".join(s.value for s in ShardStrategy)
            raise ConfigError(f"unknown shard strategy {strategy!r}: expected {choices}") from None
        drivers = [
            s
            if isinstance(s, RedisDriver)
            else RedisDriver(
                connect(s, socket_timeout_s=reply_timeout_s), prefix=prefix, clock=clock
            )
            for s in shards
        ]
        names = [shard_name(s) for s in shards]
        if len(set(names)) != len(names):
            for driver in drivers:
                driver.close()
            raise ConfigError(f"the same Redis server is listed twice in the shards: {names}")
        self.shards = [Shard(i, n, d) for i, (n, d) in enumerate(zip(names, drivers, strict=True))]
        self.prefix = prefix
        self._retry_down_s = retry_down_s
        self._chooser = chooser_for(self.strategy, names, self._ready_counts)
        self._owners = HashRing(names)  # push_once's shard of each id
        self._rotation = 0
        self._local = threading.local()
        self._unacked: list[tuple[int, Reservation]] = []  # (shard index, its reservation)
        self._watches: dict[tuple[str, ...], WakeWatch] = {}
        self._lock = threading.Lock()

    @property
    def primary(self) -> RedisDriver:
        """The first shard's driver: where locks, events and control records live."""
        return self.shards[0].driver

    @property
    def storage(self) -> Storage:
        """The first shard's: one set of locks and one event stream for all shards."""
        return self.primary.storage

    # -- producing ------------------------------------------------------
    def push(self, envelope: Envelope) -> None:
        self.push_many((envelope,))

    def push_many(self, envelopes: Sequence[Envelope]) -> None:
        latest = {env.id: env for env in envelopes}  # a repeated id: its last copy counts
        self._place(latest.values(), tried=frozenset())

    def push_once(self, envelope: Envelope, keep_s: float = ONCE_KEEP_S) -> bool:
        """On the id's own shard (its owner on the ring) whatever the strategy: the one
        place that remembers it. That shard down: a :class:`DriverError` naming it."""
        index = self._owners.index(envelope.id)
        return self._on(index, lambda driver: driver.push_once(envelope, keep_s))

    def _place(self, envelopes: Iterable[Envelope], tried: frozenset[int]) -> None:
        groups: dict[int, list[Envelope]] = {}
        for env in envelopes:
            index = self._target(env, tried)
            groups.setdefault(index, []).append(env)
            self._chooser.placed(index, env.queue, 1)
        failures: list[str] = []
        for index, group in groups.items():
            shard = self.shards[index]
            try:
                shard.driver.push_many(group)
                self._up_again(shard)
            except DriverError as exc:
                self._went_down(shard, exc)
                if self.strategy is not ShardStrategy.HASH and never_connected(exc):
                    self._place(group, tried | {index})  # to the next shard (raises if none)
                    continue
                failures.append(f"{len(group)} job(s) for shard {shard.name}: {what_failed(exc)}")
        if failures:
            why = (
                "hash sharding stores a job only on its own shard, which is down"
                if self.strategy is ShardStrategy.HASH
                else "the shard failed after the jobs were sent, so they may be stored there"
            )
            raise DriverError(f"{why}; not confirmed: " + "; ".join(failures))

    def _target(self, env: Envelope, tried: frozenset[int]) -> int:
        order = [i for i in self._chooser.order(env.id, env.queue) if i not in tried]
        if self.strategy is ShardStrategy.HASH:
            return order[0] if order else -1  # never empty: hash is only tried once
        if not order:
            raise DriverError(f"every shard is down: {', '.join(s.name for s in self.shards)}")
        return next((i for i in order if self._usable(self.shards[i])), order[0])

    # -- consuming ------------------------------------------------------
    def reserve(
        self,
        queues: Sequence[str],
        *,
        lease_s: float,
        wait_s: float = 0.0,
        ack: Reservation | None = None,
    ) -> Reservation | None:
        deadline = time.monotonic() + wait_s
        inner_ack = None if ack is None else self._inner(ack)
        start = self._first_shard(inner_ack)
        self._retry_unacked()
        if inner_ack is not None and (inner_ack[0] != start or self.shards[start].down):
            self._ack_now(*inner_ack)
            inner_ack = None
        watch = self._watch(queues) if wait_s > 0 else None
        while True:
            seen = watch.wakes if watch is not None else 0
            found = self._sweep(queues, start, lease_s=lease_s, ack=inner_ack)
            if found is not None:
                return found
            inner_ack = None
            remaining = deadline - time.monotonic()
            if watch is None or remaining <= 0:
                return None
            watch.wait(seen, min(remaining, _LOOK_AGAIN_S))

    def _sweep(
        self,
        queues: Sequence[str],
        start: int,
        *,
        lease_s: float,
        ack: tuple[int, Reservation] | None,
    ) -> Reservation | None:
        """Try every usable shard once from ``start``; DriverError if none answered."""
        errors: list[str] = []
        answered = 0
        for step in range(len(self.shards)):
            shard = self.shards[(start + step) % len(self.shards)]
            if not self._usable(shard):
                continue
            with_ack = ack[1] if ack is not None and ack[0] == shard.index else None
            try:
                found = shard.driver.reserve(queues, lease_s=lease_s, ack=with_ack)
            except DriverError as exc:
                self._went_down(shard, exc)
                errors.append(f"{shard.name}: {what_failed(exc)}")
                if with_ack is not None:
                    self._keep_unacked(shard.index, with_ack)
                continue
            self._up_again(shard)
            if found is not None:
                self._took_from(shard.index)
                return dataclasses.replace(found, token=f"{shard.index}:{found.token}")
            answered += 1
        if answered == 0:
            down = "; ".join(errors) or ", ".join(s.name for s in self.shards)
            raise DriverError(f"every shard is down: {down}")
        return None

    def _watch(self, queues: Sequence[str]) -> WakeWatch:
        key = tuple(queues)
        with self._lock:
            watch = self._watches.get(key)
            if watch is None:
                drivers = [shard.driver for shard in self.shards]
                watch = self._watches[key] = WakeWatch(
                    drivers, key, on_error=self._watch_failed, on_answer=self._watch_answered
                )
            return watch

    def _watch_failed(self, index: int, exc: DriverError) -> None:
        shard = self.shards[index]
        if not shard.down:  # a watcher's retries do not lengthen the workers' wait
            self._went_down(shard, exc)

    def _watch_answered(self, index: int) -> None:
        self._up_again(self.shards[index])

    def _first_shard(self, ack: tuple[int, Reservation] | None) -> int:
        """Where this thread's next reserve starts: the same shard for a short burst
        (its ack rides along with the reserve), then the next one, in turn."""
        last = getattr(self._local, "last", None)
        streak = getattr(self._local, "streak", 0)
        if last is not None and streak < _BURST and ack is not None and ack[0] == last:
            return int(last)
        self._local.streak = 0
        with self._lock:
            self._rotation = (self._rotation + 1) % len(self.shards)
            return self._rotation

    def _took_from(self, index: int) -> None:
        if getattr(self._local, "last", None) == index:
            self._local.streak = getattr(self._local, "streak", 0) + 1
        else:
            self._local.last, self._local.streak = index, 1

    def ack(self, reservation: Reservation) -> None:
        """Acknowledge on the job's shard; for a shard that is down, the ack is kept
        and sent once it is back (see :meth:`_keep_unacked`)."""
        found = self._inner(reservation)
        if found is not None:
            self._ack_now(*found)

    def release(self, reservation: Reservation, envelope: Envelope) -> None:
        found = self._inner(reservation)
        if found is not None:
            self._on(found[0], lambda driver: driver.release(found[1], envelope))

    def extend(self, reservation: Reservation, lease_s: float) -> bool:
        found = self._inner(reservation)
        return found is not None and self._on(found[0], lambda d: d.extend(found[1], lease_s))

    def _ack_now(self, index: int, inner: Reservation) -> None:
        if not self._usable(self.shards[index]):
            self._keep_unacked(index, inner)
            return
        try:
            self._on(index, lambda driver: driver.ack(inner))
        except DriverError:
            self._keep_unacked(index, inner)

    def _keep_unacked(self, index: int, inner: Reservation) -> None:
        """Remember an ack for a shard that is down; it is sent when the shard is back
        (if the job's lease lapsed first, the job runs again: at least once)."""
        with self._lock:
            if len(self._unacked) >= _MAX_UNACKED:
                _, dropped = self._unacked.pop(0)
                log.warning("dropping the ack of job %s: its shard stays down", dropped.id)
            self._unacked.append((index, inner))

    def _retry_unacked(self) -> None:
        if not self._unacked:
            return
        with self._lock:
            pending, self._unacked = self._unacked, []
        for index, inner in pending:
            self._ack_now(index, inner)  # kept again while its shard is down

    # -- inspecting -----------------------------------------------------
    def sizes(self, queues: Sequence[str]) -> dict[str, QueueSizes]:
        total = {queue: QueueSizes() for queue in queues}
        for shard in self.shards:
            sizes = self._on(shard.index, lambda d: d.sizes(queues))
            total = {queue: total[queue] + sizes[queue] for queue in queues}
        return total

    def reachable_sizes(self, queues: Sequence[str]) -> dict[str, QueueSizes]:
        """Sizes summed over the shards that answer: what ``--stop-when-empty`` waits for.

        A shard that is down is left out (a warning says so, once while it stays
        down): its jobs wait on it and run once it is back, as Sidekiq or Celery
        workers keep going on the brokers they reach. DriverError if none answers.
        """
        total = {queue: QueueSizes() for queue in queues}
        answered = 0
        for shard in self.shards:
            sizes = self._sizes_on(shard, queues) if self._usable(shard) else None
            if sizes is None:
                self._leave_out(shard)
                continue
            answered += 1
            total = {queue: total[queue] + sizes[queue] for queue in queues}
        if not answered:
            raise DriverError(f"every shard is down: {', '.join(s.name for s in self.shards)}")
        return total

    def shard_sizes(self, queues: Sequence[str]) -> list[dict[str, QueueSizes] | None]:
        """Sizes on each shard, by index; None for a shard that is down."""
        return [self._sizes_on(shard, queues) for shard in self.shards]

    def _sizes_on(self, shard: Shard, queues: Sequence[str]) -> dict[str, QueueSizes] | None:
        try:
            return self._on(shard.index, lambda d: d.sizes(queues))
        except DriverError:
            return None

    def _leave_out(self, shard: Shard) -> None:
        with self._lock:
            warned, shard.left_out = shard.left_out, True
        if not warned:
            log.warning(
                "shard %s is down: its jobs are not counted and wait until it is back", shard.name
            )

    def find(self, job_id: str, queues: Sequence[str] | None = None) -> FoundJob | None:
        """Ask the shards in turn (under ``hash``, the id's own shard first: its jobs land
        there) and stop at the job. A shard that is down is skipped if another has the
        job; if none has it, DriverError naming the down shard (it may hold the job)."""
        return self._look_for(job_id, lambda d: d.find(job_id, queues))

    def remove(self, job_id: str, queues: Sequence[str] | None = None) -> FoundJob | None:
        """Remove on the shards in turn, as :meth:`find` looks, stopping at the first that
        removed the job or holds it reserved (each shard's removal is atomic); a down
        shard is skipped if another had the job, else DriverError naming it."""
        return self._look_for(job_id, lambda d: d.remove(job_id, queues))

    def _look_for(
        self, job_id: str, step: Callable[[RedisDriver], FoundJob | None]
    ) -> FoundJob | None:
        """The first job ``step`` answers on the shards in :meth:`find`'s order."""
        if not is_job_id(job_id):
            return None
        order = list(range(len(self.shards)))
        if self.strategy is ShardStrategy.HASH:
            owner = self._chooser.order(job_id, "")[0]
            order.sort(key=lambda index: index != owner)
        errors: list[str] = []
        for index in order:
            if not self._usable(self.shards[index]):
                errors.append(f"shard {self.shards[index].name} is down")
                continue
            try:
                found = self._on(index, step)
            except DriverError as exc:
                errors.append(str(exc))
                continue
            if found is not None:
                return found
        if errors:
            raise DriverError(f"job {job_id} is on no shard that answered; " + "; ".join(errors))
        return None

    def list_jobs(
        self,
        queue: str,
        state: JobState,
        *,
        limit: int = 50,
        cursor: str | None = None,
        tag: str | None = None,
    ) -> JobListing:
        """Shard by shard, in their order (see :mod:`.listing`); a down shard is a DriverError."""
        return listing.page(
            self.shards, self._on, self._usable, queue, state, limit=limit, cursor=cursor, tag=tag
        )

    def oldest_ready(self, queues: Sequence[str]) -> dict[str, float | None]:
        """The earliest over the shards; a down shard is a DriverError naming it."""
        return listing.oldest(self.shards, self._on, self._usable, queues)

    def queue_names(self) -> list[str]:
        names: set[str] = set()
        for shard in self.shards:
            names.update(self._on(shard.index, lambda d: d.queue_names()))
        return sorted(names)

    def clear(self, queue: str) -> Cleared:
        cleared = [self._on(shard.index, lambda d: d.clear(queue)) for shard in self.shards]
        return Cleared(
            sum(c.count for c in cleared), tuple(claim for c in cleared for claim in c.claims)
        )

    def _ready_counts(self, queue: str) -> list[int | None]:
        counts: list[int | None] = []
        for shard in self.shards:
            if not self._usable(shard):
                counts.append(None)
                continue
            try:
                counts.append(self._on(shard.index, lambda d: d.sizes([queue])[queue].ready))
            except DriverError:
                counts.append(None)
        return counts

    # -- control records: on the first shard ----------------------------
    def put_control(self, name: str, value: str, ttl_s: float | None = None) -> None:
        self._on(0, lambda d: d.put_control(name, value, ttl_s))

    def get_control(self, prefix: str = "") -> dict[str, str]:
        return self._on(0, lambda d: d.get_control(prefix))

    def delete_control(self, name: str) -> bool:
        return self._on(0, lambda d: d.delete_control(name))

    def close(self) -> None:
        with self._lock:
            watches, self._watches = list(self._watches.values()), {}
            unacked, self._unacked = self._unacked, []
        for index, inner in unacked:  # a last try; what stays unsent runs again (at least once)
            with contextlib.suppress(DriverError):
                self._on(index, lambda driver, job=inner: driver.ack(job))  # type: ignore[misc]
        for watch in watches:
            watch.close()
        for shard in self.shards:
            shard.driver.close()

    # -- internals ------------------------------------------------------
    def _on(self, index: int, step: Callable[[RedisDriver], T]) -> T:
        """Run ``step`` on shard ``index``; a failure names the shard and marks it down."""
        shard = self.shards[index]
        try:
            result = step(shard.driver)
        except DriverError as exc:
            self._went_down(shard, exc, quiet=True)  # the caller hears of it
            raise DriverError(f"shard {shard.name}: {what_failed(exc)}") from exc
        self._up_again(shard)
        return result

    def _inner(self, reservation: Reservation) -> tuple[int, Reservation] | None:
        """The shard index and that shard's own reservation; None for a token that no
        shard of this connection gave out (acking or renewing it does nothing, like a
        stale token on one server)."""
        index, sep, token = reservation.token.partition(":")
        if not (sep and index.isascii() and index.isdigit() and int(index) < len(self.shards)):
            return None
        return int(index), dataclasses.replace(reservation, token=token)

    def _usable(self, shard: Shard) -> bool:
        """Whether to use ``shard`` now. A down shard is due for one probe when its
        wait is over: the caller that gets True is the prober, and everyone else keeps
        skipping the shard meanwhile (a hung server costs one thread, not all)."""
        if not shard.down:
            return True
        now = time.monotonic()
        with self._lock:
            if now < shard.down_until:
                return False
            shard.down_until = now + wait_after(shard.failures, self._retry_down_s)
            return True

    def _went_down(self, shard: Shard, exc: Exception, *, quiet: bool = False) -> None:
        with self._lock:
            shard.failures += 1
            shard.down_until = time.monotonic() + wait_after(shard.failures, self._retry_down_s)
            was_down, shard.down = shard.down, True
        if not was_down and not quiet:
            log.warning("shard %s is down (%s); skipping it for now", shard.name, what_failed(exc))

    def _up_again(self, shard: Shard) -> None:
        if shard.down:
            with self._lock:
                shard.down, shard.failures, shard.left_out = False, 0, False
            log.info("shard %s is back", shard.name)
