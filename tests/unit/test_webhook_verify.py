"""Webhook signature schemes, route declarations and request plumbing, without I/O."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from typing import Any

import pytest

from kashq import Job, NamedJob, handler, register
from kashq.webhooks import (
    GitHubSignature,
    HmacSignature,
    InvalidSignature,
    NoVerification,
    StripeSignature,
    WebhookError,
    WebhookHandler,
    WebhookJob,
    delivery_job_id,
)
from kashq.webhooks import verify as verify_module
from kashq.webhooks.asgi import headers_of as asgi_headers
from kashq.webhooks.asgi import route_path
from kashq.webhooks.handler import Response
from kashq.webhooks.payload import build_payload, parse_json
from kashq.webhooks.wsgi import headers_of as wsgi_headers
from kashq.webhooks.wsgi import read_body

NOW = 1_700_000_000.0
BODY = b'{"id": "evt_1", "type": "invoice.paid"}'


def sign(secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def stripe_header(body: bytes = BODY, *, secret: bytes = b"whsec_1", t: float = NOW) -> str:
    return f"t={int(t)},v1={sign(secret, f'{int(t)}.'.encode() + body)}"


# --------------------------------------------------------------------------- Stripe


def test_stripe_signature_of_timestamp_and_body_is_accepted() -> None:
    StripeSignature("whsec_1").verify(BODY, {"stripe-signature": stripe_header()}, NOW)


def test_stripe_accepts_any_matching_v1_among_several_and_ignores_other_schemes() -> None:
    header = f"t={int(NOW)},v1={'0' * 64},v0=abc,{stripe_header().split(',')[1]}"
    StripeSignature("whsec_1").verify(BODY, {"stripe-signature": header}, NOW)


@pytest.mark.parametrize(
    ("header", "body", "message"),
    [
        (None, BODY, "missing Stripe-Signature header"),
        (stripe_header(secret=b"whsec_other"), BODY, "invalid signature"),
        (stripe_header(), BODY.replace(b"paid", b"void"), "invalid signature"),
        (stripe_header().split(",")[1], BODY, "malformed Stripe-Signature header"),
        (f"t={int(NOW)}", BODY, "malformed Stripe-Signature header"),
        (stripe_header(t=NOW - 301), BODY, "signature timestamp outside the tolerance"),
        (stripe_header(t=NOW + 301), BODY, "signature timestamp outside the tolerance"),
        ("t=\u00b2," + stripe_header().split(",")[1], BODY, "malformed Stripe-Signature header"),
    ],
    ids=["missing", "wrong secret", "tampered", "no t", "no v1", "stale", "future", "t=2-sup"],
)
def test_stripe_refuses_bad_signatures(header: str | None, body: bytes, message: str) -> None:
    headers = {} if header is None else {"stripe-signature": header}
    with pytest.raises(InvalidSignature, match=f"^{message}$"):
        StripeSignature("whsec_1").verify(body, headers, NOW)


def test_stripe_tolerance_is_configurable() -> None:
    old = {"stripe-signature": stripe_header(t=NOW - 600)}
    StripeSignature("whsec_1", tolerance_s=900).verify(BODY, old, NOW)
    with pytest.raises(WebhookError, match="tolerance_s"):
        StripeSignature("whsec_1", tolerance_s=0)


def test_stripe_delivery_id_is_the_event_id_in_the_body() -> None:
    stripe = StripeSignature("whsec_1")
    assert stripe.delivery_id(json.loads(BODY), {}) == "evt_1"
    assert stripe.delivery_id([1], {}) is None
    assert stripe.delivery_id({"id": 5}, {}) is None


def test_signatures_are_compared_with_hmac_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(verify_module.hmac, "compare_digest", spy)
    StripeSignature("whsec_1").verify(BODY, {"stripe-signature": stripe_header()}, NOW)
    assert len(calls) == 1


# --------------------------------------------------------------------------- GitHub, HMAC, none


def test_github_signature_of_the_body_is_accepted_in_any_hex_case() -> None:
    github = GitHubSignature(b"gh")
    github.verify(BODY, {"x-hub-signature-256": "sha256=" + sign(b"gh", BODY).upper()}, NOW)
    assert github.delivery_id({}, {"x-github-delivery": "d-1"}) == "d-1"
    assert github.delivery_id({}, {}) is None


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing X-Hub-Signature-256 header"),
        ("sha256=" + sign(b"other", BODY), "invalid signature"),
        ("sha1=" + sign(b"gh", BODY), "malformed X-Hub-Signature-256 header"),
        (sign(b"gh", BODY), "malformed X-Hub-Signature-256 header"),
    ],
)
def test_github_refuses_bad_signatures(header: str | None, message: str) -> None:
    headers = {} if header is None else {"x-hub-signature-256": header}
    with pytest.raises(InvalidSignature, match=f"^{message}$"):
        GitHubSignature("gh").verify(BODY, headers, NOW)


def test_github_refuses_a_tampered_body() -> None:
    headers = {"x-hub-signature-256": "sha256=" + sign(b"gh", BODY)}
    with pytest.raises(InvalidSignature):
        GitHubSignature("gh").verify(BODY + b" ", headers, NOW)


def test_generic_hmac_reads_the_configured_header_with_or_without_prefix() -> None:
    scheme = HmacSignature("s", header="X-Shop-Hmac", delivery_header="Idempotency-Key")
    scheme.verify(BODY, {"x-shop-hmac": sign(b"s", BODY)}, NOW)
    scheme.verify(BODY, {"x-shop-hmac": "SHA256=" + sign(b"s", BODY)}, NOW)
    assert scheme.header_names == ("x-shop-hmac", "idempotency-key")
    assert scheme.delivery_id(None, {"idempotency-key": "k-1"}) == "k-1"
    with pytest.raises(InvalidSignature, match=r"^missing x-shop-hmac header$"):
        scheme.verify(BODY, {"x-signature": sign(b"s", BODY)}, NOW)
    with pytest.raises(InvalidSignature, match=r"^invalid signature$"):
        scheme.verify(BODY, {"x-shop-hmac": sign(b"t", BODY)}, NOW)
    assert HmacSignature("s", delivery_header=None).delivery_id(None, {"x-webhook-id": "a"}) is None


def test_no_verification_accepts_anything_and_may_read_a_delivery_header() -> None:
    NoVerification().verify(b"anything", {}, NOW)
    assert NoVerification().delivery_id({}, {"x-webhook-id": "a"}) is None
    assert NoVerification(delivery_header="X-Webhook-Id").delivery_id({}, {"x-webhook-id": "a"})


@pytest.mark.parametrize("secret", ["", b"", None, 5])
def test_a_secret_must_be_non_empty(secret: Any) -> None:
    with pytest.raises(WebhookError, match="secret"):
        HmacSignature(secret)


# --------------------------------------------------------------------------- routes


def test_a_route_needs_a_secret_or_an_explicit_no_verification() -> None:
    hooks = WebhookHandler()
    with pytest.raises(WebhookError, match=r"needs a secret \(or verifier=NoVerification\(\)"):
        hooks.register_job_webhook("/stripe", "handle_stripe_event")
    with pytest.raises(WebhookError, match="needs a secret"):
        hooks.register_job_webhook("/stripe", "handle_stripe_event", verifier="stripe")
    with pytest.raises(WebhookError, match="not both"):
        hooks.register_job_webhook("/x", "x", secret="s", verifier=StripeSignature("s"))
    with pytest.raises(WebhookError, match="unknown verifier 'paypal'"):
        hooks.register_job_webhook("/x", "x", secret="s", verifier="paypal")
    with pytest.raises(WebhookError, match="is not a verifier"):
        hooks.register_job_webhook("/x", "x", verifier=object())  # type: ignore[arg-type]
    route = hooks.register_job_webhook("/open", "x", verifier=NoVerification())
    assert isinstance(route.verifier, NoVerification)
    assert isinstance(hooks.register_job_webhook("/h", "x", secret="s").verifier, HmacSignature)
    assert [r.path for r in hooks.routes] == ["/h", "/open"]


@pytest.mark.parametrize("path", ["stripe", "/a?b=1", "/a b", "", None])
def test_a_route_path_is_a_plain_absolute_path(path: Any) -> None:
    with pytest.raises(WebhookError, match="path"):
        WebhookHandler().register_job_webhook(path, "x", secret="s")


def test_a_path_makes_one_kind_of_job_and_trailing_slashes_do_not_matter() -> None:
    hooks = WebhookHandler()
    hooks.register_job_webhook("/stripe/", "a", secret="s")
    hooks.register_job_webhook("/stripe", "a", secret="t")  # the same job: replaced
    with pytest.raises(WebhookError, match="already makes 'a' jobs"):
        hooks.register_job_webhook("/stripe", "b", secret="s")
    assert not isinstance(hooks.route("POST", "/stripe/"), Response)


@pytest.mark.parametrize("name", ["Authorization", "cookie", "Proxy-Authorization"])
def test_credential_headers_are_never_copied(name: str) -> None:
    with pytest.raises(WebhookError, match="credentials"):
        WebhookHandler().register_job_webhook("/x", "x", secret="s", headers=[name])


def test_credential_headers_a_verifier_reads_are_not_copied_either() -> None:
    payload = build_payload(
        body={}, headers={"authorization": "Bearer s3cret", "x-signature": "abc"},
        allowed={"authorization", "x-signature"}, received_at=NOW, delivery_id=None, path="/x",
    )  # fmt: skip

    assert payload["headers"] == {"x-signature": "abc"}


class PlainJob(Job):
    def handle(self) -> None:
        pass


class ShopOrder(WebhookJob):
    def handle(self) -> None:
        pass


@handler("tests.unit.webhook_fn")
def webhook_fn(envelope: Any) -> None:
    pass


def test_the_job_is_a_handler_name_or_a_webhook_job_class() -> None:
    hooks = WebhookHandler()
    assert hooks.register_job_webhook("/a", ShopOrder, secret="s").job == ShopOrder.__kashq_name__
    assert hooks.register_job_webhook("/b", "tests.unit.webhook_fn", secret="s").job
    assert hooks.register_job_webhook("/c", "registered.later", secret="s").job
    with pytest.raises(WebhookError, match=r"must subclass kashq\.webhooks\.WebhookJob"):
        hooks.register_job_webhook("/d", PlainJob, secret="s")
    register("tests.unit.plain_alias", PlainJob)
    with pytest.raises(WebhookError, match="must subclass"):
        hooks.register_job_webhook("/e", "tests.unit.plain_alias", secret="s")
    with pytest.raises(WebhookError, match="must subclass"):
        hooks.register_job_webhook("/f", WebhookJob, secret="s")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_body_bytes": 0}, "max_body_bytes must be >= 1"),
        ({"max_body_bytes": 1.5}, "max_body_bytes must be an integer"),
        ({"replay_window_s": 0}, "replay_window_s"),
        ({"replay_window_s": float("inf")}, "replay_window_s"),
        ({"queue": "a,b"}, "queue name"),
    ],
)
def test_handler_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(WebhookError, match=message):
        WebhookHandler(**options)


def test_unknown_paths_are_404_and_other_methods_405_with_allow() -> None:
    hooks = WebhookHandler()
    hooks.register_job_webhook("/stripe", "x", secret="s")
    missing, wrong = hooks.route("POST", "/paypal"), hooks.route("GET", "/stripe")
    assert isinstance(missing, Response) and missing.status == 404
    assert isinstance(wrong, Response) and wrong.status == 405
    assert wrong.headers == (("allow", "POST"),)


def test_a_declared_length_is_checked_before_reading() -> None:
    hooks = WebhookHandler(max_body_bytes=10)
    assert hooks.check_length(None) is None
    assert hooks.check_length("10") is None
    assert hooks.check_length("11") == Response(413, {"error": "body larger than 10 bytes"})
    assert hooks.check_length("-1") == Response(400, {"error": "bad Content-Length"})
    assert hooks.check_length("\u00b2") == Response(400, {"error": "bad Content-Length"})


# --------------------------------------------------------------------------- ids and bodies


def test_a_delivery_gets_the_same_job_id_every_time_and_only_on_its_route() -> None:
    first = delivery_job_id("/stripe", "evt_1")
    assert first == delivery_job_id("/stripe", "evt_1")
    assert first != delivery_job_id("/stripe", "evt_2")
    assert first != delivery_job_id("/other", "evt_1")
    envelope = NamedJob("x").with_id(first).to_envelope(default_queue="q", now=NOW)
    assert envelope.id == first


def test_a_job_id_set_by_hand_must_be_a_uuid() -> None:
    with pytest.raises(ValueError, match="a job id must be a UUID"):
        NamedJob("x").with_id("evt_1")


@pytest.mark.parametrize("body", [b"", b"{", b"NaN", b'{"a": Infinity}', b"\xff", b"[" * 100_000])
def test_only_json_bodies_parse(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_json(body)


def test_asgi_paths_are_taken_below_root_path_and_headers_joined() -> None:
    assert route_path({"path": "/webhooks/stripe", "root_path": "/webhooks"}) == "/stripe"
    assert route_path({"path": "/webhooks", "root_path": "/webhooks"}) == "/"
    assert route_path({"path": "/stripe", "root_path": "/webhooks"}) == "/stripe"
    assert route_path({"path": "/webhooksx/a", "root_path": "/webhooks"}) == "/webhooksx/a"
    raw = [(b"X-A", b"1"), (b"x-a", b"2"), (b"content-type", b"application/json")]
    assert asgi_headers({"headers": raw}) == {"x-a": "1, 2", "content-type": "application/json"}


def test_wsgi_headers_and_bodies() -> None:
    environ = {"HTTP_X_GITHUB_DELIVERY": "d", "CONTENT_TYPE": "application/json", "PATH_INFO": "/"}
    assert wsgi_headers(environ) == {"x-github-delivery": "d", "content-type": "application/json"}
    assert read_body({"wsgi.input": io.BytesIO(b"abc"), "CONTENT_LENGTH": "3"}, 3) == b"abc"
    assert read_body({"wsgi.input": io.BytesIO(b"abcd"), "wsgi.input_terminated": True}, 3) is None
    assert read_body({"wsgi.input": io.BytesIO(b"abc"), "wsgi.input_terminated": True}, 3) == b"abc"
    assert read_body({"wsgi.input": io.BytesIO(b"abc")}, 3) == b""
