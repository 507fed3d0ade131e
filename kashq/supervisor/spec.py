"""What a worker process is told to do: one JSON document on its command line."""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass
from typing import Any

from kashq.retry import parse_backoff


class Output(str, enum.Enum):
    """How worker processes report jobs on stdout."""

    TTY = "tty"  # coloured lines for a terminal
    PLAIN = "plain"  # the same lines without colour, for files and pipes
    JSON = "json"  # one JSON object per event, for log shippers
    QUIET = "quiet"  # nothing per job


class Exit(enum.IntEnum):
    """Exit codes of a worker process, as the supervisor reads them (sysexits.h values)."""

    DONE = 0  # stopped as asked (signal, --once, --stop-when-empty)
    ERROR = 70  # could not go on (the queue unreachable, a kashq bug): replace it, with a pause
    RECYCLE = 75  # reached --max-jobs, --max-time or --memory: replace it
    FATAL = 78  # cannot start (import error, bad settings): stop everything


@dataclass(frozen=True, slots=True)
class WorkSpec:
    """Everything a worker process needs besides the settings it loads itself.

    ``None`` means "the configured default". ``timeout_s == 0`` turns the
    timeout off, as in Laravel.
    """

    connection: str
    queues: tuple[str, ...]
    imports: tuple[str, ...] = ()
    tries: int | None = None
    backoff: str | None = None  # as KASHQ_BACKOFF spells it
    timeout_s: float | None = None
    sleep_s: float | None = None
    prefetch: int | None = None
    max_jobs: int | None = None
    max_time_s: float | None = None
    memory_mb: float | None = None
    stop_when_empty: bool = False
    once: bool = False
    output: Output = Output.PLAIN
    verbose: bool = False
    slots_fd: int = -1
    overflow_fd: int = -1  # the slot's overflow file (see kashq.supervisor.slots)
    index: int = 0
    recover: str | None = None  # how the predecessor in this slot ended, if it died

    def worker_overrides(self) -> dict[str, Any]:
        """The WorkerOptions fields this spec sets (the rest come from the settings)."""
        given = {
            "connection": self.connection,
            "queues": self.queues,
            "tries": self.tries,
            "backoff": None if self.backoff is None else parse_backoff(self.backoff),
            "sleep_s": self.sleep_s,
            "prefetch": self.prefetch,
            "max_jobs": 1 if self.once else self.max_jobs,
            "max_time_s": self.max_time_s,
            "stop_when_empty": self.stop_when_empty,
        }
        overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        if self.timeout_s is not None:
            overrides["timeout_s"] = self.timeout_s or None
        return overrides

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["output"] = self.output.value
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> WorkSpec:
        data = json.loads(text)
        data["queues"] = tuple(data["queues"])
        data["imports"] = tuple(data["imports"])
        data["output"] = Output(data["output"])
        return cls(**data)
