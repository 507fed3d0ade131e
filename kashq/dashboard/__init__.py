"""The dashboard: queues, jobs, failures, batches, schedules and metrics in a browser.

Mount it in an app, or serve it alone with ``kashq dashboard``::

    from kashq.dashboard import app
    fastapi_app.mount("/queues", app(token="a-long-shared-secret"))   # ASGI

    from kashq.dashboard import wsgi_app
    flask_app.wsgi_app = DispatcherMiddleware(flask_app.wsgi_app, {"/queues": wsgi_app()})

It reads the stores kashq already keeps (so it works on every connection and
forgets nothing on a restart) and acts through the same functions as the
commands. Jinja2 renders it (the ``dashboard`` extra); charts are SVG drawn on
the server; its only script is its own. See :mod:`kashq.dashboard.security`
for who may see and act.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kashq.dashboard.security import DashboardOptions

if TYPE_CHECKING:
    from kashq.dashboard.asgi import DashboardASGI
    from kashq.dashboard.core import Dashboard
    from kashq.dashboard.wsgi import DashboardWSGI
    from kashq.manager import QueueManager

__all__ = ["DashboardOptions", "app", "dashboard", "wsgi_app"]


def dashboard(
    manager: QueueManager | None = None, *, connection: str | None = None, **options: Any
) -> Dashboard:
    """The dashboard of ``connection`` (default: the manager's) of ``manager`` (default: the
    current one), guarded by ``options`` (:class:`DashboardOptions` fields)."""
    from kashq.dashboard.core import Dashboard
    from kashq.manager import manager as current

    return Dashboard(
        manager or current(), connection=connection, options=DashboardOptions(**options)
    )


def app(
    manager: QueueManager | None = None, *, connection: str | None = None, **options: Any
) -> DashboardASGI:
    """The dashboard as an ASGI app (see :func:`dashboard` for the arguments)."""
    from kashq.dashboard.asgi import DashboardASGI

    return DashboardASGI(dashboard(manager, connection=connection, **options))


def wsgi_app(
    manager: QueueManager | None = None, *, connection: str | None = None, **options: Any
) -> DashboardWSGI:
    """The dashboard as a WSGI app (see :func:`dashboard` for the arguments)."""
    from kashq.dashboard.wsgi import DashboardWSGI

    return DashboardWSGI(dashboard(manager, connection=connection, **options))
