"""kashq in a FastAPI app (or any Starlette app): one call configures, mounts and closes.

    from fastapi import FastAPI
    from kashq.contrib.fastapi import KashQ

    app = FastAPI()
    KashQ(app, connection="redis", metrics="/metrics", dashboard="/kashq")

- **Settings**: keyword arguments are ``kashq.configure()``'s (the ``KASHQ_*``
  names in lower case); without any, kashq reads its settings as usual
  (environment, ``kashq.toml``).
- **Mounts**, each only when given a path: ``metrics`` (Prometheus text, with
  the queue sizes of the default connection), ``dashboard`` (with
  ``dashboard_options``, :class:`~kashq.dashboard.DashboardOptions` fields:
  give it a guard before exposing it), ``webhooks`` (``webhook_handler``,
  default :data:`kashq.webhooks.default_handler`).
- **Shutdown**: after the app's own lifespan ends, the current manager is
  closed (events and alerts flushed, connections closed), in a thread (on the
  event loop when the interpreter is exiting and its threads take no work).

Handlers dispatch with ``await job.adispatch()``, which writes the job from a
thread and leaves the event loop free.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.applications import Starlette

from kashq.contrib._mounts import metrics_endpoint, mount_path
from kashq.manager import QueueManager, configure
from kashq.manager import manager as current_manager
from kashq.webhooks.handler import WebhookHandler

__all__ = ["KashQ"]


class KashQ:
    """kashq set up for ``app``: settings, mounts and the close at shutdown."""

    def __init__(
        self,
        app: Starlette,
        *,
        metrics: str | None = None,
        dashboard: str | None = None,
        dashboard_options: Mapping[str, Any] | None = None,
        webhooks: str | None = None,
        webhook_handler: WebhookHandler | None = None,
        **settings: Any,
    ) -> None:
        if settings:
            configure(**settings)
        self.app = app
        if metrics is not None:
            self._mount_metrics(metrics)
        if dashboard is not None:
            from kashq.dashboard import app as dashboard_app

            app.mount(mount_path(dashboard), dashboard_app(**dict(dashboard_options or {})))
        if webhooks is not None:
            from kashq.webhooks import default_handler

            app.mount(mount_path(webhooks), (webhook_handler or default_handler).app)
        self._wrap_lifespan()

    @property
    def manager(self) -> QueueManager:
        """The current queue manager (the one these settings made)."""
        return current_manager()

    def _mount_metrics(self, path: str) -> None:
        endpoint = metrics_endpoint(self.manager)
        self.app.add_route(mount_path(path), endpoint)  # an ASGI app, not a view

    def _wrap_lifespan(self) -> None:
        router = self.app.router
        inner = router.lifespan_context

        @contextlib.asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[Any]:
            try:
                async with inner(app) as state:
                    yield state
            finally:
                await _close(current_manager())

        router.lifespan_context = lifespan


async def _close(manager: QueueManager) -> None:
    """Close ``manager`` in a thread; on the loop itself when the interpreter is exiting
    (a server run on a thread of a script that ended: the executor takes no more work)."""
    loop = asyncio.get_running_loop()
    try:
        closing = loop.run_in_executor(None, manager.close)
    except RuntimeError:  # "cannot schedule new futures after (interpreter) shutdown"
        manager.close()
        return
    await closing
