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
``failure``        set only while a permanent failure waits to be recorded
                   (the failed-job store was down): ``{"error", "exception"}``
=================  ==========================================================
"""

from __future__ import annotations

import builtins
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from kashq.exceptions import EnvelopeError, PayloadError

WIRE_VERSION = 1
_ModelT = TypeVar("_ModelT", bound=BaseModel)


def new_job_id() -> str:
    """A fresh, globally unique job id."""
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Failure:
    """A permanent failure parked on the envelope until it can be recorded."""

    error: str
    exception: str


@dataclass(frozen=True, slots=True)
class Envelope:
    """One job on the wire; see the module docstring for each field."""

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

    def encode(self) -> str:
        """The JSON text drivers store."""
        data: dict[str, Any] = {
            "v": WIRE_VERSION,
            "id": self.id,
            "type": self.type,
            "queue": self.queue,
            "payload": self.payload,
            "attempts": self.attempts,
            "max_tries": self.max_tries,
            "backoff_s": self.backoff_s,
            "timeout_s": self.timeout_s,
            "max_deliveries": self.max_deliveries,
            "priority": self.priority,
            "metadata": self.metadata,
            "created_at": self.created_at,
            "available_at": self.available_at,
        }
        if self.failure is not None:
            data["failure"] = {"error": self.failure.error, "exception": self.failure.exception}
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

    def payload_as(self, model: builtins.type[_ModelT]) -> _ModelT:
        """Validate the payload into a pydantic model (for function handlers)."""
        try:
            return model.model_validate(self.payload)
        except ValidationError as exc:
            raise PayloadError(describe_validation_error(model.__name__, exc)) from None


def decode(raw: str | bytes) -> Envelope:
    """Parse stored text into an :class:`Envelope`, or raise :class:`EnvelopeError`."""
    try:
        data = json.loads(raw)
    except (ValueError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
        raise EnvelopeError(f"envelope is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EnvelopeError(f"envelope must be a JSON object, got {type(data).__name__}")
    version = data.get("v", WIRE_VERSION)
    if type(version) is not int or version != WIRE_VERSION:
        raise EnvelopeError(f"unsupported envelope version {version!r}")
    failure = data.get("failure")
    try:
        return Envelope(
            id=_req(data, "id", str),
            type=_req(data, "type", str),
            queue=_req(data, "queue", str),
            payload=_req(data, "payload", dict),
            created_at=_num(data, "created_at"),
            available_at=_num(data, "available_at"),
            attempts=_opt(data, "attempts", int) or 0,
            max_tries=_opt(data, "max_tries", int),
            backoff_s=_opt_num(data, "backoff_s"),
            timeout_s=_opt_num(data, "timeout_s"),
            max_deliveries=_opt(data, "max_deliveries", int),
            priority=_opt(data, "priority", int) or 0,
            metadata=_metadata(data),
            failure=_failure(failure) if failure is not None else None,
        )
    except (TypeError, KeyError) as exc:
        raise EnvelopeError(f"malformed envelope: {exc.args[0]}") from None


def peek(raw: str | bytes) -> tuple[str | None, str | None]:
    """Best-effort ``(id, type)`` of data that may not decode, for error records."""
    try:
        data = json.loads(raw)
    except (ValueError, TypeError):
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
        parts.append(f"{where}: {err['msg']}")
    return f"payload does not match {model_name}: " + "; ".join(parts)


_T = TypeVar("_T")


def _req(data: dict[str, Any], key: str, kind: type[_T]) -> _T:
    if key not in data:
        raise KeyError(f"missing field {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise TypeError(f"field {key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _opt(data: dict[str, Any], key: str, kind: type[_T]) -> _T | None:
    if data.get(key) is None:
        return None
    return _req(data, key, kind)


def _num(data: dict[str, Any], key: str) -> float:
    if key not in data:
        raise KeyError(f"missing field {key!r}")
    value = data[key]
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"field {key!r} must be a number, got {type(value).__name__}")
    return float(value)


def _opt_num(data: dict[str, Any], key: str) -> float | None:
    return None if data.get(key) is None else _num(data, key)


def _metadata(data: dict[str, Any]) -> dict[str, str]:
    meta = _opt(data, "metadata", dict) or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise TypeError("field 'metadata' must map strings to strings")
    return meta


def _failure(value: Any) -> Failure:
    if not isinstance(value, dict):
        raise TypeError("field 'failure' must be an object")
    return Failure(error=_req(value, "error", str), exception=_req(value, "exception", str))
