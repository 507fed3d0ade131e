"""Webhooks: an HTTP endpoint that turns each signed POST into exactly one job.

GoFlow's ``webhookHandler.RegisterJobWebhook("/stripe", "handle_stripe_event")``::

    from kashq import webhooks

    hooks = webhooks.WebhookHandler()
    hooks.register_job_webhook(
        "/stripe", "handle_stripe_event", secret=STRIPE_SECRET, verifier="stripe"
    )
    app.mount("/webhooks", hooks.app)  # FastAPI / Starlette; hooks.wsgi_app for WSGI

A POST to ``/webhooks/stripe`` whose signature checks out becomes one
``handle_stripe_event`` job (a ``@kashq.handler`` function, or a
:class:`WebhookJob` subclass) and is answered ``202 {"id": ..., "duplicate":
false}``; a redelivery of the same event is answered with the same id and
queues nothing. :func:`register_job_webhook` registers on
:data:`default_handler`, which ``kashq webhooks:serve`` runs.
"""

from __future__ import annotations

from collections.abc import Iterable

from kashq.job import Job
from kashq.webhooks.asgi import ASGIApp, mount_asgi
from kashq.webhooks.errors import InvalidSignature, WebhookError
from kashq.webhooks.handler import (
    MAX_BODY_BYTES,
    REPLAY_WINDOW_S,
    Response,
    Route,
    WebhookHandler,
    delivery_job_id,
)
from kashq.webhooks.payload import ALLOWED_HEADERS, FORBIDDEN_HEADERS, WebhookJob, WebhookPayload
from kashq.webhooks.verify import (
    GitHubSignature,
    HmacSignature,
    NoVerification,
    StripeSignature,
    Verifier,
)
from kashq.webhooks.wsgi import WSGIApp, mount_wsgi

__all__ = [
    "ALLOWED_HEADERS",
    "FORBIDDEN_HEADERS",
    "MAX_BODY_BYTES",
    "REPLAY_WINDOW_S",
    "ASGIApp",
    "GitHubSignature",
    "HmacSignature",
    "InvalidSignature",
    "NoVerification",
    "Response",
    "Route",
    "StripeSignature",
    "Verifier",
    "WSGIApp",
    "WebhookError",
    "WebhookHandler",
    "WebhookJob",
    "WebhookPayload",
    "default_handler",
    "delivery_job_id",
    "mount_asgi",
    "mount_wsgi",
    "register_job_webhook",
]

default_handler = WebhookHandler()
"""The handler :func:`register_job_webhook` registers on and ``kashq webhooks:serve`` runs."""


def register_job_webhook(
    path: str,
    job: str | type[Job],
    *,
    secret: str | bytes | None = None,
    verifier: Verifier | str | None = None,
    headers: Iterable[str] = (),
    queue: str | None = None,
) -> Route:
    """Register a route on :data:`default_handler`; see
    :meth:`WebhookHandler.register_job_webhook`."""
    return default_handler.register_job_webhook(
        path, job, secret=secret, verifier=verifier, headers=headers, queue=queue
    )
