"""The webhook endpoint's guards: constant-time signatures, replay limits, the body limit.

Requests go through the real WSGI and ASGI apps (in-process, as a server
calls them) into an in-memory queue whose clock stands still, so timestamps
are exact. Every refusal is checked to queue nothing.
"""

from __future__ import annotations

import hmac
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kashq import QueueManager
from kashq.webhooks import MAX_BODY_BYTES, REPLAY_WINDOW_S, WebhookHandler
from kashq.webhooks import verify as verify_module
from kashq.webhooks.verify import STRIPE_TOLERANCE_S, StripeSignature
from tests.security.webhook_calls import (
    NOW,
    STRIPE_SECRET,
    Answer,
    call_asgi,
    call_wsgi,
    hex_hmac,
    queued,
    signature_headers,
    signed_hooks,
    take_all,
)

LIMIT = 1000
EVENT = json.dumps({"id": "evt_1", "type": "invoice.paid"}).encode()

Call = Callable[..., Answer | None]


@pytest.fixture
def hooks() -> Iterator[tuple[WebhookHandler, QueueManager]]:
    handler, manager = signed_hooks(max_body_bytes=LIMIT)
    yield handler, manager
    manager.close()


@pytest.fixture(params=["wsgi", "asgi"])
def post(request: pytest.FixtureRequest, hooks: tuple[WebhookHandler, QueueManager]) -> Call:
    """POST ``body`` to ``path`` of the handler, through the WSGI or the ASGI app."""
    handler, _ = hooks

    def posting(path: str, headers: dict[str, str], body: bytes, **options: Any) -> Answer | None:
        if request.param == "wsgi":
            return call_wsgi(handler.wsgi_app, path, headers, body, **options)
        return call_asgi(handler.app, path, headers, [body], **options)

    return posting


def status(answer: Answer | None) -> int:
    assert answer is not None
    return answer.status


# --------------------------------------------------------------------------- signatures


@pytest.mark.parametrize("path", ["/stripe", "/github", "/hmac"])
def test_every_scheme_decides_by_hmac_compare_digest_alone(
    path: str, post: Call, hooks: tuple[WebhookHandler, QueueManager],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    _, manager = hooks
    calls: list[tuple[bytes, bytes]] = []
    verdict: list[bool] = []
    real = hmac.compare_digest

    def compare_digest(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return verdict[-1] if verdict else real(a, b)

    monkeypatch.setattr(verify_module.hmac, "compare_digest", compare_digest)
    genuine = signature_headers(path, EVENT)

    assert status(post(path, genuine, EVENT)) == 202
    assert len(calls) == 1 and calls[0][0] == calls[0][1]  # expected == given, compared once
    verdict.append(False)  # the same genuine request, compare_digest now saying "no"
    assert status(post(path, genuine, EVENT)) == 401
    assert len(calls) == 2
    assert queued(manager) == 1


def test_a_forged_signature_is_refused_before_the_body_is_parsed(
    post: Call, hooks: tuple[WebhookHandler, QueueManager]
) -> None:
    _, manager = hooks
    forged = {"x-signature": "0" * 64}

    unsigned = post("/hmac", forged, b"{not json")
    signed = post("/hmac", signature_headers("/hmac", b"{not json"), b"{not json")

    assert status(unsigned) == 401  # not 400: the body was never looked at
    assert status(signed) == 400
    assert queued(manager) == 0


# --------------------------------------------------------------------------- replays


@pytest.mark.parametrize("age_s", [STRIPE_TOLERANCE_S + 1, -(STRIPE_TOLERANCE_S + 1), 10**9])
def test_a_stripe_request_signed_outside_the_tolerance_is_refused(
    age_s: float, post: Call, hooks: tuple[WebhookHandler, QueueManager]
) -> None:
    _, manager = hooks
    headers = signature_headers("/stripe", EVENT, at=NOW - age_s)

    answer = post("/stripe", headers, EVENT)

    assert status(answer) == 401
    assert answer is not None and answer.body == {
        "error": "signature timestamp outside the tolerance"
    }
    assert queued(manager) == 0


def test_a_captured_stripe_request_replayed_is_a_duplicate_then_refused_once_stale(
    post: Call, hooks: tuple[WebhookHandler, QueueManager]
) -> None:
    _, manager = hooks
    captured = signature_headers("/stripe", EVENT, at=NOW)

    first = post("/stripe", captured, EVENT)
    replayed = post("/stripe", captured, EVENT)
    manager.clock.advance(STRIPE_TOLERANCE_S + 1)
    stale = post("/stripe", captured, EVENT)

    assert first is not None and replayed is not None
    assert (first.status, first.body["duplicate"]) == (202, False)
    assert replayed.status == 202 and replayed.body == {"id": first.body["id"], "duplicate": True}
    assert status(stale) == 401
    assert [job.id for job in take_all(manager)] == [first.body["id"]]


def test_a_redelivered_github_event_is_queued_once_within_the_replay_window(
    post: Call, hooks: tuple[WebhookHandler, QueueManager]
) -> None:
    _, manager = hooks
    headers = {**signature_headers("/github", EVENT), "x-github-delivery": "delivery-1"}

    answers = [post("/github", headers, EVENT) for _ in range(3)]

    assert [a.body["duplicate"] for a in answers if a is not None] == [False, True, True]
    assert queued(manager) == 1


def test_the_documented_defaults() -> None:
    assert STRIPE_TOLERANCE_S == 300
    assert StripeSignature("whsec").tolerance_s == 300
    assert REPLAY_WINDOW_S == 3 * 24 * 3600
    assert MAX_BODY_BYTES == 1024 * 1024
    assert WebhookHandler().max_body_bytes == MAX_BODY_BYTES


@pytest.mark.parametrize("t", ["9" * 5000, "1" * 13, "-1700000000", "1.7e9", ""])
def test_a_malformed_stripe_timestamp_is_refused_not_a_server_error(
    t: str, post: Call, hooks: tuple[WebhookHandler, QueueManager]
) -> None:
    _, manager = hooks
    signature = hex_hmac(STRIPE_SECRET, f"{t}.".encode() + EVENT)  # genuine, for what it says

    answer = post("/stripe", {"stripe-signature": f"t={t},v1={signature}"}, EVENT)

    assert status(answer) == 401
    assert queued(manager) == 0


# --------------------------------------------------------------------------- the body limit


class Unreadable(io.RawIOBase):
    """A request body that fails the test if read at all."""

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the body was read")


class Bounded(io.RawIOBase):
    """An endless body that fails the test if read past ``allowed`` bytes."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self.taken = 0

    def read(self, size: int = -1) -> bytes:
        assert self.taken < self.allowed, "read past the limit"
        chunk = b"x" * min(size if size >= 0 else self.allowed, self.allowed - self.taken)
        self.taken += len(chunk)
        return chunk


@pytest.mark.parametrize("declared", [str(LIMIT + 1), str(10**30), "9" * 5000])
def test_a_declared_length_over_the_limit_is_413_without_reading_a_byte(
    declared: str, hooks: tuple[WebhookHandler, QueueManager]
) -> None:
    handler, manager = hooks
    headers = signature_headers("/hmac", b"")

    wsgi = call_wsgi(handler.wsgi_app, "/hmac", headers, Unreadable(), content_length=declared)
    asgi = call_asgi(handler.app, "/hmac", headers, [], content_length=declared)  # no body at all

    assert wsgi.status == 413 and wsgi.body == {"error": f"body larger than {LIMIT} bytes"}
    assert status(asgi) == 413
    assert queued(manager) == 0


def test_a_wsgi_body_of_unknown_length_is_read_to_one_byte_past_the_limit_then_refused(
    hooks: tuple[WebhookHandler, QueueManager],
) -> None:
    handler, manager = hooks
    body = Bounded(allowed=LIMIT + 1)

    answer = call_wsgi(
        handler.wsgi_app, "/open", {}, body, content_length=None, terminated=True
    )  # chunked: the server marks the end of the input

    assert answer.status == 413
    assert body.taken == LIMIT + 1
    assert queued(manager) == 0


def test_an_asgi_body_streamed_past_the_limit_is_refused_at_the_chunk_that_crosses_it(
    hooks: tuple[WebhookHandler, QueueManager],
) -> None:
    handler, manager = hooks
    chunks = [b"x" * 400, b"x" * 400, b"x" * 400, b"never read", b"never read"]
    received: list[dict[str, Any]] = []

    answer = call_asgi(handler.app, "/open", {}, chunks, content_length=None, received=received)

    assert status(answer) == 413
    assert len(received) == 3
    assert queued(manager) == 0


def test_a_body_at_the_limit_is_accepted(
    post: Call, hooks: tuple[WebhookHandler, QueueManager]
) -> None:
    _, manager = hooks
    body = json.dumps({"pad": "x" * (LIMIT - 11)}).encode()
    assert len(body) == LIMIT

    assert status(post("/open", {}, body)) == 202
    assert queued(manager) == 1


def test_a_body_no_queue_could_store_is_400_not_500(
    post: Call, hooks: tuple[WebhookHandler, QueueManager]
) -> None:
    _, manager = hooks
    for body in (b'{"text": "\\ud800"}', b'{"n": 1e999}', b'{"n": NaN}'):
        assert status(post("/hmac", signature_headers("/hmac", body), body)) == 400
    assert queued(manager) == 0
