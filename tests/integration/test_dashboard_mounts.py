"""The dashboard mounted under a path: as ASGI in Starlette (on uvicorn) and as WSGI in Flask
(on werkzeug), over real HTTP: its links, forms, cookies and redirects stay under the mount."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.cookiejar import CookieJar

import pytest

from kashq import QueueManager
from kashq.config import load_settings
from kashq.dashboard import app, wsgi_app
from tests.support.http import uvicorn_serving, wsgi_serving


@pytest.fixture
def manager() -> Iterator[QueueManager]:
    made = QueueManager(load_settings(connection="memory"))
    yield made
    made.close()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def browse(base: str, manager: QueueManager) -> None:
    """Open the mounted dashboard, then pause a queue through its form, as a browser would."""
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    with opener.open(base + "/queues/failed") as page:
        html = page.read().decode()
    assert 'href="/queues/static/dashboard.css"' in html and 'href="/queues/jobs"' in html
    assert 'action="/queues/failed"' in html
    (csrf,) = [cookie.value for cookie in jar if cookie.name == "kashq_csrf"]
    form = urllib.parse.urlencode({"csrf": csrf, "queue": "mail", "next": "/queues"}).encode()
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(base + "/queues/actions/pause", data=form)
    assert redirect.value.code == 303
    assert redirect.value.headers["location"].startswith("/queues/queues?note=")
    assert "mail" in manager.paused()
    with opener.open(base + "/queues/static/dashboard.js") as script:
        assert script.headers["content-type"] == "text/javascript"


def test_the_entry_points_stay_functions_whatever_submodules_are_loaded() -> None:
    import importlib
    import pkgutil

    import kashq.dashboard

    for module in pkgutil.iter_modules(kashq.dashboard.__path__):
        importlib.import_module(f"kashq.dashboard.{module.name}")
    assert all(callable(getattr(kashq.dashboard, name)) for name in ("app", "wsgi_app"))
    assert callable(kashq.dashboard.dashboard)


def test_mounted_in_starlette_over_asgi(manager: QueueManager) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    outer = Starlette(routes=[Mount("/queues", app=app(manager))])
    with uvicorn_serving(outer) as base:
        browse(base, manager)


def test_mounted_in_flask_over_wsgi(manager: QueueManager) -> None:
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    flask_app = Flask(__name__)
    flask_app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        flask_app.wsgi_app, {"/queues": wsgi_app(manager)}
    )
    with wsgi_serving(flask_app) as base:
        browse(base, manager)
