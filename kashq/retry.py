"""Retry policy values: how long to wait before a retry, and why retrying stopped.

A job's ``backoff`` is one of three forms, each a small frozen value:

- a number of seconds: :class:`Linear`, retry ``n`` waits ``seconds * n``
  (kashq's default, 1 s);
- a list of seconds: :class:`Steps`, retry ``n`` waits the ``n``-th value and
  the last one repeats (Laravel's ``backoff`` array);
- :class:`Exponential`: ``base * factor ** (n - 1)`` capped at ``max``, with
  opt-in jitter (Sidekiq's and Celery's exponential backoff).

A job class may instead define a method ``backoff(self, attempt, error)``;
that is decided by the worker, which has the job. What ends retrying is a
:class:`StopReason`, recorded with the failed job.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

Random = Callable[[], float]
"""Where jitter draws from: ``random.random``, or a fixed function in tests."""


def seconds_of(value: object, name: str = "backoff") -> float:
    """``value`` (seconds or a timedelta) as finite seconds >= 0; ValueError naming ``name``."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ValueError(f"{name} must be seconds or a timedelta, got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class Linear:
    """Retry ``n`` waits ``base_s * n`` seconds."""

    base_s: float

    def delay_s(self, attempt: int, rand: Random = random.random) -> float:
        return self.base_s * attempt

    def to_json(self) -> float:
        return self.base_s

    def __str__(self) -> str:
        return f"{self.base_s:g}s"


@dataclass(frozen=True, slots=True)
class Steps:
    """Retry ``n`` waits ``delays_s[n - 1]``; past the end, the last value."""

    delays_s: tuple[float, ...]

    def delay_s(self, attempt: int, rand: Random = random.random) -> float:
        return self.delays_s[min(max(attempt, 1), len(self.delays_s)) - 1]

    def to_json(self) -> list[float]:
        return list(self.delays_s)

    def __str__(self) -> str:
        return ",".join(f"{d:g}s" for d in self.delays_s)


@dataclass(frozen=True, slots=True)
class Exponential:
    """Retry ``n`` waits ``base * factor ** (n - 1)`` seconds, at most ``max``.

    ``jitter`` (0 to 1, off by default) spreads retries of jobs that failed
    together: the wait is drawn uniformly between ``(1 - jitter)`` times the
    delay and the delay itself, so 1 is "full jitter" and 0.25 takes up to a
    quarter off. It never waits longer than without jitter.
    """

    base: float = 1.0
    factor: float = 2.0
    max: float = 600.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        for name in ("base", "max"):
            object.__setattr__(self, name, seconds_of(getattr(self, name), f"Exponential {name}"))
        factor, jitter = self.factor, self.jitter
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor >= 1:
            raise ValueError(f"Exponential factor must be a number >= 1, got {factor!r}")
        if jitter is True:
            jitter = 1.0
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0 <= jitter <= 1:
            raise ValueError(f"Exponential jitter must be between 0 and 1, got {self.jitter!r}")
        if not math.isfinite(factor):
            raise ValueError(f"Exponential factor must be finite, got {factor!r}")
        object.__setattr__(self, "factor", float(factor))
        object.__setattr__(self, "jitter", float(jitter))

    def delay_s(self, attempt: int, rand: Random = random.random) -> float:
        try:
            delay = min(self.max, self.base * self.factor ** (max(attempt, 1) - 1))
        except OverflowError:  # thousands of attempts: far past the cap
            delay = self.max
        if self.jitter:
            delay -= delay * self.jitter * rand()
        return delay

    def to_json(self) -> dict[str, Any]:
        return {"exponential": {"base": self.base, "factor": self.factor, "max": self.max,
                                "jitter": self.jitter}}  # fmt: skip

    def __str__(self) -> str:
        jitter = f", jitter {self.jitter:g}" if self.jitter else ""
        return f"exponential {self.base:g}s x{self.factor:g} up to {self.max:g}s{jitter}"


Backoff = Linear | Steps | Exponential
DEFAULT_BACKOFF = Linear(1.0)


def backoff_of(value: object, name: str = "backoff") -> Backoff:
    """The backoff ``value`` spells (seconds, a timedelta, a list of them, an Exponential)."""
    if isinstance(value, (Linear, Steps, Exponential)):
        return value
    if isinstance(value, (list, tuple)):
        return steps_of(value, name)
    return Linear(seconds_of(value, name))


def steps_of(values: Sequence[object], name: str = "backoff") -> Steps:
    if not values:
        raise ValueError(f"{name} list must hold at least one delay")
    return Steps(tuple(seconds_of(v, f"{name}[{i}]") for i, v in enumerate(values)))


def parse_backoff(text: str) -> Backoff:
    """A backoff from its text (``KASHQ_BACKOFF``, ``--backoff``); ValueError if malformed.

    ``"2"``: linear; ``"1,5,30"``: steps; ``"exponential"`` or
    ``"exponential:base=1,factor=2,max=600,jitter=0.5"``.
    """
    text = text.strip()
    kind, _, rest = text.partition(":")
    if kind.strip().lower() == "exponential":
        options: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = part.partition("=")
            if not eq or key.strip() not in ("base", "factor", "max", "jitter"):
                raise ValueError(
                    f"{part!r}: exponential options are base=, factor=, max= and jitter="
                )
            options[key.strip()] = _number(value, key.strip())
        return Exponential(**options)
    parts = [p.strip() for p in text.split(",")]
    if len(parts) == 1:
        return Linear(seconds_of(_number(parts[0], "backoff")))
    return steps_of([_number(p, "backoff") for p in parts])


def deadline_of(value: object, now: float) -> float:
    """Unix seconds of a ``retry_until``: a datetime, a span from ``now``, or a
    bound method returning either."""
    if callable(value):
        value = value()
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, timedelta):
        return now + value.total_seconds()
    raise ValueError(f"retry_until must be a datetime or a timedelta, got {value!r}")


def check_retry_rules(cls: type) -> None:
    """ValueError if a job class's ``fail_on``, ``retry_on``, ``max_exceptions`` or
    ``result_ttl`` is not usable; a single exception class becomes a tuple of one."""
    for name in ("fail_on", "retry_on"):
        value = getattr(cls, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            setattr(cls, name, (value,))
        elif not isinstance(value, (tuple, list)) or not all(
            isinstance(e, type) and issubclass(e, BaseException) for e in value
        ):
            raise ValueError(f"{name} must be a tuple of exception classes, got {value!r}")
        else:
            setattr(cls, name, tuple(value))
    max_exceptions, result_ttl = (
        getattr(cls, "max_exceptions", None),
        getattr(cls, "result_ttl", None),
    )
    if max_exceptions is not None:
        _check_count("max_exceptions", max_exceptions)
    if result_ttl is not None:
        seconds_of(result_ttl, "result_ttl")


def _check_count(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def backoff_from_json(value: object) -> Backoff:
    """The backoff stored by :meth:`Linear.to_json` and friends; TypeError if malformed."""
    try:
        if isinstance(value, dict) and set(value) == {"exponential"}:
            options = value["exponential"]
            if not isinstance(options, dict):
                raise ValueError("exponential options must be an object")
            return Exponential(
                **{k: options[k] for k in ("base", "factor", "max", "jitter") if k in options}
            )
        return backoff_of(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"field 'backoff' is not a backoff: {exc}") from None


def _number(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {text.strip()!r}") from None


class StopReason(str, enum.Enum):
    """Why a job was not retried again, kept with its failed-job record.

    The value is what ``queue:failed`` shows and ``--json`` gives.
    """

    TRIES = "tries_exhausted"  # its last try failed
    TIMED_OUT = "timed_out"  # its last try ran past its timeout
    DEADLINE = "retry_until"  # a retry would run after its retry_until deadline
    FAIL_ON = "fail_on"  # the error is one of its fail_on exceptions
    RETRY_ON = "retry_on"  # the error is none of its retry_on exceptions
    MAX_EXCEPTIONS = "max_exceptions"  # that many attempts raised
    FAIL_JOB = "fail_job"  # the job raised kashq.FailJob
    WORKER_LOST = "worker_lost"  # its workers died holding it max_deliveries times
    INVALID_PAYLOAD = "invalid_payload"  # the payload does not validate
    UNKNOWN_TYPE = "unknown_type"  # no job class or handler of its type
    INVALID_JOB = "invalid_job"  # its class cannot run (no handle())
    UNDECODABLE = "undecodable"  # the stored text is no envelope
