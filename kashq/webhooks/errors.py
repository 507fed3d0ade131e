"""The webhook errors, in kashq's one exception tree.

KashqError
└── WebhookError           a webhook route is declared wrongly
    └── InvalidSignature   a request's signature is missing, wrong or stale (HTTP 401)
"""

from __future__ import annotations

from kashq.exceptions import KashqError


class WebhookError(KashqError):
    """A webhook route is declared wrongly (no secret, a bad path, a forbidden header...)."""


class InvalidSignature(WebhookError):
    """A request is not signed as its route demands; answered with 401, no job made."""
