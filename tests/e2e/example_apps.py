"""What the end-to-end tests of the example web apps share (FastAPI, Flask): the settings
their server and worker share, and plain HTTP calls."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

from tests.e2e.test_cli import _clean_env
from tests.support.redis import delete_prefix, shared_client
from tests.support.services import REDIS_URL


def shared_settings(kind: str) -> Iterator[dict[str, str]]:
    """The environment of the server and the worker: the SQLite default (``kind``
    "sqlite"), or Redis under a key prefix of the test's own, deleted afterwards."""
    env = _clean_env()
    prefix = None
    if kind == "redis":
        shared_client()  # skip locally / fail in CI when Redis is down
        prefix = f"kashq-e2e-{uuid.uuid4().hex[:10]}"
        env.update(KASHQ_CONNECTION="redis", KASHQ_REDIS_URL=REDIS_URL, KASHQ_PREFIX=prefix)
    try:
        yield env
    finally:
        if prefix is not None:
            delete_prefix(shared_client(), prefix)


def get(url: str) -> tuple[int, bytes]:
    """A GET: its status and body (an error status too)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def post(url: str) -> dict[str, Any]:
    """An empty POST answered with JSON."""
    request = urllib.request.Request(url, method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


def serving(base: str) -> bool:
    """Whether the example app at ``base`` answers (404 for an unknown report)."""
    try:
        return get(f"{base}/reports/none")[0] == 404
    except OSError:
        return False
