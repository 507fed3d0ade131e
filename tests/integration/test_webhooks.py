"""Webhooks over real HTTP (uvicorn, werkzeug) into real Redis and SQLite queues.

Every rejection is checked to leave the queue empty; every 202 to map to
exactly one job, also under a flood of concurrent requests with redeliveries
spread over two servers that share nothing but the queue's storage.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import random
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import kashq
from kashq import MemoryFailedJobStore, QueueManager, load_settings, webhooks
from kashq.envelope import Envelope, decode
from kashq.webhooks import WebhookHandler, WebhookJob, WebhookPayload
from tests.support.databases import database
from tests.support.http import uvicorn_serving, wsgi_serving
from tests.support.redis import redis_driver
from tests.support.services import REDIS_URL, RedisServer

STRIPE_SECRET = "whsec_test_secret"
GITHUB_SECRET = "gh-secret"
HMAC_SECRET = b"generic-secret"


# --------------------------------------------------------------------------- helpers


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def post(
    base: str, path: str, body: bytes, headers: dict[str, str] | None = None, method: str = "POST"
) -> Answer:
    """One request with a fresh http.client connection."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        conn.request(method, url.path + path, body=body, headers=headers or {})
        response = conn.getresponse()
        raw = response.read()
        return Answer(
            response.status, json.loads(raw), {k.lower(): v for k, v in response.getheaders()}
        )
    finally:
        conn.close()


def raw_request(base: str, head: bytes, chunks: tuple[bytes, ...] = ()) -> Answer:
    """Send ``head`` (request line and headers) and ``chunks`` over a socket; read the answer."""
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head + b"".join(chunks))  # one write: all in flight before any answer
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            more = sock.recv(65536)
            if not more:
                break
            data += more
    head_text, _, body = data.partition(b"\r\n\r\n")
    lines = head_text.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return Answer(int(lines[0].split()[1]), json.loads(body), headers)


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def stripe_headers(body: bytes, *, secret: str = STRIPE_SECRET, at: float | None = None) -> dict:
    t = int(time.time() if at is None else at)
    sig = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={t},v1={sig}", "Content-Type": "application/json"}


def github_headers(body: bytes, delivery: str, *, secret: str = GITHUB_SECRET) -> dict:
    sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={sig}", "X-GitHub-Delivery": delivery}


def hmac_headers(body: bytes, delivery: str | None = None) -> dict:
    headers = {"X-Signature": hmac.new(HMAC_SECRET, body, hashlib.sha256).hexdigest()}
    return headers | ({"X-Webhook-Id": delivery} if delivery else {})


def event(n: int | str) -> bytes:
    return json.dumps({"id": f"evt_{n}", "type": "charge.succeeded", "n": n}).encode()


def serving(app: Any, **config: Any) -> AbstractContextManager[str]:
    """``app`` on uvicorn in a thread, on a free loopback port; yields its base URL."""
    return uvicorn_serving(app, **config)


def queued(manager: QueueManager, queue: str = "default") -> list[Envelope]:
    """Every job waiting in ``queue`` (reserved to read them)."""
    driver, jobs = manager.connection(), []
    while (reservation := driver.reserve([queue], lease_s=300)) is not None:
        jobs.append(decode(reservation.raw))
    return jobs


def size(manager: QueueManager, queue: str = "default") -> int:
    """Jobs in ``queue`` in any state."""
    return manager.connection().sizes([queue])[queue].total


def stripe_handler(manager: QueueManager, **options: Any) -> WebhookHandler:
    handler = WebhookHandler(manager=manager, **options)
    handler.register_job_webhook(
        "/stripe", "handle_stripe_event", secret=STRIPE_SECRET, verifier="stripe",
        headers=["X-Shop"],
    )  # fmt: skip
    handler.register_job_webhook("/github", "on_github", secret=GITHUB_SECRET, verifier="github")
    handler.register_job_webhook("/generic", "on_generic", secret=HMAC_SECRET)
    return handler


def new_manager(**settings: Any) -> QueueManager:
    return QueueManager(
        load_settings(events=False, **settings), failed_store=MemoryFailedJobStore()
    )


@pytest.fixture(params=["redis", "sqlite"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Settings of a fresh store: a Redis prefix on db 15 (deleted after) or a SQLite file."""
    if request.param == "redis":
        with redis_driver() as driver:
            yield {"connection": "redis", "redis_url": REDIS_URL, "prefix": driver.prefix}
    else:
        with database("sqlite", tmp_path) as url:
            yield {"connection": "database", "database_url": url}


@pytest.fixture
def manager(settings: dict[str, str]) -> Iterator[QueueManager]:
    queue_manager = new_manager(**settings)
    yield queue_manager
    queue_manager.close()


@pytest.fixture
def redis_manager() -> Iterator[QueueManager]:
    """A manager on Redis only, for tests about HTTP rather than storage."""
    with redis_driver() as driver:
        queue_manager = new_manager(connection="redis", redis_url=REDIS_URL, prefix=driver.prefix)
        yield queue_manager
        queue_manager.close()


@pytest.fixture
def stripe_url(manager: QueueManager) -> Iterator[str]:
    """A uvicorn serving :func:`stripe_handler` under ``/webhooks`` (Starlette-free mount)."""
    handler = stripe_handler(manager)
    with serving(webhooks.mount_asgi("/webhooks", handler.app), lifespan="on") as url:
        yield url + "/webhooks"


# --------------------------------------------------------------------------- accepting


def test_signed_stripe_event_becomes_one_job_with_body_allowed_headers_and_receipt_time(
    manager, stripe_url
):
    body = event(1)
    headers = stripe_headers(body) | {
        "User-Agent": "Stripe/1.0",
        "X-Shop": "acme",
        "Authorization": "Bearer secret-token",
        "Cookie": "session=secret",
        "X-Other": "not copied",
    }
    before = time.time()
    answer = post(stripe_url, "/stripe", body, headers)

    assert answer.status == 202, answer
    assert answer.headers["content-type"] == "application/json"
    [job] = queued(manager)
    assert answer.body == {"id": job.id, "duplicate": False}
    assert job.type == "handle_stripe_event"
    payload = WebhookPayload.model_validate(job.payload)
    assert payload.body == json.loads(body)
    assert payload.headers == {
        "content-type": "application/json",
        "user-agent": "Stripe/1.0",
        "stripe-signature": headers["Stripe-Signature"],
        "x-shop": "acme",
    }
    assert before - 1 <= payload.received_at.timestamp() <= time.time() + 1
    assert payload.received_at.utcoffset() is not None
    assert (payload.delivery_id, payload.path) == ("evt_1", "/stripe")
    assert job.id == webhooks.delivery_job_id("/stripe", "evt_1")


def test_github_and_generic_hmac_signatures_are_accepted_and_forged_ones_refused(
    manager, stripe_url
):
    body = b'{"action": "opened"}'
    good = github_headers(body, "d-1") | {"X-GitHub-Event": "pull_request"}
    assert post(stripe_url, "/github", body, good).status == 202
    forged = github_headers(body, "d-2", secret="wrong")
    assert post(stripe_url, "/github", body, forged).body == {"error": "invalid signature"}
    tampered = github_headers(body, "d-3")
    assert post(stripe_url, "/github", b'{"action": "closed"}', tampered).status == 401
    assert post(stripe_url, "/generic", body, hmac_headers(body, "g-1")).status == 202
    prefixed = {"X-Signature": "sha256=" + hmac_headers(body)["X-Signature"].upper()}
    assert post(stripe_url, "/generic", body, prefixed).status == 202
    assert post(stripe_url, "/generic", b"{}", hmac_headers(body)).status == 401

    jobs = queued(manager)
    assert sorted(job.type for job in jobs) == ["on_generic", "on_generic", "on_github"]
    [github] = [job for job in jobs if job.type == "on_github"]
    assert github.payload["headers"]["x-github-event"] == "pull_request"
    assert github.payload["delivery_id"] == "d-1"


def test_each_rejection_answers_its_status_and_queues_nothing(manager, stripe_url):
    body = event(2)
    base, host = stripe_url, urlsplit(stripe_url).netloc
    cases = {
        "unknown path": (post(base, "/paypal", body, stripe_headers(body)), 404),
        "wrong method": (post(base, "/stripe", b"", method="GET"), 405),
        "no signature": (post(base, "/stripe", body), 401),
        "wrong secret": (post(base, "/stripe", body, stripe_headers(body, secret="whsec_x")), 401),
        "tampered": (post(base, "/stripe", event(3), stripe_headers(body)), 401),
        "stale": (post(base, "/stripe", body, stripe_headers(body, at=time.time() - 301)), 401),
        "garbled header": (post(base, "/stripe", body, {"Stripe-Signature": "v1=abc"}), 401),
        "not JSON": (post(base, "/stripe", b"{nope", stripe_headers(b"{nope")), 400),
        "NaN": (post(base, "/stripe", b"NaN", stripe_headers(b"NaN")), 400),
        "too large": (post(base, "/stripe", b"x" * (1024 * 1024 + 1), stripe_headers(b"")), 413),
    }
    for what, (answer, status) in cases.items():
        assert answer.status == status, (what, answer)
        assert set(answer.body) == {"error"} and answer.body["error"], (what, answer)
    assert cases["wrong method"][0].headers["allow"] == "POST"
    assert cases["stale"][0].body["error"] == "signature timestamp outside the tolerance"

    # A declared length over the limit is refused before a byte of the body is sent.
    huge = f"POST /webhooks/stripe HTTP/1.1\r\nHost: {host}\r\nContent-Length: {10**10}\r\n\r\n"
    assert raw_request(base, huge.encode()).status == 413
    # A chunked body is counted as it streams, and refused once past the limit.
    chunked = (
        f"POST /webhooks/stripe HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 17 + [b"0\r\n\r\n"]
    assert raw_request(base, chunked.encode(), tuple(chunks)).status == 413
    assert size(manager) == 0


# --------------------------------------------------------------------------- replays


def test_a_redelivery_is_answered_with_the_same_id_and_queued_once_across_servers(settings):
    first, second = new_manager(**settings), new_manager(**settings)
    try:
        with (
            serving(stripe_handler(first).app) as one,
            serving(stripe_handler(second).app) as two,
        ):
            body = event(7)
            answers = [
                post(one, "/stripe", body, stripe_headers(body)),
                post(two, "/stripe", body, stripe_headers(body, at=time.time() - 60)),
                post(one, "/github", b"{}", github_headers(b"{}", "d-7")),
                post(two, "/github", b"{}", github_headers(b"{}", "d-7")),
                post(one, "/generic", b"[]", hmac_headers(b"[]", "w-7")),
                post(two, "/generic", b"[]", hmac_headers(b"[]", "w-7")),
                post(two, "/generic", b"[]", hmac_headers(b"[]")),  # no delivery id: not deduped
                post(one, "/generic", b"[]", hmac_headers(b"[]")),
            ]
        assert [a.status for a in answers] == [202] * 8
        assert [a.body["duplicate"] for a in answers] == [False, True] * 3 + [False, False]
        for original, replay in zip(answers[:6:2], answers[1:6:2], strict=True):
            assert original.body["id"] == replay.body["id"]
        ids = {a.body["id"] for a in answers}
        assert {job.id for job in queued(first)} == ids
        assert len(ids) == 5
    finally:
        first.close()
        second.close()


def test_a_delivery_is_taken_again_once_its_replay_window_has_passed(redis_manager):
    manager = redis_manager
    handler = stripe_handler(manager, replay_window_s=0.2)
    with serving(handler.app) as url:
        body = event(8)
        first = post(url, "/stripe", body, stripe_headers(body))
        deadline = time.monotonic() + 10
        while (again := post(url, "/stripe", body, stripe_headers(body))).body["duplicate"]:
            assert time.monotonic() < deadline, "the replay window never ended"
            time.sleep(0.05)
    assert again.body["id"] == first.body["id"]  # the same job: the waiting copy is replaced
    assert [job.id for job in queued(manager)] == [first.body["id"]]


def test_a_redelivery_while_the_first_is_being_queued_is_asked_to_retry(redis_manager):
    manager = redis_manager
    body = event(9)
    job_id = webhooks.delivery_job_id("/stripe", "evt_9")
    turn = manager.locks().try_acquire(f"webhook-turn:{job_id}", 30)  # as the first request
    assert turn is not None
    with serving(stripe_handler(manager).app) as url:
        meanwhile = post(url, "/stripe", body, stripe_headers(body))
        turn.release()
        after = post(url, "/stripe", body, stripe_headers(body))

    assert meanwhile.status == 503 and set(meanwhile.body) == {"error"}
    assert meanwhile.headers.get("retry-after") == "1"
    assert (after.status, after.body) == (202, {"id": job_id, "duplicate": False})
    assert [job.id for job in queued(manager)] == [job_id]


# --------------------------------------------------------------------------- failures


def test_a_failed_push_answers_503_and_leaves_the_delivery_free_for_the_retry(tmp_path):
    url = f"sqlite:///{tmp_path / 'kashq.sqlite'}"
    manager = new_manager(connection="database", database_url=url)
    try:
        with serving(stripe_handler(manager).app) as base:
            assert size(manager) == 0  # the database exists and is migrated
            with sqlite3.connect(tmp_path / "kashq.sqlite") as db:
                db.execute("ALTER TABLE kashq_jobs RENAME TO kashq_jobs_away")
            body = event(9)
            down = post(base, "/stripe", body, stripe_headers(body))
            with sqlite3.connect(tmp_path / "kashq.sqlite") as db:
                db.execute("ALTER TABLE kashq_jobs_away RENAME TO kashq_jobs")
            back = post(base, "/stripe", body, stripe_headers(body))
        assert (down.status, down.body) == (503, {"error": "queue unavailable, try again later"})
        assert (back.status, back.body["duplicate"]) == (202, False)
        assert [job.id for job in queued(manager)] == [back.body["id"]]
    finally:
        manager.close()


def test_redis_down_answers_503_and_the_retry_is_queued_once_it_is_back(tmp_path):
    redis = RedisServer(tmp_path).start()
    manager = new_manager(connection="redis", redis_url=redis.url, prefix="hooks")
    try:
        with serving(stripe_handler(manager).app) as base:
            body = event(10)
            redis.kill()
            down = post(base, "/stripe", body, stripe_headers(body))
            redis.start()
            back = post(base, "/stripe", body, stripe_headers(body))
        assert down.status == 503 and set(down.body) == {"error"}
        assert (back.status, back.body["duplicate"]) == (202, False)
        assert [job.id for job in queued(manager)] == [back.body["id"]]
    finally:
        manager.close()
        redis.stop()


def test_a_job_class_that_cannot_take_the_payload_answers_500_and_queues_nothing(tmp_path):
    class NeedsMore(WebhookJob):
        order_id: int

        def handle(self) -> None:
            pass

    manager = new_manager(connection="memory")
    handler = WebhookHandler(manager=manager)
    handler.register_job_webhook("/x", NeedsMore, verifier=webhooks.NoVerification())
    with serving(handler.app) as base:
        answer = post(base, "/x", b"{}")
    assert (answer.status, answer.body) == (500, {"error": "internal error"})
    assert size(manager) == 0


# --------------------------------------------------------------------------- the flood


def test_a_flood_of_concurrent_requests_with_redeliveries_makes_one_job_per_delivery(settings):
    """1,000 requests from 32 client threads over two servers: 900 events, 100 replays."""
    events = [event(n) for n in range(900)]
    requests = events + random.Random(7).sample(events, 100)
    random.Random(8).shuffle(requests)
    managers = [new_manager(**settings), new_manager(**settings)]
    local = threading.local()

    def send(item: tuple[int, bytes]) -> tuple[bytes, Answer]:
        n, body = item
        base = bases[n % 2]
        if getattr(local, "conns", None) is None:
            local.conns = {}
        conn = local.conns.get(base)
        if conn is None:
            url = urlsplit(base)
            conn = local.conns[base] = http.client.HTTPConnection(
                url.hostname, url.port, timeout=60
            )
        while True:  # as Stripe does, a 503 is tried again (the same delivery was mid-queue)
            conn.request("POST", "/stripe", body=body, headers=stripe_headers(body))
            response = conn.getresponse()
            answer = Answer(response.status, json.loads(response.read()), {})
            if answer.status != 503:
                return body, answer
            assert response.getheader("retry-after") == "1"
            time.sleep(0.01)

    try:
        with (
            serving(stripe_handler(managers[0]).app) as a,
            serving(stripe_handler(managers[1]).app) as b,
        ):
            bases = [a, b]
            with ThreadPoolExecutor(32) as pool:
                results = list(pool.map(send, enumerate(requests)))
        assert [answer.status for _, answer in results] == [202] * 1000
        by_event: dict[bytes, list[dict[str, Any]]] = {}
        for body, answer in results:
            by_event.setdefault(body, []).append(answer.body)
        assert len(by_event) == 900
        for answers in by_event.values():
            assert len({a["id"] for a in answers}) == 1, answers
            assert sorted(a["duplicate"] for a in answers) == [False] + [True] * (len(answers) - 1)
        ids = {answers[0]["id"] for answers in by_event.values()}
        assert len(ids) == 900
        jobs = queued(managers[0])
        assert len(jobs) == 900 and {job.id for job in jobs} == ids
    finally:
        for m in managers:
            m.close()


# --------------------------------------------------------------------------- jobs and workers

RAN: list[tuple[str, Any]] = []


@kashq.handler("tests.webhooks.on_order")
def on_order(envelope: Envelope) -> None:
    payload = envelope.payload_as(WebhookPayload)
    RAN.append(("handler", payload.body["order"]))


class OrderPaid(WebhookJob):
    queue = "hooks"

    def handle(self) -> None:
        RAN.append(("job", (self.body["order"], self.header("X-Webhook-Id"), self.path)))


class OrderOnce(WebhookJob):
    unique_for = 60

    def unique_id(self) -> str:
        return str(self.body["order"])

    def handle(self) -> None:
        pass


def test_named_handlers_and_webhook_job_classes_receive_the_webhook_in_a_worker(redis_manager):
    manager = redis_manager
    handler = WebhookHandler(manager=manager)
    handler.register_job_webhook("/fn", "tests.webhooks.on_order", secret=HMAC_SECRET)
    handler.register_job_webhook(
        "/cls", OrderPaid.__kashq_name__, secret=HMAC_SECRET, headers=("X-Webhook-Id",)
    )
    handler.register_job_webhook("/once", OrderOnce, verifier=webhooks.NoVerification())
    RAN.clear()
    with serving(handler.app) as base:
        body = b'{"order": 41}'
        assert post(base, "/fn", body, hmac_headers(body, "a")).status == 202
        body = b'{"order": 42}'
        assert post(base, "/cls", body, hmac_headers(body, "b")).status == 202
        unique = [post(base, "/once", b'{"order": 43}').body for _ in range(2)]
    assert unique[1] == {"id": None, "duplicate": True} and unique[0]["id"] is not None
    assert size(manager, "hooks") == 1  # the class's queue option applies
    manager.worker(queues=("default", "hooks"), stop_when_empty=True, sleep_s=0.05).run(1)
    assert sorted(RAN, key=str) == [("handler", 41), ("job", (42, "b", "/cls"))]


# --------------------------------------------------------------------------- frameworks


def test_mounted_under_webhooks_in_starlette_and_beside_another_asgi_app(redis_manager):
    manager = redis_manager
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    handler = stripe_handler(manager)
    home = Route("/", lambda request: PlainTextResponse("home"))
    app = Starlette(routes=[home, Mount("/webhooks", app=handler.app)])
    body = event(20)
    with serving(app) as base:
        accepted = post(base, "/webhooks/stripe", body, stripe_headers(body))
        missing = post(base, "/webhooks/nope", body, stripe_headers(body))

    async def other(scope: Any, receive: Any, send: Any) -> None:
        await PlainTextResponse("other")(scope, receive, send)

    with serving(webhooks.mount_asgi("/hooks/", handler.app, other), root_path="") as base:
        body2 = event(21)
        also = post(base, "/hooks/stripe", body2, stripe_headers(body2))
        conn = http.client.HTTPConnection(*urlsplit(base).netloc.split(":"))
        conn.request("GET", "/elsewhere")
        assert conn.getresponse().read() == b"other"
    assert (accepted.status, missing.status, also.status) == (202, 404, 202)
    assert {job.id for job in queued(manager)} == {accepted.body["id"], also.body["id"]}


def test_mounted_under_webhooks_in_flask_with_werkzeug_dispatcher_middleware(redis_manager):
    manager = redis_manager
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    flask_app = Flask(__name__)
    flask_app.add_url_rule("/", "home", lambda: "home")
    handler = stripe_handler(manager, max_body_bytes=100_000)
    flask_app.wsgi_app = DispatcherMiddleware(flask_app.wsgi_app, {"/webhooks": handler.wsgi_app})
    body = event(30)
    with wsgi_serving(flask_app) as base:
        host = urlsplit(base).netloc
        answers = [
            post(base, "/webhooks/stripe", body, stripe_headers(body)),
            post(base, "/webhooks/stripe", body, stripe_headers(body)),
            post(base, "/webhooks/stripe", body, stripe_headers(body, secret="bad")),
            post(base, "/webhooks/stripe", b"{", stripe_headers(b"{")),
            post(base, "/webhooks/stripe", b"", method="PUT"),
            post(base, "/webhooks/paypal", body),
            post(base, "/webhooks/stripe", b"x" * 100_001),
        ]
        head = (
            f"POST /webhooks/stripe HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunks = [b"%x\r\n%s\r\n" % (60_000, b"x" * 60_000)] * 2 + [b"0\r\n\r\n"]
        answers.append(raw_request(base, head.encode(), tuple(chunks)))
        assert post_text(base, "/") == "home"
    assert [a.status for a in answers] == [202, 202, 401, 400, 405, 404, 413, 413]
    assert answers[1].body == {"id": answers[0].body["id"], "duplicate": True}
    assert answers[4].headers["allow"] == "POST"
    assert [job.id for job in queued(manager)] == [answers[0].body["id"]]


def test_mount_wsgi_serves_webhooks_under_a_prefix_and_the_rest_with_another_app(redis_manager):
    manager = redis_manager

    def other(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"django"]

    handler = stripe_handler(manager)
    body = event(40)
    with wsgi_serving(webhooks.mount_wsgi("/webhooks", handler.wsgi_app, other)) as base:
        accepted = post(base, "/webhooks/stripe/", body, stripe_headers(body))
        assert post_text(base, "/admin/") == "django"
    with wsgi_serving(webhooks.mount_wsgi("/webhooks", handler.wsgi_app)) as base:
        assert post(base, "/admin/", b"{}").status == 404
    assert [job.id for job in queued(manager)] == [accepted.body["id"]]


def post_text(base: str, path: str) -> str:
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().read().decode()
    finally:
        conn.close()
