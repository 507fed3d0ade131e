"""Calling the webhook apps in-process, as a server would, and signing requests.

:func:`call_wsgi` builds a WSGI environ around a body stream; :func:`call_asgi`
feeds an ASGI app its body in chunks (optionally disconnecting instead of
sending one). Both return the :class:`Answer`, or raise whatever the app
raised: a server would turn that into a 500, which these tests forbid.
:func:`signed_hooks` is a handler with one route per signature scheme, on an
in-memory queue whose clock stands still at :data:`NOW`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from kashq import MemoryFailedJobStore, QueueManager, load_settings
from kashq.envelope import Envelope, decode
from kashq.testing import FakeClock
from kashq.webhooks import NoVerification, WebhookHandler

NOW = 1_700_000_000.0
STRIPE_SECRET = "whsec_security"
GITHUB_SECRET = "gh-security"
HMAC_SECRET = b"hmac-security"
ROUTES = ("/stripe", "/github", "/hmac", "/open")


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


def signed_hooks(max_body_bytes: int = 1024 * 1024) -> tuple[WebhookHandler, QueueManager]:
    """A handler serving :data:`ROUTES` into a fresh memory queue (clock at :data:`NOW`)."""
    manager = QueueManager(
        load_settings(connection="memory", events=False),
        clock=FakeClock(NOW),
        failed_store=MemoryFailedJobStore(),
    )
    hooks = WebhookHandler(manager=manager, max_body_bytes=max_body_bytes)
    hooks.register_job_webhook("/stripe", "sec.stripe", secret=STRIPE_SECRET, verifier="stripe")
    hooks.register_job_webhook("/github", "sec.github", secret=GITHUB_SECRET, verifier="github")
    hooks.register_job_webhook("/hmac", "sec.hmac", secret=HMAC_SECRET)
    hooks.register_job_webhook(
        "/open", "sec.open", verifier=NoVerification(delivery_header="X-Webhook-Id")
    )
    return hooks, manager


def queued(manager: QueueManager) -> int:
    return manager.connection().sizes(["default"])["default"].total


def take_all(manager: QueueManager) -> list[Envelope]:
    """Every queued job, each checked to be storable as UTF-8 JSON (then acknowledged)."""
    driver, jobs = manager.connection(), []
    while (reservation := driver.reserve(["default"], lease_s=60)) is not None:
        reservation.raw.encode("utf-8")  # what Redis and the databases store
        jobs.append(decode(reservation.raw))
        driver.ack(reservation)
    return jobs


# --------------------------------------------------------------------------- signing


def hex_hmac(key: str | bytes, message: bytes) -> str:
    key = key.encode() if isinstance(key, str) else key
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def signature_headers(path: str, body: bytes, *, at: float = NOW) -> dict[str, str]:
    """The headers a genuine sender would sign ``body`` with for route ``path``."""
    if path == "/stripe":
        t = int(at)
        return {"stripe-signature": f"t={t},v1={hex_hmac(STRIPE_SECRET, f'{t}.'.encode() + body)}"}
    if path == "/github":
        return {"x-hub-signature-256": f"sha256={hex_hmac(GITHUB_SECRET, body)}"}
    if path == "/hmac":
        return {"x-signature": hex_hmac(HMAC_SECRET, body)}
    return {}


# --------------------------------------------------------------------------- calling


def call_wsgi(
    app: Any,
    path: str,
    headers: dict[str, str],
    body: bytes | IO[bytes] = b"",
    *,
    method: str = "POST",
    content_length: str | None = "exact",
    terminated: bool = False,
) -> Answer:
    """One request; ``content_length="exact"`` declares ``len(body)``, None declares none."""
    stream = io.BytesIO(body) if isinstance(body, bytes) else body
    if content_length == "exact":
        content_length = str(len(body)) if isinstance(body, bytes) else None
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "wsgi.input": stream,
        "wsgi.input_terminated": terminated,
    }
    if content_length is not None:
        environ["CONTENT_LENGTH"] = content_length
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
    started: list[str] = []
    chunks = app(environ, lambda status, _headers: started.append(status))
    return Answer(int(started[0].split()[0]), json.loads(b"".join(chunks)))


def call_asgi(
    app: Any,
    path: str,
    headers: dict[str, str],
    chunks: Sequence[bytes] = (b"",),
    *,
    method: str = "POST",
    content_length: str | None = "exact",
    disconnect_at: int | None = None,
    received: list[dict[str, Any]] | None = None,
) -> Answer | None:
    """One request whose body arrives as ``chunks``; None if the app answered nothing.

    With ``disconnect_at`` the client goes away instead of sending that chunk.
    Reading past the last chunk (or the disconnect) fails the test; the
    messages the app did read are appended to ``received``.
    """
    if content_length == "exact":
        content_length = str(sum(len(chunk) for chunk in chunks))
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    if content_length is not None:
        raw.append((b"content-length", content_length.encode("latin-1")))
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": raw}
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    if disconnect_at is not None:
        messages[disconnect_at:] = [{"type": "http.disconnect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        assert messages, "the app read past the end of the request"
        if received is not None:
            received.append(messages[0])
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    if not sent:
        return None
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(sent[0]["status"], json.loads(body))
