"""The envelope: the one JSON wire format every driver stores.

An envelope is what a driver moves around; it never holds Python objects,
only JSON. Field by field (JSON key = attribute name):

=================  ==========================================================
``v``              wire-format version, currently ``1``
``id``             job id (a UUID string), stable across retries
``type``           registry name of the job class or handler
``queue``          queue name
``payload``        the job's data: a JSON object
``attempts``       attempts already made and finished (0 when dispatched)
``max_tries``      total attempts allowed, or ``null`` for the worker default
``backoff_s``      linear backoff base in seconds, or ``null`` for the default
``timeout_s``      seconds one attempt may run, or ``null`` for the default
``max_deliveries`` deliveries lost to dead workers before "worker lost",
                   or ``null`` meaning the job's tries
``priority``       higher runs sooner within a queue (FIFO among equals)
``metadata``       free-form string key/values (tracing, user ids ...)
``created_at``     Unix seconds when first dispatched
``available_at``   Unix seconds when it may run (later than created = delayed)
``backoff``        present only for a backoff that is not linear: a list of
                   seconds (``[1, 5, 30]``) or ``{"exponential": {"base",
                   "factor", "max", "jitter"}}``; it wins over ``backoff_s``
``retry_until``    present only with a deadline: Unix seconds after which
                   the job is not retried, whatever its tries
``expires_at``     present only with an expiry: Unix seconds after which the
                   job is not started (it is dropped as ``expired``)
``tags``           present only when the job has tags: a list of strings
                   (``queue:jobs --tag``, ``kashq.jobs(tag=...)`` find it by them)
``exceptions``     present only once an attempt raised: how many did
                   (``max_exceptions`` counts them; releases do not)
``chain``          present only for a step of a chain (:mod:`kashq.workflows`):
                   ``{"id", "next", "catch", "prev", "done"}``, the chain's id, the
                   steps after this one and the callbacks run if one fails for
                   good (envelope objects), the step before, and whether this
                   one completed while its successor could not be pushed
``batch``          present only for a job of a batch (:mod:`kashq.workflows`): the
                   batch's id, where the job's end is counted
``failure``        set only while a permanent failure waits to be recorded
                   (the failed-job store was down): ``{"error", "exception",
                   "reason"}``
=================  ==========================================================

Metadata keys starting with ``kashq.`` are kashq's own: a unique job carries
the lock it holds while queued (``kashq.unique_key``, ``kashq.unique_token``)
and when it frees it (``kashq.unique_until``).
"""

from __future__ import annotations

import builtins
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from kashq.exceptions import EnvelopeError, PayloadError
from kashq.retry import Backoff, backoff_from_json

WIRE_VERSION = 1
_ModelT = TypeVar("_ModelT", bound=BaseModel)

# Envelope metadata carrying a unique job's claim, so whoever removes the job can free it.
UNIQUE_KEY = "kashq.unique_key"
UNIQUE_TOKEN = "kashq.unique_token"
UNIQUE_UNTIL = "kashq.unique_until"


def new_job_id() -> str:
    """A fresh, globally unique job id: a random (version 4) UUID string.

    Built from ``os.urandom`` directly, which is fork-safe and cheaper than
    ``str(uuid.uuid4())`` on the dispatch hot path.
    """
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


_VARIANT = "89ab"


@dataclass(frozen=True, slots=True)
class Failure:
    """A permanent failure parked on the envelope until it can be recorded."""

    error: str
    exception: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ChainState:
    """Where a job stands in its chain (the envelope's ``chain`` field)."""

    id: str  # the chain's: its first job's id
    next: tuple[dict[str, Any], ...] = ()  # the steps after this one, as envelope objects
    catch: tuple[dict[str, Any], ...] = ()  # pushed once if a step fails for good
    prev: str | None = None  # the job that ran before this one
    done: bool = False  # completed, its successor not pushed yet: push it, do not run again

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "next": list(self.next)}
        if self.catch:
            data["catch"] = list(self.catch)
        if self.prev is not None:
            data["prev"] = self.prev
        if self.done:
            data["done"] = True
        return data


@dataclass(slots=True)
class Envelope:
    """One job on the wire; see the module docstring for each field.

    Treat it as a value: build changed copies with ``dataclasses.replace``.
    """

    id: str
    type: str
    queue: str
    payload: dict[str, Any]
    created_at: float
    available_at: float
    attempts: int = 0
    max_tries: int | None = None
    backoff_s: float | None = None
    timeout_s: float | None = None
    max_deliveries: int | None = None
    priority: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    failure: Failure | None = None
    backoff: Backoff | None = None
    retry_until: float | None = None
    exceptions: int = 0
    expires_at: float | None = None
    tags: tuple[str, ...] = ()
    chain: ChainState | None = None
    batch: str | None = None

    def encode(self) -> str:
        """The JSON text drivers store (keys in the documented order)."""
        text = (
            f'{{"v":{WIRE_VERSION},"id":{_string(self.id)},"type":{_string(self.type)},'
            f'"queue":{_string(self.queue)},"payload":{_dumps(self.payload)},'
            f'"attempts":{self.attempts},"max_tries":{_number(self.max_tries)},'
            f'"backoff_s":{_number(self.backoff_s)},"timeout_s":{_number(self.timeout_s)},'
            f'"max_deliveries":{_number(self.max_deliveries)},"priority":{self.priority},'
            f'"metadata":{_dumps(self.metadata) if self.metadata else "{}"},'
            f'"created_at":{self.created_at!r},"available_at":{self.available_at!r}'
        )
        if self.backoff is not None:
            text += f',"backoff":{_dumps(self.backoff.to_json())}'
        if self.retry_until is not None:
            text += f',"retry_until":{self.retry_until!r}'
        if self.exceptions:
            text += f',"exceptions":{self.exceptions}'
        if self.expires_at is not None:
            text += f',"expires_at":{self.expires_at!r}'
        if self.tags:
            text += f',"tags":{_dumps(list(self.tags))}'
        if self.chain is not None:
            text += f',"chain":{_dumps(self.chain.to_json())}'
        if self.batch is not None:
            text += f',"batch":{_string(self.batch)}'
        if self.failure is not None:
            failure = {"error": self.failure.error, "exception": self.failure.exception}
            if self.failure.reason:
                failure["reason"] = self.failure.reason
            return f'{text},"failure":{_dumps(failure)}}}'
        return text + "}"

    def payload_as(self, model: builtins.type[_ModelT]) -> _ModelT:
        """Validate the payload into a pydantic model (for function handlers)."""
        try:
            return model.model_validate(self.payload)
        except ValidationError as exc:
            raise PayloadError(describe_validation_error(model.__name__, exc)) from None


def decode(raw: str | bytes) -> Envelope:
    """Parse stored text into an :class:`Envelope`, or raise :class:`EnvelopeError`."""
    try:
        # Strict UTF-8: json.loads would let CESU-8 surrogates through ("surrogatepass").
        text = raw.decode() if isinstance(raw, bytes) else raw
        data = json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:  # UnicodeDecodeError: a ValueError
        raise EnvelopeError(f"envelope is not valid JSON: {exc}") from None
    if type(data) is not dict:
        raise EnvelopeError(f"envelope must be a JSON object, got {type(data).__name__}")
    version = data.get("v", WIRE_VERSION)
    if type(version) is not int or version != WIRE_VERSION:
        raise EnvelopeError(f"unsupported envelope version {version!r}")
    get = data.get
    try:
        failure = get("failure")
        env = Envelope(
            id=data["id"],
            type=data["type"],
            queue=data["queue"],
            payload=data["payload"],
            created_at=data["created_at"],
            available_at=data["available_at"],
            attempts=_or(get("attempts"), 0),
            max_tries=get("max_tries"),
            backoff_s=get("backoff_s"),
            timeout_s=get("timeout_s"),
            max_deliveries=get("max_deliveries"),
            priority=_or(get("priority"), 0),
            metadata=_or(get("metadata"), {}),
            failure=None if failure is None else _failure(failure),
            retry_until=get("retry_until"),
            exceptions=_or(get("exceptions"), 0),
            expires_at=get("expires_at"),
        )
        tags = get("tags")
        if tags:
            if type(tags) is not list or not all(type(tag) is str for tag in tags):
                raise TypeError("field 'tags' must be a list of strings")
            env.tags = tuple(tags)
        backoff = get("backoff")
        if backoff is not None:
            env.backoff = backoff_from_json(backoff)
        chain = get("chain")
        if chain is not None:
            env.chain = _chain(chain)
        batch = get("batch")
        if batch is not None:
            if type(batch) is not str:
                raise TypeError("field 'batch' must be str")
            env.batch = batch
        _check_types(env)
        if "\\u" in text:  # an escape, maybe of a lone surrogate ("\\ud800")
            _check_text(data)
    except KeyError as exc:
        raise EnvelopeError(f"malformed envelope: missing field {exc.args[0]!r}") from None
    except (TypeError, RecursionError) as exc:
        raise EnvelopeError(f"malformed envelope: {exc}") from None
    return env


def unique_claim(raw: str) -> tuple[str, str] | None:
    """The (lock key, token) of the unique claim stored job ``raw`` holds, if any.

    Text without the claim's key is not parsed, so scanning a queue is cheap.
    """
    if UNIQUE_KEY not in raw:
        return None
    try:
        metadata = decode(raw).metadata
    except EnvelopeError:
        return None
    key, token = metadata.get(UNIQUE_KEY), metadata.get(UNIQUE_TOKEN)
    return (key, token) if key and token else None


def peek(raw: str | bytes) -> tuple[str | None, str | None]:
    """Best-effort ``(id, type)`` of data that may not decode, for error records."""
    try:
        data = json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    job_id, job_type = data.get("id"), data.get("type")
    return (
        job_id if isinstance(job_id, str) else None,
        job_type if isinstance(job_type, str) else None,
    )


def describe_validation_error(model_name: str, exc: ValidationError) -> str:
    """One readable line per field for a pydantic ValidationError."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{where}: {error_text(err)}")
    return f"payload does not match {model_name}: " + "; ".join(parts)


def error_text(err: ErrorDetails) -> str:
    """One pydantic error's message; a validator's own ValueError without "Value error, "."""
    if err["type"] == "value_error" and "error" in err.get("ctx", {}):
        return str(err["ctx"]["error"])
    return err["msg"]


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _string(value: str) -> str:
    # Ids, type and queue names are plain in practice; escape only when needed.
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return _dumps(value)


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _number(value: float | None) -> str:
    return "null" if value is None else repr(value)


_STR, _INT, _NUMBER = (str,), (int,), (int, float)


def _check_types(env: Envelope) -> None:
    """Every field has its wire type (bool is not a number); normalise numbers."""
    if not _typed(env):
        for name, kinds, optional in _FIELD_TYPES:
            value = getattr(env, name)
            if (value is None and optional) or (type(value) in kinds):
                continue
            wanted = "a number" if kinds is _NUMBER else kinds[0].__name__
            raise TypeError(f"field {name!r} must be {wanted}, got {type(value).__name__}")
    env.created_at = _seconds("created_at", env.created_at)
    env.available_at = _seconds("available_at", env.available_at)
    if env.backoff_s is not None:
        env.backoff_s = _seconds("backoff_s", env.backoff_s)
    if env.timeout_s is not None:
        env.timeout_s = _seconds("timeout_s", env.timeout_s)
    if env.retry_until is not None:
        env.retry_until = _seconds("retry_until", env.retry_until)
    if env.expires_at is not None:
        env.expires_at = _seconds("expires_at", env.expires_at)
    if env.metadata and not all(type(k) is str and type(v) is str for k, v in env.metadata.items()):
        raise TypeError("field 'metadata' must map strings to strings")


def _typed(env: Envelope) -> bool:
    """:data:`_FIELD_TYPES` in one expression: every job's decode takes this way, and a
    False is explained by walking the table."""
    return (
        type(env.id) is str and type(env.type) is str and type(env.queue) is str
        and type(env.payload) is dict and type(env.metadata) is dict
        and type(env.attempts) is int and type(env.priority) is int
        and type(env.exceptions) is int
        and type(env.created_at) in _NUMBER and type(env.available_at) in _NUMBER
        and (env.max_tries is None or type(env.max_tries) is int)
        and (env.max_deliveries is None or type(env.max_deliveries) is int)
        and (env.backoff_s is None or type(env.backoff_s) in _NUMBER)
        and (env.timeout_s is None or type(env.timeout_s) in _NUMBER)
        and (env.retry_until is None or type(env.retry_until) in _NUMBER)
        and (env.expires_at is None or type(env.expires_at) in _NUMBER)
    )  # fmt: skip


def _seconds(name: str, value: float) -> float:
    """``value`` as a finite float: JSON reads ``1e999`` as infinity, and NaN too,
    which would be stored back as ``inf``/``nan``, text no JSON parser reads."""
    try:
        seconds = float(value)
    except OverflowError:  # an integer of hundreds of digits
        seconds = math.inf
    if not math.isfinite(seconds):
        raise TypeError(f"field {name!r} must be a finite number")
    return seconds


def _check_text(data: dict[str, Any]) -> None:
    """Refuse a lone surrogate (``"\\ud800"``): it is no text, and cannot be stored as UTF-8."""
    try:
        _dumps(data).encode()
    except UnicodeEncodeError:
        raise TypeError("a string holds a lone surrogate such as \\ud800: not text") from None


_FIELD_TYPES: tuple[tuple[str, tuple[type, ...], bool], ...] = (
    ("id", _STR, False),
    ("type", _STR, False),
    ("queue", _STR, False),
    ("payload", (dict,), False),
    ("created_at", _NUMBER, False),
    ("available_at", _NUMBER, False),
    ("attempts", _INT, False),
    ("max_tries", _INT, True),
    ("backoff_s", _NUMBER, True),
    ("timeout_s", _NUMBER, True),
    ("max_deliveries", _INT, True),
    ("priority", _INT, False),
    ("metadata", (dict,), False),
    ("retry_until", _NUMBER, True),
    ("expires_at", _NUMBER, True),
    ("exceptions", _INT, False),
)


def _chain(value: Any) -> ChainState:
    if type(value) is not dict:
        raise TypeError("field 'chain' must be an object")
    chain_id, steps, catch = value["id"], value["next"], value.get("catch", [])
    prev, done = value.get("prev"), value.get("done", False)
    if (
        type(chain_id) is not str
        or not (prev is None or type(prev) is str)
        or type(done) is not bool
    ):
        raise TypeError("field 'chain' must hold a string 'id', 'prev' and a boolean 'done'")
    for name, jobs in (("next", steps), ("catch", catch)):
        if type(jobs) is not list or not all(type(job) is dict for job in jobs):
            raise TypeError(f"field 'chain' must hold a list of envelope objects {name!r}")
    return ChainState(chain_id, tuple(steps), tuple(catch), prev, done)


def _failure(value: Any) -> Failure:
    if type(value) is not dict:
        raise TypeError("field 'failure' must be an object")
    error, exception, reason = value["error"], value["exception"], value.get("reason", "")
    if type(error) is not str or type(exception) is not str or type(reason) is not str:
        raise TypeError("field 'failure' must hold strings 'error', 'exception' and 'reason'")
    return Failure(error=error, exception=exception, reason=reason)
