"""What the dashboard's screens show, read from the stores kashq already keeps.

Every figure comes from a durable store of the connection, so it survives
restarts and works on every connection: queue sizes and the oldest waiting job
from the driver, paused queues and live supervisors from its control records,
the metrics history (:mod:`kashq.history`), failed jobs, recent jobs, events,
results and batches. Each read is an indexed query or a bounded page; nothing
walks a whole queue.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from kashq.drivers.base import CappedSizes
from kashq.envelope import Envelope, decode
from kashq.exceptions import EnvelopeError, KashqError
from kashq.failed.base import FailedJob
from kashq.history.base import FIGURES, MinuteFigures, merge, starts
from kashq.manager import QueueManager
from kashq.supervisor.control import STATS_PREFIX

SUPERVISOR_STALE_S = 30.0
"""A supervisor whose figures are older than this is gone (they are written every 2 s)."""
WINDOWS = {"hour": 60, "day": 1440}
"""The charts' windows, in minutes."""
SIZE_CAP = 100_000
"""Where a database connection stops counting a queue's jobs of one state (shown as
"100,000+"): an exact count would read every row, every few seconds."""
RATE_MINUTES = 5
"""The overview's rates are the average over the last few minutes, up to now."""


@dataclass(frozen=True)
class Board:
    """The connection a dashboard shows, and the manager that opens its stores."""

    manager: QueueManager
    connection: str

    def driver(self) -> Any:
        return self.manager.connection(self.connection)

    def now(self) -> float:
        return float(self.driver().storage.clock.time())


# -- the metrics history, summed ---------------------------------------------


@dataclass
class Totals:
    """Figures added up over a window (see :class:`~kashq.history.base.MinuteFigures`)."""

    numbers: list[float] = field(default_factory=lambda: [0] * len(FIGURES))

    def add(self, figures: MinuteFigures) -> None:
        self.numbers = merge(self.numbers, figures.numbers())

    def __getattr__(self, name: str) -> float:
        try:
            return self.numbers[FIGURES.index(name)]
        except ValueError:
            raise AttributeError(name) from None

    @property
    def wait_avg_ms(self) -> float | None:
        waits = self.numbers[6]
        return self.numbers[7] / waits if waits else None

    @property
    def run_avg_ms(self) -> float | None:
        runs = self.numbers[3]
        return self.numbers[4] / runs if runs else None


@dataclass
class History:
    """One window of the metrics history, in slots of ``step`` minutes (1 or 15)."""

    first: int
    last: int
    step: int
    figures: list[MinuteFigures]

    def slots(self) -> list[int]:
        """The first minute of each slot of the window."""
        return list(starts(self.first, self.last, self.step))

    def per_slot(self, queue: str | None = None, job_type: str | None = None) -> list[Totals]:
        """A :class:`Totals` for each slot of the window (of one queue or type, if given)."""
        slots = {minute: Totals() for minute in self.slots()}
        for f in self.figures:
            if (queue is None or f.queue == queue) and (job_type is None or f.job_type == job_type):
                slot = slots.get(f.minute)
                if slot is not None:
                    slot.add(f)
        return list(slots.values())

    def by(self, key: str) -> dict[str, Totals]:
        """Totals over the window per ``queue`` or per ``job_type``."""
        found: dict[str, Totals] = {}
        for f in self.figures:
            found.setdefault(getattr(f, key), Totals()).add(f)
        return dict(sorted(found.items()))

    def total(self) -> Totals:
        totals = Totals()
        for f in self.figures:
            totals.add(f)
        return totals

    def only(self, queue: str | None, job_type: str | None = None) -> History:
        """The window's figures of one queue and job type (either None: all)."""
        figures = [
            f for f in self.figures
            if (queue is None or f.queue == queue) and (job_type is None or f.job_type == job_type)
        ]  # fmt: skip
        return History(self.first, self.last, self.step, figures)


def history(board: Board, window: str = "hour") -> History:
    """The metrics history of the last hour (by minute) or day (by quarter of an hour), the
    current minute or quarter included."""
    minutes = WINDOWS[window]
    step = 1 if window == "hour" else 15
    last = int(board.now() // 60)
    first = last - minutes + 1
    try:
        figures = board.manager.history(board.connection).read(first - first % step, last, step)
    except KashqError:
        figures = []
    return History(first - first % step, last, step, figures)


# -- queues -------------------------------------------------------------------


@dataclass(frozen=True)
class QueueRow:
    name: str
    ready: int
    delayed: int
    reserved: int
    failed: int
    paused_at: float | None
    oldest_wait_s: float | None
    done_per_min: float
    failed_per_min: float
    wait_avg_ms: float | None
    run_avg_ms: float | None
    cap: int | None = None  # counts stop here (a database): ``cap`` means "cap or more"

    def more(self, count: int) -> str:
        """``+`` after a count that reached the cap."""
        return "+" if self.cap is not None and count >= self.cap else ""


def queue_rows(board: Board, recent: History) -> list[QueueRow]:
    """Every queue that holds jobs or failed jobs, is paused, or ran jobs in ``recent`` (the
    last hour, by minute: the rates come from its last minutes)."""
    driver = board.driver()
    paused = board.manager.paused(board.connection)
    failed = board.manager.failed_store(board.connection).counts_by_queue()
    names = set(driver.queue_names()) | set(paused) | set(failed)
    names |= {f.queue for f in recent.figures}
    names.add(board.manager.settings.queue)
    ordered = sorted(names)
    cap = SIZE_CAP if isinstance(driver, CappedSizes) else None
    sizes = driver.sizes_up_to(ordered, SIZE_CAP) if cap else driver.sizes(ordered)
    oldest = driver.oldest_ready(ordered)
    now = board.now()
    # The rates: the last RATE_MINUTES minutes up to now, the current (partial) one included.
    first = recent.last - RATE_MINUTES + 1
    rated = History(first, recent.last, 1, [f for f in recent.figures if f.minute >= first])
    span_min = RATE_MINUTES - 1 + (now % 60) / 60
    per_queue = rated.by("queue")
    rows = []
    for name in ordered:
        size, totals = sizes.get(name), per_queue.get(name, Totals())
        since = oldest.get(name)
        row = QueueRow(
            name, size.ready if size else 0, size.delayed if size else 0,
            size.reserved if size else 0, failed.get(name, 0), paused.get(name),
            None if since is None else max(now - since, 0.0),
            totals.done / span_min, totals.failed / span_min,
            totals.wait_avg_ms, totals.run_avg_ms, cap,
        )  # fmt: skip
        rows.append(row)
    return rows


# -- supervisors and their workers --------------------------------------------------


@dataclass(frozen=True)
class Supervisor:
    name: str
    host: str
    pid: int
    queues: list[str]
    started_at: float | None
    processed: int
    failed: int
    processes: list[dict[str, Any]]
    at: float


def supervisors(board: Board) -> list[Supervisor]:
    """The supervisors (``queue:work``) that reported in the last :data:`SUPERVISOR_STALE_S`."""
    records = board.driver().get_control(STATS_PREFIX)
    now = time.time()  # supervisors stamp their figures with their own wall clock
    found = []
    for name, text in sorted(records.items()):
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if not isinstance(data, dict) or now - _number(data.get("at")) > SUPERVISOR_STALE_S:
            continue
        listed = data.get("processes")
        processes = [p for p in listed if isinstance(p, dict)] if isinstance(listed, list) else []
        supervisor = Supervisor(
            name.removeprefix(STATS_PREFIX), str(data.get("host", "?")),
            int(_number(data.get("pid"))), [str(q) for q in data.get("queues") or []],
            _number(data.get("started_at")) or None, int(_number(data.get("processed"))),
            int(_number(data.get("failed"))), processes, _number(data.get("at")),
        )  # fmt: skip
        found.append(supervisor)
    return found


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


# -- one job -----------------------------------------------------------------------


@dataclass
class JobView:
    """All that is known of one job."""

    id: str
    status: Any  # kashq.status.JobStatus
    envelope: Envelope | None = None
    raw: str | None = None
    held_until: float | None = None  # a reserved job's lease
    events: list[Any] = field(default_factory=list)
    result: Any = None  # kashq.results.base.StoredResult
    failed: FailedJob | None = None

    @property
    def payload_json(self) -> str:
        source: Any = self.envelope.payload if self.envelope is not None else None
        if source is None and self.failed is not None:
            found = _decoded(self.failed.payload)
            source = found.payload if found is not None else self.failed.payload
        return pretty(masked(_parsed(source)))

    @property
    def metadata_json(self) -> str:
        metadata = self.envelope.metadata if self.envelope is not None else {}
        return pretty(masked(metadata)) if metadata else ""


SECRET_WORDS = frozenset((
    "password", "passwd", "passphrase", "pwd", "secret", "token", "apikey", "credential",
    "credentials", "authorization", "auth", "privatekey", "cardnumber", "cvv", "cvc", "ssn",
))  # fmt: skip
"""Payload and metadata fields whose values the dashboard never shows (``***`` instead): a
field whose name, or a word of it (``db_password``, ``apiKey``, ``X-Auth-Token``), is one."""
HIDDEN = "***"


def secret_name(key: str) -> bool:
    """Whether a field called ``key`` holds a secret (see :data:`SECRET_WORDS`)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key).lower()
    words = [w for w in re.split(r"[^a-z0-9]+", spaced) if w]
    joined = "".join(words)
    pairs = {a + b for a, b in itertools.pairwise(words)}
    return joined in SECRET_WORDS or any(w in SECRET_WORDS for w in [*words, *pairs])


def masked(value: Any) -> Any:
    """``value`` with the value of every field whose name looks secret replaced by ``***``."""
    if isinstance(value, dict):
        return {
            key: HIDDEN if isinstance(key, str) and secret_name(key) else masked(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


def _parsed(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def job_view(board: Board, job_id: str) -> JobView | None:
    """Job ``job_id`` as every store knows it; None if none does."""
    from kashq.status import JobHandle, JobNotFound

    handle = JobHandle(job_id, connection=board.connection, manager=board.manager)
    try:
        status = handle.status()
    except JobNotFound:
        return None
    view = JobView(job_id, status)
    found = board.driver().find(job_id)
    if found is not None:
        view.raw = found.raw
        view.envelope = _decoded(found.raw)
        view.held_until = found.lease_until
    view.failed = board.manager.failed_store(board.connection).find(job_id)
    if view.envelope is None and view.failed is not None:
        view.envelope = _decoded(view.failed.payload)
    recorder_store = board.manager.worker_recorder(board.connection).store
    try:
        view.events = recorder_store.get_job_events(job_id)
    except KashqError:
        view.events = []
    try:
        view.result = board.manager.results(board.connection).get(job_id)
    except KashqError:
        view.result = None
    return view


def _decoded(raw: str) -> Envelope | None:
    try:
        return decode(raw)
    except EnvelopeError:
        return None


def pretty(value: Any) -> str:
    """JSON text indented for reading (text that is not JSON stays as it is)."""
    if isinstance(value, str):
        text = value
        try:
            value = json.loads(text)
        except ValueError:
            return text
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
