"""The jobs a worker process holds besides the one it runs, as its slot records them.

A worker that prefetches reserves a batch of jobs at once; the slot keeps the
batch's ids, queues and tokens (all that acknowledging or giving back takes),
with one status byte per job that the worker flips as it takes each job and
completes it. The encoding costs two calls per batch (one ``struct.pack``, one
``str.encode``) and one byte per change, so the worker's hot path barely
notices it.

Layout: ``count`` status bytes, then ``3 * count`` little-endian ``u32``
lengths (in characters) of each job's id, queue and token, then all those
strings as one UTF-8 text.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence

from kashq.drivers.base import Reservation

_FIXED_PER_JOB = 1 + 3 * 4  # its status byte and three u32 lengths


class Held(enum.IntEnum):
    """The status byte of one job of the batch."""

    WAITING = 0  # reserved, not started: to be given back
    TAKEN = 1  # running, or settled by the worker: left alone
    COMPLETED = 2  # handle() returned, the acknowledgement not sent: to be acknowledged


def encode(batch: Sequence[Reservation], room: int) -> tuple[bytes, int]:
    """The held part for ``batch`` (every job waiting), and how many jobs it holds:
    fewer than the batch if they do not fit in ``room`` bytes (the rest are left to
    their leases)."""
    count = len(batch)
    while count:
        fields: list[str] = []
        for res in batch[:count]:
            fields += (res.id, res.queue, res.token)
        text = "".join(fields).encode()
        if _FIXED_PER_JOB * count + len(text) <= room:
            lengths = struct.pack(f"<{3 * count}I", *map(len, fields))
            return bytes(count) + lengths + text, count
        count //= 2
    return b"", 0


def decode(data: bytes, count: int) -> tuple[list[Reservation], list[Reservation]]:
    """The completed jobs and the waiting ones, from a held part of ``count`` jobs.

    Their ``raw`` is empty and ``deliveries`` 0. Raises ValueError (or a
    UnicodeDecodeError) or ``struct.error`` for bytes a dead worker left
    half-written.
    """
    if not count:
        return [], []
    lengths = struct.unpack_from(f"<{3 * count}I", data, count)
    text = data[_FIXED_PER_JOB * count :].decode()
    completed: list[Reservation] = []
    waiting: list[Reservation] = []
    at = 0
    for n in range(count):
        id_len, queue_len, token_len = lengths[3 * n : 3 * n + 3]
        queue_at, token_at = at + id_len, at + id_len + queue_len
        end = token_at + token_len
        if end > len(text):
            raise ValueError("a held job runs past the held part")
        status = data[n]
        if status > Held.COMPLETED:
            raise ValueError(f"a held job with status {status}")
        if status != Held.TAKEN:
            res = Reservation(text[at:queue_at], text[queue_at:token_at], "", 0, text[token_at:end])
            (completed if status == Held.COMPLETED else waiting).append(res)
        at = end
    return completed, waiting
