"""The event store's vocabulary: :class:`Event`, the :class:`EventStore` protocol, its error.

An event is one step in the life of one job (GoFlow's event sourcing): it was
dispatched, a worker started it, an attempt failed, it was released for a
retry, it completed, failed for good ... A store keeps them in the order they
arrived, each with a store-specific ``position`` (a Redis stream id, a table
id) from which a reader can resume.
"""

from __future__ import annotations

import abc
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from kashq.exceptions import DriverError

DISPATCHED = "dispatched"
STARTED = "started"
COMPLETED = "completed"
ATTEMPT_FAILED = "attempt_failed"
RELEASED = "released"
FAILED = "failed"
PARKED = "parked"
RETRIED = "retried"
RECLAIMED = "reclaimed"
PROGRESS = "progress"
CANCEL_REQUESTED = "cancel_requested"
CANCELLED = "cancelled"
EXPIRED = "expired"
# A batch's steps (kashq.batch): the event's job_id is the batch's id, its
# job_type BATCH_TYPE, its queue the batch's name; details hold its counts.
BATCH_CREATED = "batch_created"
BATCH_PROGRESS = "batch_progress"
BATCH_FINISHED = "batch_finished"
BATCH_CANCELLED = "batch_cancelled"
BATCH_TYPE = "kashq.batch"

EVENT_TYPES = (
    DISPATCHED,
    RECLAIMED,
    STARTED,
    PROGRESS,
    ATTEMPT_FAILED,
    RELEASED,
    COMPLETED,
    FAILED,
    PARKED,
    RETRIED,
    CANCEL_REQUESTED,
    CANCELLED,
    EXPIRED,
    BATCH_CREATED,
    BATCH_PROGRESS,
    BATCH_FINISHED,
    BATCH_CANCELLED,
)
"""Every event type, in the order a job usually meets them (a batch's last)."""

DEFAULT_POLL_S = 0.5
DEFAULT_READ_LIMIT = 1000
HOST = socket.gethostname()


class EventStoreError(DriverError):
    """The event store could not complete an operation (its backend failed)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One lifecycle step of one job.

    ``type`` is one of :data:`EVENT_TYPES`; ``attempt`` the attempt it is
    about (0 before the first run); ``at`` Unix seconds when it happened;
    ``host``/``pid`` the process that saw it; ``details`` small extra facts
    (``duration_ms``, ``error``, ``delay_s`` ...). ``position`` is set by the
    store once the event is stored (None before).
    """

    type: str
    job_id: str
    job_type: str
    queue: str
    attempt: int = 0
    at: float = 0.0
    host: str = HOST
    pid: int = field(default_factory=os.getpid)
    details: dict[str, Any] = field(default_factory=dict)
    position: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict (``position`` included)."""
        return {
            "type": self.type,
            "job_id": self.job_id,
            "job_type": self.job_type,
            "queue": self.queue,
            "attempt": self.attempt,
            "at": self.at,
            "host": self.host,
            "pid": self.pid,
            "details": self.details,
            "position": self.position,
        }

    def encode(self) -> str:
        """Compact JSON of the event without its position (what stores keep)."""
        return encode_event(
            self.type, self.job_id, self.job_type, self.queue, self.attempt, self.at,
            self.host, self.pid, self.details,
        )  # fmt: skip

    @classmethod
    def decode(cls, text: str | bytes, position: str | None = None) -> Event:
        """The event :meth:`encode` wrote, at ``position``; EventStoreError if malformed."""
        try:
            data = json.loads(text)
            return cls(
                type=str(data["type"]),
                job_id=str(data["job_id"]),
                job_type=str(data["job_type"]),
                queue=str(data["queue"]),
                attempt=int(data["attempt"]),
                at=float(data["at"]),
                host=str(data["host"]),
                pid=int(data["pid"]),
                details=dict(data.get("details") or {}),
                position=position,
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise EventStoreError(f"malformed stored event at {position}: {exc!r}") from None


# default=str: a detail that is not JSON (a caller's object) is stored as its text
# rather than failing the whole batch it is in.
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def _string(value: str) -> str:
    # Ids, types, queues and host names are plain in practice; escape only when needed.
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return _dumps(value)


_NAMES: dict[str, str] = {}
_HEADS: dict[tuple[str, str, str, str, int], str] = {}
_CACHE_MAX = 4096  # entries per cache; beyond it values are encoded each time


def _name(value: str) -> str:
    """:func:`_string` of a value that repeats (a type, a queue, a host), remembered."""
    quoted = _NAMES.get(value)
    if quoted is None:
        quoted = _string(value)
        if len(_NAMES) < _CACHE_MAX:
            _NAMES[value] = quoted
    return quoted


def encode_event(  # noqa: PLR0917 - positional, in Event's order, so either builds an event
    type: str,
    job_id: str,
    job_type: str,
    queue: str,
    attempt: int,
    at: float,
    host: str,
    pid: int,
    details: dict[str, Any],
) -> str:
    """The stored JSON of an event, from its fields in :class:`Event`'s order.

    Spelled out rather than ``json.dumps(event.to_dict())``: several times faster,
    and the recorder encodes every event of every job (straight from the
    worker's step, without an :class:`Event`, for stores that keep JSON text).
    The fields that repeat from job to job (type, job type, queue, host, pid)
    open the object, encoded once per combination and remembered.
    """
    key = (type, job_type, queue, host, pid)
    head = _HEADS.get(key)
    if head is None:
        head = (
            f'{{"type":{_name(type)},"job_type":{_name(job_type)},"queue":{_name(queue)},'
            f'"host":{_name(host)},"pid":{int(pid)},'
        )
        if len(_HEADS) < _CACHE_MAX:
            _HEADS[key] = head
    return (
        f'{head}"job_id":{_string(job_id)},"attempt":{int(attempt)},"at":{float(at)!r},'
        f'"details":{dumps_details(details) if details else "{}"}}}'
    )


def dumps_details(details: dict[str, Any]) -> str:
    """Compact JSON of an event's details (numbers-only details, the usual kind, spelled out)."""
    if not details:
        return "{}"
    parts = []
    for key, value in details.items():
        kind = type(value)  # an int (not a bool) or a finite float
        if type(key) is str and (kind is int or (kind is float and value - value == 0)):
            parts.append(f"{_name(key)}:{value!r}")
        else:
            return _dumps(details)
    return "{" + ",".join(parts) + "}"


def history_order(events: Sequence[Event], position_key: Callable[[str], Any]) -> list[Event]:
    """``events`` by time, then position: a job's events come from several processes,
    whose writes may reach the store out of order (the dispatcher's batch after the
    worker's), so arrival order alone is not the job's timeline."""
    return sorted(events, key=lambda e: (e.at, position_key(e.position or "")))


@runtime_checkable
class TextEventStore(Protocol):
    """A store that keeps each event as :func:`encode_event`'s JSON, and takes it so.

    The recorder then encodes straight from the worker's steps, skipping the
    :class:`Event` objects (half its work per event).
    """

    def append_encoded(self, texts: Sequence[str]) -> None:
        """Store events given as :func:`encode_event` JSON, in one round trip."""
        ...


class EventStore(Protocol):
    """Where job lifecycle events are kept, read back and followed live."""

    def append(self, event: Event) -> None:
        """Store one event."""
        ...

    def append_many(self, events: Sequence[Event]) -> None:
        """Store several events in one round trip."""
        ...

    def get_job_events(self, job_id: str) -> list[Event]:
        """Every stored event of one job, in the order they happened."""
        ...

    def read(self, after: str | None = None, limit: int = DEFAULT_READ_LIMIT) -> list[Event]:
        """Up to ``limit`` events stored after position ``after`` (None: from the oldest)."""
        ...

    def tail(
        self,
        after: str | None = None,
        *,
        poll_s: float = DEFAULT_POLL_S,
        stop: threading.Event | None = None,
    ) -> Iterator[Event]:
        """Yield events as they are stored: after ``after``, or from now on if None.

        Blocks between events; ends once ``stop`` is set (noticed within ``poll_s``).
        """
        ...

    def subscribe(
        self,
        callback: Callable[[Event], object],
        *,
        after: str | None = None,
        stop: threading.Event | None = None,
        poll_s: float = DEFAULT_POLL_S,
    ) -> None:
        """Call ``callback`` with every new event until ``stop`` is set (blocking: use a thread)."""
        ...

    def prune(self, older_than_s: float) -> int:
        """Delete events older than ``older_than_s`` seconds; returns how many."""
        ...

    def close(self) -> None:
        """Release what the store opened itself (never a connection it borrowed)."""
        ...


class Subscribing(abc.ABC):
    """:meth:`EventStore.subscribe` written once, over each store's :meth:`tail`."""

    @abc.abstractmethod
    def tail(
        self,
        after: str | None = None,
        *,
        poll_s: float = DEFAULT_POLL_S,
        stop: threading.Event | None = None,
    ) -> Iterator[Event]:
        """Yield events after ``after`` (None: from now on), live, until ``stop`` is set."""

    def subscribe(
        self,
        callback: Callable[[Event], object],
        *,
        after: str | None = None,
        stop: threading.Event | None = None,
        poll_s: float = DEFAULT_POLL_S,
    ) -> None:
        """Call ``callback`` with every new event until ``stop`` is set (blocking: use a thread)."""
        for event in self.tail(after, poll_s=poll_s, stop=stop):
            callback(event)


def stopped(stop: threading.Event | None) -> bool:
    """Whether a subscription's ``stop`` flag is set."""
    return stop is not None and stop.is_set()
