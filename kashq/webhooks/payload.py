"""What a webhook job carries: the parsed body, selected headers, and when it arrived.

Every accepted request becomes one job whose payload is a JSON object:

=================  ==========================================================
``body``           the request body, parsed as JSON
``headers``        the allowed request headers, by lower-case name
``received_at``    when the request arrived (ISO 8601, UTC)
``delivery_id``    the sender's id of the delivery, or ``null``
``path``           the route's path (``/stripe``), without the mount prefix
=================  ==========================================================

A class-based job subclasses :class:`WebhookJob` (those are its fields); a
``@kashq.handler`` function gets the same dict as ``envelope.payload``, or a
:class:`WebhookPayload` from ``envelope.payload_as(WebhookPayload)``.

Headers are copied only from an allow-list (:data:`ALLOWED_HEADERS`, the
route's verifier's headers, and any the route names); credentials
(:data:`FORBIDDEN_HEADERS`) are never copied.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel

from kashq.job import Job

ALLOWED_HEADERS = frozenset(
    {
        "content-type",
        "user-agent",
        "stripe-signature",
        "x-github-event",
        "x-github-delivery",
        "x-github-hook-id",
        "x-hub-signature-256",
    }
)
"""Headers always copied into the job (lower-case)."""

FORBIDDEN_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
"""Headers never copied into a job, even when a route asks."""


class WebhookPayload(BaseModel):
    """A webhook job's payload as a model (for ``envelope.payload_as(WebhookPayload)``)."""

    body: Any
    headers: dict[str, str] = {}
    received_at: datetime
    delivery_id: str | None = None
    path: str

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (any case), if it was copied."""
        return self.headers.get(name.lower())


class WebhookJob(Job, WebhookPayload):
    """Base class of class-based webhook jobs: subclass it and write ``handle()``.

    Its fields are the webhook payload (``body``, ``headers``, ``received_at``,
    ``delivery_id``, ``path``); class options (``queue``, ``tries``...) apply as
    for any job.
    """


def parse_json(body: bytes) -> Any:
    """The JSON value in ``body``; ValueError if it is not UTF-8 JSON.

    NaN, Infinity and ``1e999`` are refused, and so are lone surrogates
    (``"\\ud800"``): no queue could store them as UTF-8 JSON.
    """
    try:
        value = json.loads(body, parse_constant=_refuse_constant)
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def build_payload(
    *,
    body: Any,
    headers: Mapping[str, str],
    allowed: Collection[str],
    received_at: float,
    delivery_id: str | None,
    path: str,
) -> dict[str, Any]:
    """The job payload of one accepted request (see the module docstring)."""
    return {
        "body": body,
        "headers": {
            name: value
            for name, value in headers.items()
            if name in allowed and name not in FORBIDDEN_HEADERS  # whatever a verifier reads
        },
        "received_at": datetime.fromtimestamp(received_at, timezone.utc).isoformat(),
        "delivery_id": delivery_id,
        "path": path,
    }
