"""Who may post to a webhook: signature verifiers, and where each finds the delivery id.

A verifier checks the raw body and headers of a request and raises
:class:`InvalidSignature` if they are not signed as the sender signs them; it
also says where the sender puts the id of a delivery, so a redelivery of the
same event can be recognised. Every comparison is ``hmac.compare_digest``.

- :class:`StripeSignature`: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]``,
  HMAC-SHA256 of ``"<t>.<body>"``, the timestamp within ``tolerance_s``; the
  delivery id is the event's ``"id"`` in the body.
- :class:`GitHubSignature`: ``X-Hub-Signature-256: sha256=<hex>`` of the body;
  the delivery id is ``X-GitHub-Delivery``.
- :class:`HmacSignature`: HMAC-SHA256 of the body, hex, in a header of your
  choosing (an optional ``sha256=`` prefix is accepted); the delivery id is
  another header (``X-Webhook-Id`` unless told).
- :class:`NoVerification`: anyone may post. Only ever used when asked for.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping
from typing import Any, Protocol

from kashq.webhooks.errors import InvalidSignature, WebhookError

Headers = Mapping[str, str]
"""Request headers by lower-case name (repeated headers joined with ``", "``)."""

STRIPE_TOLERANCE_S = 300.0
_MAX_TIMESTAMP_DIGITS = 12  # Unix seconds have 10 digits until the year 2286


class Verifier(Protocol):
    """Checks a request's signature and finds its delivery id."""

    @property
    def header_names(self) -> tuple[str, ...]:
        """Lower-case names of the headers this scheme reads (copied into the job)."""
        ...

    def verify(self, body: bytes, headers: Headers, now: float) -> None:
        """Return if ``body`` is signed as this scheme demands, else raise InvalidSignature."""
        ...

    def delivery_id(self, body: Any, headers: Headers) -> str | None:
        """The sender's id of this delivery (the same on a redelivery), if it sends one."""
        ...


def _key(secret: str | bytes) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode()
    if not isinstance(secret, bytes) or not secret:
        raise WebhookError("a webhook secret must be a non-empty str or bytes")
    return secret


def _hex_hmac(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.strip().lower().encode("ascii", "replace"))


def _header_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
        raise WebhookError(f"{what} must be a header name without spaces, got {name!r}")
    return name.lower()


def _string_id(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class StripeSignature:
    """Stripe's scheme; the timestamp must be within ``tolerance_s`` of now (either way)."""

    header_names = ("stripe-signature",)

    def __init__(self, secret: str | bytes, *, tolerance_s: float = STRIPE_TOLERANCE_S) -> None:
        self._key = _key(secret)
        ok = isinstance(tolerance_s, (int, float)) and not isinstance(tolerance_s, bool)
        if not ok or not math.isfinite(tolerance_s) or tolerance_s <= 0:
            raise WebhookError(f"tolerance_s must be a number of seconds > 0, got {tolerance_s!r}")
        self.tolerance_s = float(tolerance_s)

    def verify(self, body: bytes, headers: Headers, now: float) -> None:
        header = headers.get("stripe-signature")
        if not header:
            raise InvalidSignature("missing Stripe-Signature header")
        timestamp, signatures = None, []
        for item in header.split(","):
            name, _, value = item.strip().partition("=")
            if name == "t" and value.isascii() and value.isdigit():
                if len(value) > _MAX_TIMESTAMP_DIGITS:  # int() of thousands of digits raises
                    raise InvalidSignature("malformed Stripe-Signature header")
                timestamp = int(value)
            elif name == "v1":
                signatures.append(value)
        if timestamp is None or not signatures:
            raise InvalidSignature("malformed Stripe-Signature header")
        expected = _hex_hmac(self._key, f"{timestamp}.".encode() + body)
        if not any(_matches(expected, given) for given in signatures):
            raise InvalidSignature("invalid signature")
        if abs(now - timestamp) > self.tolerance_s:
            raise InvalidSignature("signature timestamp outside the tolerance")

    def delivery_id(self, body: Any, headers: Headers) -> str | None:
        return _string_id(body.get("id")) if isinstance(body, dict) else None


class GitHubSignature:
    """GitHub's ``X-Hub-Signature-256`` scheme; deliveries named by ``X-GitHub-Delivery``."""

    header_names = ("x-hub-signature-256", "x-github-delivery")

    def __init__(self, secret: str | bytes) -> None:
        self._key = _key(secret)

    def verify(self, body: bytes, headers: Headers, now: float) -> None:
        header = headers.get("x-hub-signature-256")
        if not header:
            raise InvalidSignature("missing X-Hub-Signature-256 header")
        scheme, _, given = header.strip().partition("=")
        if scheme != "sha256" or not given:
            raise InvalidSignature("malformed X-Hub-Signature-256 header")
        if not _matches(_hex_hmac(self._key, body), given):
            raise InvalidSignature("invalid signature")

    def delivery_id(self, body: Any, headers: Headers) -> str | None:
        return _string_id(headers.get("x-github-delivery"))


class HmacSignature:
    """HMAC-SHA256 of the body as hex in ``header`` (``sha256=`` prefix optional).

    ``delivery_header`` names the header holding the delivery id (None: the
    sender sends none, so redeliveries cannot be recognised).
    """

    def __init__(
        self,
        secret: str | bytes,
        *,
        header: str = "X-Signature",
        delivery_header: str | None = "X-Webhook-Id",
    ) -> None:
        self._key = _key(secret)
        self.header = _header_name(header, "header")
        self.delivery_header = (
            None if delivery_header is None else _header_name(delivery_header, "delivery_header")
        )

    @property
    def header_names(self) -> tuple[str, ...]:
        return (self.header,) + ((self.delivery_header,) if self.delivery_header else ())

    def verify(self, body: bytes, headers: Headers, now: float) -> None:
        given = headers.get(self.header)
        if not given:
            raise InvalidSignature(f"missing {self.header} header")
        given = given.strip()
        if given[:7].lower() == "sha256=":
            given = given[7:]
        if not _matches(_hex_hmac(self._key, body), given):
            raise InvalidSignature("invalid signature")

    def delivery_id(self, body: Any, headers: Headers) -> str | None:
        return _string_id(headers.get(self.delivery_header)) if self.delivery_header else None


class NoVerification:
    """Accept every request unsigned: for senders that sign nothing, behind your own guard.

    ``delivery_header`` optionally names a header holding a delivery id.
    """

    def __init__(self, *, delivery_header: str | None = None) -> None:
        self.delivery_header = (
            None if delivery_header is None else _header_name(delivery_header, "delivery_header")
        )

    @property
    def header_names(self) -> tuple[str, ...]:
        return (self.delivery_header,) if self.delivery_header else ()

    def verify(self, body: bytes, headers: Headers, now: float) -> None:
        return None

    def delivery_id(self, body: Any, headers: Headers) -> str | None:
        return _string_id(headers.get(self.delivery_header)) if self.delivery_header else None


SCHEMES = ("stripe", "github", "hmac")


def verifier_for(scheme: str, secret: str | bytes) -> Verifier:
    """The verifier of a named ``scheme`` (``stripe``, ``github``, ``hmac``) with ``secret``."""
    if scheme == "stripe":
        return StripeSignature(secret)
    if scheme == "github":
        return GitHubSignature(secret)
    if scheme == "hmac":
        return HmacSignature(secret)
    raise WebhookError(f"unknown verifier {scheme!r}: expected one of {', '.join(SCHEMES)}")
