"""``kashq.contrib.fastapi.KashQ`` and async dispatch, in process (the example app runs end
to end in ``tests/e2e/test_fastapi_app.py``)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI

import kashq
from kashq import Job, JobHandle
from kashq.contrib.fastapi import KashQ
from kashq.manager import swap_manager
from kashq.webhooks import WebhookHandler, WebhookJob


class Noted(Job):
    n: int = 0

    def handle(self) -> None:
        pass


class Pushed(WebhookJob):
    def handle(self) -> None:
        pass


async def _request(
    app: Any, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One HTTP request through ``app`` (ASGI, in process): its status and body."""
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }  # fmt: skip
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.fixture(autouse=True)
def own_manager() -> Iterator[None]:
    """Each test's configure() builds a manager of its own; the previous one comes back."""
    old = swap_manager(None)
    try:
        yield
    finally:
        new = swap_manager(old)
        if new is not None:
            new.close()


async def _lifespan(app: Any) -> list[str]:
    """Start ``app`` and shut it down through the ASGI lifespan protocol; what it sent."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    sent: list[str] = []
    for message in ("lifespan.startup", "lifespan.shutdown"):
        inbox.put_nowait({"type": message})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send)
    return sent


def test_the_app_s_own_lifespan_runs_then_kashq_closes_its_manager() -> None:
    steps: list[str] = []

    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[None]:
        steps.append("app started")
        yield
        steps.append("app stopped")

    app = FastAPI(lifespan=own)
    KashQ(app, connection="memory")
    manager = kashq.manager()
    assert manager.settings.connection == "memory"
    closing = manager.close
    manager.close = lambda: (steps.append("kashq closed"), closing())[1]  # type: ignore[method-assign]

    sent = asyncio.run(_lifespan(app))

    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert steps == ["app started", "app stopped", "kashq closed"]


def test_at_interpreter_exit_kashq_closes_its_manager_on_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server on a thread of a script that ended shuts down after the executors refuse
    work: the manager is closed all the same, and the shutdown completes."""
    app = FastAPI()
    KashQ(app, connection="memory")
    manager, closed = kashq.manager(), []
    closing = manager.close
    manager.close = lambda: (closed.append(True), closing())[1]  # type: ignore[method-assign]

    def refuse(*args: Any) -> None:
        raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    monkeypatch.setattr(asyncio.BaseEventLoop, "run_in_executor", refuse)
    sent = asyncio.run(_lifespan(app))

    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert closed == [True]


def test_webhooks_mount_where_given_and_a_signed_post_queues_one_job() -> None:
    hooks = WebhookHandler()
    hooks.register_job_webhook("/github", Pushed, secret="s3cret", verifier="github")
    app = FastAPI()
    KashQ(app, connection="memory", webhooks="/hooks/", webhook_handler=hooks)
    body = json.dumps({"ref": "main"}).encode()
    signed = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    headers = {"x-hub-signature-256": signed, "x-github-delivery": "d-1"}

    status, reply = asyncio.run(_request(app, "POST", "/hooks/github", body, headers))
    forged, _ = asyncio.run(_request(app, "POST", "/hooks/github", body + b" ", headers))

    assert (status, forged) == (202, 401), reply
    assert kashq.manager().connection().sizes(["default"])["default"].ready == 1


def test_without_settings_kashq_keeps_the_current_manager() -> None:
    kashq.configure(connection="memory", queue="mail")
    before = kashq.manager()
    assert KashQ(FastAPI()).manager is before
    assert before.settings.queue == "mail"


@pytest.mark.parametrize("path", ["metrics", "/", ""])
def test_a_mount_path_must_start_with_a_slash_and_not_be_the_root(path: str) -> None:
    with pytest.raises(ValueError, match="starts with /"):
        KashQ(FastAPI(), connection="memory", metrics=path)


def test_adispatch_writes_the_job_off_the_event_loop() -> None:
    """The dispatch waits for a coroutine on the same loop: it would never end if it
    ran on the loop itself."""
    kashq.configure(connection="memory")
    loop_ran = threading.Event()

    class Waits(Noted):
        def dispatch(self, *, using: object = None) -> JobHandle | None:
            assert loop_ran.wait(5), "the event loop was blocked by the dispatch"
            return super().dispatch(using=using)

    async def main() -> tuple[JobHandle | None, list[str | None]]:
        async def on_the_loop() -> None:
            await asyncio.sleep(0.01)
            loop_ran.set()

        handle, _ = await asyncio.gather(Waits(n=1).adispatch(), on_the_loop())
        ids = await kashq.adispatch_many([Noted(n=2), Noted(n=3)])
        return handle, ids

    handle, ids = asyncio.run(main())
    assert handle is not None
    assert all(ids)
    sizes = kashq.manager().connection().sizes(["default"])["default"]
    assert sizes.ready == 3
