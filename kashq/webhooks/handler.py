"""The webhook handler: routes, and turning one accepted request into exactly one job.

:class:`WebhookHandler` holds the routes and does everything but HTTP: the
ASGI and WSGI adapters (``handler.app``, ``handler.wsgi_app``) read the
request, ask :meth:`WebhookHandler.route` which route it is for, and hand the
body to :meth:`WebhookHandler.accept`, which answers with a :class:`Response`.

A request whose sender names its delivery (Stripe's event id, GitHub's
``X-GitHub-Delivery``...) gets a job id derived from route and delivery
(UUID 5), and a lock ``webhook:<job id>`` on the connection's lock backend
marks it as taken for ``replay_window_s``. A redelivery finds the lock held
and is answered with the same id, ``"duplicate": true``, pushing nothing: in
every process sharing the connection. The lock is first taken for a short
while and made to last the whole window only once the job is pushed, so a
push that failed never blocks the sender's retry for long. Requests for one
delivery take turns (a second lock, ``webhook-turn:<job id>``, held while the
first is checked and pushed): one arriving meanwhile is answered 503 with
``Retry-After``, since whether the first will be queued is not known yet.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kashq.exceptions import ConfigError, DriverError, KashqError
from kashq.job import Dispatchable, Job, NamedJob
from kashq.locks import Lock
from kashq.manager import QueueManager
from kashq.manager import manager as current_manager
from kashq.names import check_queue_name
from kashq.registry import REGISTRY
from kashq.webhooks.errors import InvalidSignature, WebhookError
from kashq.webhooks.payload import (
    ALLOWED_HEADERS,
    FORBIDDEN_HEADERS,
    WebhookJob,
    build_payload,
    parse_json,
)
from kashq.webhooks.verify import Verifier, verifier_for

if TYPE_CHECKING:
    from kashq.webhooks.asgi import ASGIApp
    from kashq.webhooks.wsgi import WSGIApp

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
REPLAY_WINDOW_S = 3 * 24 * 3600.0  # Stripe retries a delivery for up to three days
PENDING_S = 60.0  # how long a delivery stays taken while its job is being pushed
_NAMESPACE = uuid.UUID("6f1b0f0e-5b0c-4c52-9a53-2d3f3f9c8a71")  # of webhook job ids


@dataclass(frozen=True, slots=True)
class Response:
    """What to answer: a status, a JSON object, and extra headers."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


def error(status: int, message: str, *headers: tuple[str, str]) -> Response:
    """A JSON error answer ``{"error": message}``."""
    return Response(status, {"error": message}, headers)


NOT_FOUND = error(404, "no webhook at this path")
NOT_ALLOWED = error(405, "method not allowed: use POST", ("allow", "POST"))
BEING_QUEUED = error(503, "this delivery is being queued; retry shortly", ("retry-after", "1"))


@dataclass(frozen=True, slots=True)
class Route:
    """One registered webhook: its path, the job it makes, and how requests are checked."""

    path: str
    job: str
    verifier: Verifier
    headers: frozenset[str] = field(default_factory=frozenset)
    queue: str | None = None


def normalise_path(path: str) -> str:
    """``path`` without a trailing slash (``/`` stays ``/``)."""
    return path.rstrip("/") or "/"


def mount_prefix(prefix: str) -> str:
    """``prefix`` as a mount point: ``""`` (the root) or ``/x`` without a trailing slash."""
    if not isinstance(prefix, str) or (prefix and not prefix.startswith("/")):
        raise WebhookError(f"a mount prefix starts with '/': {prefix!r}")
    if any(ch.isspace() or ch in "?#" for ch in prefix):
        raise WebhookError(f"a mount prefix is a plain path: {prefix!r}")
    return prefix.rstrip("/")


def below(prefix: str, path: str) -> str | None:
    """``path`` relative to mount point ``prefix`` (from :func:`mount_prefix`), or None."""
    if not prefix:
        return path
    if path == prefix or path.startswith(prefix + "/"):
        return path[len(prefix) :]
    return None


def delivery_job_id(path: str, delivery_id: str) -> str:
    """The id of the job of delivery ``delivery_id`` to route ``path``: the same every time."""
    return str(uuid.uuid5(_NAMESPACE, f"{path}\n{delivery_id}"))


def job_name(job: str | type[Job]) -> str:
    """The registry name a route dispatches: a name, or a WebhookJob subclass's name."""
    if isinstance(job, type):
        if not issubclass(job, WebhookJob) or job is WebhookJob:
            raise WebhookError(
                f"a webhook job class must subclass kashq.webhooks.WebhookJob: {job.__qualname__}"
            )
        return job.__kashq_name__
    if not isinstance(job, str) or not job:
        raise WebhookError(f"a webhook needs a job name or WebhookJob subclass, got {job!r}")
    cls = _job_class(job)
    if cls is not None:
        job_name(cls)  # a Job class is registered under the name: it must be a WebhookJob
    return job


def _job_class(name: str) -> type[Job] | None:
    """The Job class registered under ``name``; None for a handler or an unknown name."""
    entry = REGISTRY.resolve(name) if name in REGISTRY else None
    if entry is None or entry.is_handler:
        return None
    cls: type[Job] = entry.target
    return cls


class WebhookHandler:
    """Webhook routes, served by :attr:`app` (ASGI) or :attr:`wsgi_app` (WSGI).

    Jobs go to ``queue`` (default: the job class's queue, else ``KASHQ_QUEUE``)
    on ``connection`` of ``manager`` (default: the current manager, looked up
    at each request). Bodies over ``max_body_bytes`` are refused unread; a
    delivery seen within ``replay_window_s`` is not queued again.
    """

    def __init__(
        self,
        queue: str | None = None,
        *,
        connection: str | None = None,
        manager: QueueManager | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        replay_window_s: float = REPLAY_WINDOW_S,
    ) -> None:
        if not isinstance(max_body_bytes, int) or isinstance(max_body_bytes, bool):
            raise WebhookError(f"max_body_bytes must be an integer, got {max_body_bytes!r}")
        if max_body_bytes < 1:
            raise WebhookError(f"max_body_bytes must be >= 1, got {max_body_bytes}")
        window_ok = isinstance(replay_window_s, (int, float)) and math.isfinite(replay_window_s)
        if not window_ok or isinstance(replay_window_s, bool) or replay_window_s <= 0:
            raise WebhookError(f"replay_window_s must be seconds > 0, got {replay_window_s!r}")
        self.queue = None if queue is None else _queue(queue)
        self.connection = connection
        self.max_body_bytes = max_body_bytes
        self.replay_window_s = float(replay_window_s)
        self._manager = manager
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self._asgi: ASGIApp | None = None
        self._wsgi: WSGIApp | None = None

    # -- routes ---------------------------------------------------------
    def register_job_webhook(
        self,
        path: str,
        job: str | type[Job],
        *,
        secret: str | bytes | None = None,
        verifier: Verifier | str | None = None,
        headers: Iterable[str] = (),
        queue: str | None = None,
    ) -> Route:
        """Make each signed POST to ``path`` one ``job`` (a handler name or WebhookJob class).

        Give ``secret`` with ``verifier="stripe"``, ``"github"`` or ``"hmac"``
        (the default), or a verifier object (``NoVerification()`` to accept
        unsigned requests). ``headers`` names request headers to copy into the
        job beyond the standard ones; ``queue`` overrides the handler's queue.
        """
        route = Route(
            path=_route_path(path),
            job=job_name(job),
            verifier=_verifier(path, secret, verifier),
            headers=_headers(headers),
            queue=None if queue is None else _queue(queue),
        )
        with self._lock:
            current = self._routes.get(route.path)
            if current is not None and current.job != route.job:
                raise WebhookError(
                    f"webhook path {route.path!r} already makes {current.job!r} jobs"
                )
            self._routes[route.path] = route
        return route

    @property
    def routes(self) -> list[Route]:
        """The registered routes, by path."""
        return [self._routes[path] for path in sorted(self._routes)]

    def route(self, method: str, path: str) -> Route | Response:
        """The route for a request, or the 404/405 answer."""
        route = self._routes.get(normalise_path(path))
        if route is None:
            return NOT_FOUND
        return route if method == "POST" else NOT_ALLOWED

    def check_length(self, content_length: str | None) -> Response | None:
        """The 400/413 answer a declared Content-Length deserves before reading, else None."""
        if content_length is None:
            return None
        text = content_length.strip()
        if not (text.isascii() and text.isdigit()):  # int() refuses '²', isdigit() not
            return error(400, "bad Content-Length")
        digits = text.lstrip("0") or "0"
        if len(digits) > len(str(self.max_body_bytes)) or int(digits) > self.max_body_bytes:
            return self.too_large()  # the length first: int() refuses over 4300 digits
        return None

    def too_large(self) -> Response:
        """The 413 answer."""
        return error(413, f"body larger than {self.max_body_bytes} bytes")

    # -- apps -----------------------------------------------------------
    @property
    def app(self) -> ASGIApp:
        """This handler as an ASGI application (mount it under ``/webhooks``)."""
        if self._asgi is None:
            from kashq.webhooks.asgi import ASGIApp

            self._asgi = ASGIApp(self)
        return self._asgi

    @property
    def wsgi_app(self) -> WSGIApp:
        """This handler as a WSGI application (mount it under ``/webhooks``)."""
        if self._wsgi is None:
            from kashq.webhooks.wsgi import WSGIApp

            self._wsgi = WSGIApp(self)
        return self._wsgi

    def manager(self) -> QueueManager:
        """The queue manager jobs go through: the given one, else the current one."""
        return self._manager if self._manager is not None else current_manager()

    # -- accepting ------------------------------------------------------
    def accept(self, route: Route, body: bytes, headers: Mapping[str, str]) -> Response:
        """Verify, parse and queue one request's body (blocking: drivers are synchronous)."""
        try:
            return self._accept(route, body, headers)
        except InvalidSignature as exc:
            log.info("webhook %s: refused, %s", route.path, exc)
            return error(401, str(exc))
        except (DriverError, ConfigError, OSError) as exc:
            log.error("webhook %s: queue unavailable: %s", route.path, exc)
            return error(503, "queue unavailable, try again later")
        except Exception:
            log.exception("webhook %s: could not make a %r job", route.path, route.job)
            return error(500, "internal error")

    def _accept(self, route: Route, body: bytes, headers: Mapping[str, str]) -> Response:
        manager = self.manager()
        now = manager.clock.time()
        route.verifier.verify(body, headers, now)
        try:
            data = parse_json(body)
        except ValueError:
            return error(400, "body is not valid JSON")
        delivery = route.verifier.delivery_id(data, headers)
        payload = build_payload(
            body=data,
            headers=headers,
            allowed=ALLOWED_HEADERS | set(route.verifier.header_names) | route.headers,
            received_at=now,
            delivery_id=delivery,
            path=route.path,
        )
        job = self._job(route, payload)
        if delivery is None:
            return _accepted(manager.dispatch(job))
        job_id = delivery_job_id(route.path, delivery)
        locks = manager.locks(job.target_connection())
        turn = locks.try_acquire(f"webhook-turn:{job_id}", PENDING_S)
        if turn is None:  # the same delivery is being queued right now: its outcome is unknown
            log.info("webhook %s: delivery %r is being queued; retry", route.path, delivery)
            return BEING_QUEUED
        try:
            seen = locks.try_acquire(f"webhook:{job_id}", PENDING_S)
            if seen is None:
                log.info("webhook %s: delivery %r seen before, not queued", route.path, delivery)
                return _accepted(job_id, duplicate=True)
            pushed = self._push(manager.dispatch, job.with_id(job_id), seen)
            with contextlib.suppress(KashqError):  # else it lasts PENDING_S: a shorter window
                seen.extend(self.replay_window_s)
            return _accepted(pushed)
        finally:
            with contextlib.suppress(KashqError):  # else it frees itself after PENDING_S
                turn.release()

    @staticmethod
    def _push(
        dispatch: Callable[[Dispatchable], str | None], job: Dispatchable, seen: Lock
    ) -> str | None:
        try:
            return dispatch(job)
        except BaseException:
            with contextlib.suppress(KashqError):  # else it frees itself after PENDING_S
                seen.release()
            raise

    def _job(self, route: Route, payload: dict[str, Any]) -> Dispatchable:
        cls = _job_class(route.job)
        job: Dispatchable
        if cls is None:
            job = NamedJob(route.job, payload)
        elif issubclass(cls, WebhookJob):
            job = cls.model_validate(payload)
        else:
            raise WebhookError(f"{route.job!r} is a Job class but not a WebhookJob")
        queue = route.queue or self.queue
        if queue is not None:
            job.on_queue(queue)
        if self.connection is not None:
            job.on_connection(self.connection)
        return job


def _accepted(job_id: str | None, *, duplicate: bool = False) -> Response:
    # No id: a unique job (``unique_for``) whose equal is queued; nothing was pushed.
    return Response(202, {"id": job_id, "duplicate": duplicate or job_id is None})


def _route_path(path: object) -> str:
    if not isinstance(path, str) or not path.startswith("/") or "?" in path or "#" in path:
        raise WebhookError(f"a webhook path starts with '/' and has no query: {path!r}")
    if any(ch.isspace() for ch in path):
        raise WebhookError(f"a webhook path has no whitespace: {path!r}")
    return normalise_path(path)


def _queue(queue: str) -> str:
    try:
        return check_queue_name(queue)
    except ValueError as exc:
        raise WebhookError(str(exc)) from None


def _verifier(path: str, secret: str | bytes | None, verifier: Verifier | str | None) -> Verifier:
    if verifier is None or isinstance(verifier, str):
        if secret is None:
            raise WebhookError(
                f"webhook {path!r} needs a secret (or verifier=NoVerification() "
                "to accept unsigned requests)"
            )
        return verifier_for(verifier or "hmac", secret)
    if secret is not None:
        raise WebhookError(
            f"webhook {path!r}: give a secret with verifier='stripe'/'github'/'hmac', "
            "or a verifier object holding its own secret, not both"
        )
    if not all(hasattr(verifier, name) for name in ("verify", "delivery_id", "header_names")):
        raise WebhookError(f"webhook {path!r}: {verifier!r} is not a verifier")
    return verifier


def _headers(names: Iterable[str]) -> frozenset[str]:
    if isinstance(names, str):
        names = (names,)
    lowered = set()
    for name in names:
        if not isinstance(name, str) or not name or any(ch.isspace() for ch in name):
            raise WebhookError(f"a header name has no spaces: {name!r}")
        if name.lower() in FORBIDDEN_HEADERS:
            raise WebhookError(f"header {name!r} carries credentials and is never copied")
        lowered.add(name.lower())
    return frozenset(lowered)
