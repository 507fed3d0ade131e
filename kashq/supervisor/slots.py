"""Shared-memory slots: what each worker process is running, readable by its supervisor.

The supervisor creates one file (unlinked at once, inherited by the worker
processes as a file descriptor) holding one fixed-size slot per worker. A
worker writes into its slot the reservation it is running and the deadline of
the attempt; the supervisor reads the deadlines to kill a process whose job
ran past its timeout — even one stuck in C code, which no thread inside the
process could interrupt — and the worker started in its place reads the slot
to settle the job its predecessor left behind. Writing a slot costs a memory
copy, no system call.

A worker that prefetches holds more than the job it runs: the jobs of its
last batch still waiting to run, and the jobs it completed whose
acknowledgements ride on its next reserve. The slot records those too (their
id, queue and token: all that acknowledging or giving back takes), so a
replacement acknowledges the completed ones and gives the waiting ones back at
once, instead of running the first again and leaving the others to their
leases. Stale entries are harmless: the driver skips a reservation that is no
longer held under its token.

Layout of a slot (little-endian): the supervisor's part (``timed_out_seq``),
then the worker's header, then the held jobs (the batch, then the completed
ones), then the running reservation's id, queue, token and raw envelope. The
worker brackets each change with an odd/even ``seq`` so a reader can tell a
torn read (seqlock); only the worker writes its part and only the supervisor
writes its own.

A reservation too big for the slot (over :data:`DATA_BYTES`, about 1 MB) goes
to the slot's overflow file instead (one more unlinked file per slot, written
with one ``pwrite``): the deadline and the rest of the header stay in the
slot, so a big job's timeout is enforced like any other, and its replacement
settles it.
"""

from __future__ import annotations

import enum
import mmap
import os
import struct
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kashq.drivers.base import Reservation
from kashq.supervisor import held as held_jobs
from kashq.supervisor.held import Held

HELD_BYTES = 1 << 18
"""Room for the held jobs (:mod:`kashq.supervisor.held`): a batch of 1,000 takes about 80 KB."""
SLOT_BYTES = (1 << 20) + HELD_BYTES  # sparse: only the pages a worker touches use memory
_SUPERVISOR = struct.Struct("<Q")  # timed_out_seq
_SEQ = struct.Struct("<Q")
# seq, state, pid, started (time.monotonic()), timeout_s (0: none), processed, failed,
# deliveries, id/queue/token/raw lengths, outside (1: the data is in the overflow file),
# the held jobs: how many, and their bytes
_HEADER = struct.Struct("<QIIddQQIIIIIIII")
_HEADER_AT = _SUPERVISOR.size
_HELD_AT = _HEADER_AT + _HEADER.size
_DATA_AT = _HELD_AT + HELD_BYTES
DATA_BYTES = SLOT_BYTES - _DATA_AT
"""The most a reservation (id, queue, token and raw) takes in the slot; more: overflow."""


class SlotState(enum.IntEnum):
    """What a worker process is doing, as recorded in its slot."""

    IDLE = 0  # holds nothing
    RUNNING = 1  # running the reservation in the slot: handle() has not returned
    COMPLETED = (
        2  # completed and settled; the acknowledgement is pending (or rides on the next reserve)
    )
    SETTLING = 3  # handle() raised; the retry or the failure is being recorded
    RETURNED = 4  # handle() returned; its result, batch count and next chain step are being settled


@dataclass(frozen=True, slots=True)
class SlotView:
    """A consistent snapshot of one slot."""

    seq: int
    state: SlotState
    pid: int
    started: float  # time.monotonic() seconds
    timeout_s: float  # 0: no timeout (or handle() is over)
    processed: int
    failed: int
    timed_out_seq: int
    reservation: Reservation | None
    # Held besides it (read by Slots.read only). Their raw is "" and deliveries 0: an
    # acknowledgement or a give-back needs the id, queue and token alone.
    completed: tuple[Reservation, ...] = ()  # completed, acknowledgement not sent
    waiting: tuple[Reservation, ...] = ()  # prefetched, not started

    @property
    def deadline(self) -> float:
        """When the running attempt's timeout ends (time.monotonic()); 0 if it has none."""
        return self.started + self.timeout_s if self.timeout_s else 0.0

    @property
    def timed_out(self) -> bool:
        """The supervisor killed the worker because this very attempt ran too long."""
        return self.state is SlotState.RUNNING and self.timed_out_seq == self.seq

    def left_behind(self) -> tuple[list[Reservation], list[Reservation]]:
        """What a dead worker's successor settles besides its running job: the jobs to
        acknowledge (the completed ones) and the jobs to give back (the waiting ones)."""
        running = self.reservation
        done = list(self.completed)
        key = None if running is None else (running.id, running.token)
        listed = any((res.id, res.token) == key for res in done)
        if running is not None and self.state is SlotState.COMPLETED and not listed:
            done.append(running)
        return done, [res for res in self.waiting if (res.id, res.token) != key]


class Slots:
    """One slot per worker process, in a shared, unlinked temporary file.

    ``overflow`` maps a slot's index to its overflow file (the supervisor
    knows every one; a worker process only its own).
    """

    def __init__(self, fd: int, count: int, overflow: Mapping[int, int] | None = None) -> None:
        self.fd = fd
        self.count = count
        self.overflow = dict(overflow or {})
        self._map = mmap.mmap(fd, SLOT_BYTES * count)

    @classmethod
    def create(cls, count: int) -> Slots:
        """New zeroed slots; the files are unlinked at once (they live while a process has them)."""
        fd = _unlinked_file()
        os.ftruncate(fd, SLOT_BYTES * count)
        return cls(fd, count, {index: _unlinked_file() for index in range(count)})

    def fds(self, index: int) -> tuple[int, ...]:
        """The descriptors the worker process of slot ``index`` inherits."""
        return (self.fd, self.overflow[index])

    def close(self) -> None:
        self._map.close()
        for fd in (self.fd, *self.overflow.values()):
            os.close(fd)

    def writer(self, index: int) -> SlotWriter:
        return SlotWriter(self._map, index * SLOT_BYTES, self.overflow.get(index, -1))

    def read(self, index: int) -> SlotView | None:
        """A snapshot of slot ``index``, with its reservation; None if it stays torn.

        A live worker's write takes microseconds, so a few retries see it
        through; a slot that stays torn belongs to a worker that died while
        writing it, and its reservation is left to the lease to recover.
        """
        return self._snapshot(index, full=True)

    def status(self, index: int) -> SlotView | None:
        """Like :meth:`read` without the reservation (None): the header alone, cheap to poll."""
        return self._snapshot(index, full=False)

    def _snapshot(self, index: int, *, full: bool) -> SlotView | None:
        base = index * SLOT_BYTES
        overflow = self.overflow.get(index, -1) if full else None
        for _ in range(1000):
            view = _read(self._map, base, overflow)
            if view is not None:
                return view
        return None

    def mark_timed_out(self, index: int, seq: int) -> None:
        """Record that the attempt with ``seq`` in slot ``index`` was killed for its timeout."""
        _SUPERVISOR.pack_into(self._map, index * SLOT_BYTES, seq)


def _unlinked_file() -> int:
    fd, path = tempfile.mkstemp(prefix="kashq-slots-")
    os.unlink(path)
    os.set_inheritable(fd, True)
    return fd


def _read(buf: mmap.mmap, base: int, overflow: int | None) -> SlotView | None:
    """One attempt at a consistent snapshot; ``overflow`` None reads the header alone."""
    (seq_before,) = _SEQ.unpack_from(buf, base + _HEADER_AT)
    if seq_before & 1:
        return None
    fields = _HEADER.unpack_from(buf, base + _HEADER_AT)
    seq, state, pid, started, timeout_s, processed, failed, deliveries = fields[:8]
    lengths, outside = fields[8:12], fields[12]
    held_count, held_bytes = fields[13:]
    data = held = b""
    if overflow is not None:
        at = base + _HELD_AT
        held = bytes(buf[at : at + min(held_bytes, HELD_BYTES)])
    if state != SlotState.IDLE and overflow is not None:
        size = sum(lengths)
        if not outside:
            at = base + _DATA_AT
            data = bytes(buf[at : at + min(size, DATA_BYTES)])
        elif overflow >= 0:  # else this process cannot see that file: nothing to decode
            data = _pread(overflow, size)
    (timed_out_seq,) = _SUPERVISOR.unpack_from(buf, base)
    (seq_after,) = _SEQ.unpack_from(buf, base + _HEADER_AT)
    if seq_after != seq_before or seq != seq_before:
        return None  # torn by a concurrent write: decode nothing
    try:
        view_state = SlotState(state)
        reservation = _reservation(data, lengths, deliveries) if data else None
        completed, waiting = held_jobs.decode(held, held_count if held else 0)
    except (ValueError, struct.error):  # UnicodeDecodeError too: a dead worker's half-write
        return None
    return SlotView(
        seq, view_state, pid, started, timeout_s, processed, failed, timed_out_seq, reservation,
        tuple(completed), tuple(waiting),
    )  # fmt: skip


def _pread(fd: int, size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        part = os.pread(fd, size - got, got)
        if not part:
            break  # shorter than recorded: the decode below fails, and the view is None
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _pwrite(fd: int, data: bytes) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], done)


def _reservation(data: bytes, lengths: tuple[int, ...], deliveries: int) -> Reservation:
    id_len, queue_len, token_len, _ = lengths
    queue_at, token_at = id_len, id_len + queue_len
    raw_at = token_at + token_len
    return Reservation(
        data[:id_len].decode(),
        data[queue_at:token_at].decode(),
        data[raw_at:].decode(),
        deliveries,
        data[token_at:raw_at].decode(),
    )


class SlotWriter:
    """The worker process's side of its slot."""

    def __init__(self, buf: mmap.mmap, base: int, overflow: int = -1) -> None:
        self._buf = buf
        self._base = base
        self._overflow = overflow
        # A replacement worker carries on its predecessor's counters and seq
        # (read even if torn: a predecessor may have died mid-write).
        fields = _HEADER.unpack_from(buf, base + _HEADER_AT)
        self.seq = fields[0] + (fields[0] & 1)
        self.processed, self.failed = fields[5], fields[6]
        self.state = SlotState.IDLE
        self._pid = os.getpid()
        self._started = self._timeout_s = 0.0
        self._deliveries = 0
        self._lengths = (0, 0, 0, 0)
        self._outside = False
        self._batch: Sequence[Reservation] = ()  # the held jobs, as recorded
        self._held_count = self._held_bytes = 0
        self._next = 0  # the first place of the batch not yet taken
        self._taken: int | None = None  # the place of the job taken last
        # The worker's thread writes the slot, and so does its controls thread when the
        # running job is cancelled (cut_short): each write holds the lock.
        self._lock = threading.Lock()
        self._running_id = ""  # the job recorded running

    def running(self, res: Reservation, started: float, timeout_s: float | None) -> None:
        """Record that ``res`` runs from ``started`` (in the overflow file if too big)."""
        with self._lock:
            parts = (res.id.encode(), res.queue.encode(), res.token.encode(), res.raw.encode())
            self._begin()
            self._outside = sum(len(part) for part in parts) > DATA_BYTES
            if not self._outside:
                at = self._base + _DATA_AT
                for part in parts:
                    self._buf[at : at + len(part)] = part
                    at += len(part)
            elif self._overflow >= 0:
                _pwrite(self._overflow, b"".join(parts))
            else:  # slots without overflow files (a test's): the header alone
                parts = (b"", b"", b"", b"")
            self._started, self._timeout_s = started, timeout_s or 0.0
            self._running_id = res.id
            self._deliveries = res.deliveries
            self._lengths = (len(parts[0]), len(parts[1]), len(parts[2]), len(parts[3]))
            self._write(SlotState.RUNNING, begun=True)

    def reserved(self, batch: Sequence[Reservation], completed: Sequence[Reservation] = ()) -> None:
        """A reserve returned ``batch`` (maybe empty), acknowledging the completed jobs
        but ``completed`` (batch jobs held to be counted as a group): the batch's jobs
        wait to run, and only those are held besides."""
        with self._lock:
            held, count = held_jobs.encode([*batch, *completed], HELD_BYTES)
            self._begin()
            at = self._base + _HELD_AT
            self._buf[at : at + len(held)] = held
            for place in range(len(batch), count):  # after the batch: the completed ones
                self._buf[at + place] = Held.COMPLETED
            self._batch, self._held_count, self._held_bytes = batch[:count], count, len(held)
            self._next, self._taken = 0, None
            self._timeout_s, self._lengths = 0.0, (0, 0, 0, 0)
            self._write(SlotState.IDLE, begun=True)

    def taking(self, res: Reservation) -> None:
        """``res``, one of the last batch, runs next (those before it that were skipped
        stay listed as waiting: stale, so the driver skips them)."""
        with self._lock:
            batch = self._batch
            for place in range(self._next, len(batch)):
                if batch[place] is res:
                    self._next, self._taken = place + 1, place
                    self._mark(place, Held.TAKEN)
                    return
            self._taken = None

    def settling(self, *, ok: bool) -> None:
        """handle() is over (``ok``: it returned); its timeout no longer applies."""
        with self._lock:
            self._timeout_s = 0.0
            self._write(SlotState.RETURNED if ok else SlotState.SETTLING)

    def finished(self, *, completed: bool, failed: bool) -> None:
        """The running job ended; ``completed`` if its ack is still to be sent (it joins
        the completed jobs held, to be acknowledged with the next reserve)."""
        with self._lock:
            self.processed += 1
            self.failed += failed
            self._begin()
            if completed and self._taken is not None:
                self._buf[self._base + _HELD_AT + self._taken] = Held.COMPLETED
            self._write(SlotState.COMPLETED if completed else SlotState.IDLE, begun=True)

    def reset(self) -> None:
        """Mark the slot idle and holding nothing, whatever it held (after settling a
        predecessor's jobs)."""
        with self._lock:
            self._timeout_s, self._lengths = 0.0, (0, 0, 0, 0)
            self._batch, self._held_count, self._held_bytes = (), 0, 0
            self._next, self._taken = 0, None
            self._write(SlotState.IDLE)

    def cut_short(self, job_id: str, deadline: float) -> None:
        """End job ``job_id``'s attempt by ``deadline`` (``time.monotonic()``) at the latest,
        if it still runs: the supervisor kills the process then, as for a timeout."""
        with self._lock:
            if self.state is not SlotState.RUNNING or self._running_id != job_id:
                return
            if self._timeout_s and self._started + self._timeout_s <= deadline:
                return
            self._timeout_s = max(deadline - self._started, 0.001)
            self._write(SlotState.RUNNING)

    def idle(self) -> None:
        """Nothing held (a reserve returned nothing, so any pending ack was sent)."""
        with self._lock:
            if self.state is not SlotState.IDLE:
                self._write(SlotState.IDLE)

    def _mark(self, place: int, status: Held) -> None:
        """Set one held job's status byte: a write of its own, the header untouched."""
        self._begin()
        self._buf[self._base + _HELD_AT + place] = status
        self.seq += 1
        _SEQ.pack_into(self._buf, self._base + _HEADER_AT, self.seq)

    def _begin(self) -> None:
        self.seq += 1  # odd: a write is in progress
        _SEQ.pack_into(self._buf, self._base + _HEADER_AT, self.seq)

    def _write(self, state: SlotState, *, begun: bool = False) -> None:
        if not begun:
            self._begin()
        self.state = state
        header = self._base + _HEADER_AT
        _HEADER.pack_into(
            self._buf,
            header,
            self.seq,  # still odd
            state,
            self._pid,
            self._started,
            self._timeout_s,
            self.processed,
            self.failed,
            self._deliveries,
            *self._lengths,
            self._outside,
            self._held_count,
            self._held_bytes,
        )
        self.seq += 1  # even again, written last: the slot is consistent
        _SEQ.pack_into(self._buf, header, self.seq)
