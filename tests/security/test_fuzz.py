"""Fuzzing what strangers can send: stored envelopes, and requests to the webhook endpoint.

The envelope decoder either returns an envelope that encodes back to
storable JSON, or raises :class:`EnvelopeError` (never anything else), and a
worker fails whatever it cannot decode in one line. The webhook apps (WSGI and
ASGI) answer every request with a 2xx or a 4xx, never a 5xx or an exception,
and only a 202 that is not a duplicate ever queues a job.

Examples are derandomized so every run tries the same inputs; a hang would be
caught by the test timeout.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kashq import MemoryFailedJobStore, Outcome, QueueManager, Worker, WorkerOptions
from kashq.drivers.memory import MemoryDriver
from kashq.envelope import decode, peek
from kashq.exceptions import EnvelopeError
from kashq.webhooks import WebhookHandler
from tests.security.forged import forged
from tests.security.webhook_calls import (
    NOW,
    ROUTES,
    Answer,
    call_asgi,
    call_wsgi,
    queued,
    signature_headers,
    signed_hooks,
    take_all,
)

pytestmark = pytest.mark.timeout(90)

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --------------------------------------------------------------------------- JSON-ish values

odd_text = st.sampled_from(["\ud800", "a\udfffb", "\U0001f600", "\x00", "\\u0000", "é"])
texts = st.text(max_size=12) | odd_text
numbers = (
    st.integers()
    | st.integers(min_value=10**300, max_value=10**400)  # past what a float holds
    | st.floats()  # NaN and infinities included
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --------------------------------------------------------------------------- envelopes

VALID = {
    "v": 1, "id": "job-1", "type": "fuzz.Job", "queue": "default", "payload": {"n": 1},
    "created_at": NOW, "available_at": NOW, "attempts": 0, "max_tries": None,
    "backoff_s": None, "timeout_s": None, "max_deliveries": None, "priority": 0,
    "metadata": {}, "failure": None,
}  # fmt: skip


@st.composite
def envelope_like(draw: st.DrawFn) -> str | bytes:
    """A valid envelope with some fields dropped or replaced, extra ones added, as text or bytes."""
    data: dict[str, Any] = dict(VALID)
    for name in draw(st.sets(st.sampled_from(sorted(VALID)), max_size=4)):
        if draw(st.booleans()):
            del data[name]
        else:
            data[name] = draw(json_values)
    data.update(draw(st.dictionaries(texts, json_values, max_size=2)))
    text = json.dumps(data, ensure_ascii=draw(st.booleans()))
    if draw(st.integers(0, 9)) == 0:  # a payload nested past any parser's patience
        deep = nested(draw(st.integers(500, 3000)))
        text = text.replace('"payload": ', f'"payload": {{"a": {deep}}}, "x": ', 1)
    raw = text.encode("utf-8", "surrogatepass")  # a lone surrogate makes it invalid UTF-8
    # What drivers hand out: bytes, or text decoded from UTF-8 (so no lone surrogate in it).
    return text if raw.decode("utf-8", "ignore") == text and draw(st.booleans()) else raw


stored_data = (
    envelope_like()
    | st.binary(max_size=200)
    | st.text(max_size=200)
    | json_values.map(json.dumps)
    | st.integers(1, 200_000).map(nested)
)


def check_decodes_or_refuses(raw: str | bytes) -> None:
    try:
        envelope = decode(raw)
    except EnvelopeError as exc:
        assert "\n" not in str(exc)
        return
    text = envelope.encode()
    text.encode("utf-8")  # storable as it is, by any driver
    assert decode(text).encode() == text


@FUZZ
@given(raw=stored_data)
def test_decode_returns_a_storable_envelope_or_raises_envelope_error(raw: str | bytes) -> None:
    check_decodes_or_refuses(raw)
    job_id, job_type = peek(raw)  # never raises either
    assert job_id is None or isinstance(job_id, str)
    assert job_type is None or isinstance(job_type, str)


@pytest.fixture(scope="module")
def memory_worker() -> Iterator[tuple[Worker, MemoryDriver, MemoryFailedJobStore]]:
    driver, store = MemoryDriver(), MemoryFailedJobStore()
    yield Worker(driver, store, WorkerOptions(tries=1)), driver, store
    driver.close()


@settings(FUZZ, max_examples=150)
@given(raw=stored_data)
def test_a_worker_fails_whatever_it_cannot_run_in_one_line_and_goes_on(
    raw: str | bytes, memory_worker: tuple[Worker, MemoryDriver, MemoryFailedJobStore]
) -> None:
    worker, driver, store = memory_worker
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw  # as Redis hands it
    driver.push(forged(text))

    assert worker.run_next() is Outcome.FAILED  # no job type here is registered

    assert all("\n" not in record.error for record in store.all())  # one record per job id
    assert driver.sizes(["default"])["default"].total == 0


# --------------------------------------------------------------------------- webhook requests

LIMIT = 512
HEADER_NAMES = [
    "stripe-signature", "x-hub-signature-256", "x-signature", "x-webhook-id",
    "x-github-delivery", "content-type", "authorization", "cookie", "x-anything",
]  # fmt: skip
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=60)
content_lengths = st.one_of(
    st.just("exact"),
    st.none(),
    st.integers(0, 2 * LIMIT).map(str),
    st.integers(0, 10**40).map(str),
    st.sampled_from(["9" * 5000, "-1", "1e3", " 12 ", "0x10", "²", "", "5, 5"]),
    header_values,
)
bodies = st.one_of(
    st.binary(max_size=LIMIT + 64),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.dictionaries(texts, json_values, max_size=3).map(
        lambda event: json.dumps({"id": "evt_1", **event}).encode()
    ),
    st.sampled_from([b'{"a": "\\ud800"}', b"1e999", b"NaN", nested(5000).encode(), b""]),
)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    content_length: str | None
    signing: str  # "genuine", "stale" (genuine but signed too long ago) or "none"


@st.composite
def requests(draw: st.DrawFn) -> Request:
    path = draw(st.sampled_from(ROUTES) | st.sampled_from(["/", "/nope", "/stripe/x", "//"]))
    body = draw(bodies)
    headers = draw(st.dictionaries(st.sampled_from(HEADER_NAMES), header_values, max_size=4))
    signing = draw(st.sampled_from(["genuine", "stale", "none"]))
    if signing != "none":
        skew_s = draw(st.integers(301, 10**6)) * draw(st.sampled_from([1, -1]))
        at = NOW if signing == "genuine" else NOW + skew_s
        headers = {**headers, **signature_headers(path, body, at=at)}
    method = draw(st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE", ""]))
    return Request(method, path, headers, body, draw(content_lengths), signing)


@pytest.fixture(scope="module")
def hooks() -> Iterator[tuple[WebhookHandler, QueueManager]]:
    handler, manager = signed_hooks(max_body_bytes=LIMIT)
    yield handler, manager
    manager.close()


def check_answer(
    request: Request, answer: Answer | None, before: int, manager: QueueManager
) -> None:
    """A 2xx or 4xx; a job only for a 202 that is not a duplicate; refusals where due."""
    if answer is None:  # the client disconnected: nobody to answer
        assert queued(manager) == before
        return
    assert answer.status in (202, 400, 401, 404, 405, 413), answer
    accepted = answer.status == 202 and not answer.body["duplicate"]
    assert queued(manager) == before + accepted, answer
    if answer.status == 202:
        assert request.method == "POST" and request.path in ROUTES
        assert request.path == "/open" or request.signing != "none"
        assert not (request.path == "/stripe" and request.signing == "stale")
    take_all(manager)  # each queued job decodes and is storable as UTF-8


@FUZZ
@given(request=requests(), terminated=st.booleans())
def test_the_wsgi_app_answers_every_request_with_2xx_or_4xx_and_queues_only_accepted_ones(
    request: Request, terminated: bool, hooks: tuple[WebhookHandler, QueueManager]
) -> None:
    handler, manager = hooks
    before = queued(manager)

    answer = call_wsgi(
        handler.wsgi_app, request.path, request.headers, request.body, method=request.method,
        content_length=request.content_length, terminated=terminated,
    )  # fmt: skip

    check_answer(request, answer, before, manager)


@settings(FUZZ, max_examples=200)
@given(
    request=requests(),
    cuts=st.lists(st.integers(0, LIMIT + 64), max_size=3),
    disconnect=st.none() | st.integers(0, 3),
)
def test_the_asgi_app_answers_every_request_with_2xx_or_4xx_and_queues_only_accepted_ones(
    request: Request,
    cuts: list[int],
    disconnect: int | None,
    hooks: tuple[WebhookHandler, QueueManager],
) -> None:
    handler, manager = hooks
    body, points = request.body, sorted({0, len(request.body), *cuts})
    chunks = [body[a:b] for a, b in itertools.pairwise(points)] or [b""]
    before = queued(manager)

    answer = call_asgi(
        handler.app, request.path, request.headers, chunks, method=request.method,
        content_length=request.content_length,
        disconnect_at=None if disconnect is None else min(disconnect, len(chunks) - 1),
    )  # fmt: skip

    check_answer(request, answer, before, manager)
