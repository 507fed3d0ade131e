"""kashq in a Flask app: settings from ``app.config``, mounts, a close at exit and ``flask kashq``.

    from flask import Flask
    from kashq.contrib.flask import KashQ

    app = Flask(__name__)
    app.config["KASHQ_CONNECTION"] = "redis"
    KashQ(app, metrics="/metrics", dashboard="/kashq")

With an app factory, make ``kashq_ext = KashQ(metrics="/metrics")`` at module
level and call ``kashq_ext.init_app(app)`` in the factory.

- **Settings**: every ``KASHQ_*`` key of ``app.config`` is a kashq setting
  (``KASHQ_MAX_RETRY`` is ``kashq.configure(max_retry=...)``); a key naming
  none is a :class:`~kashq.exceptions.ConfigError`. They win over the
  environment and ``kashq.toml``; without any, kashq reads its settings as usual.
- **Mounts**, each only when given a path: ``metrics`` (Prometheus text at
  exactly that path, with the queue sizes of the default connection),
  ``dashboard`` (with ``dashboard_options``: give it a guard before exposing it)
  and ``webhooks`` (``webhook_handler``, default
  :data:`kashq.webhooks.default_handler`), the last two under their path.
- **Shutdown**: Flask has no lifespan; the current manager is closed when the
  interpreter exits normally (``atexit``: Ctrl-C, a gunicorn worker's SIGTERM,
  not a SIGKILL nor the development server's SIGTERM).
- **Commands**: ``flask kashq <command>`` is the ``kashq`` command with the
  app's settings; its workers import the app's module and every module
  defining a job the app knows, so ``flask kashq queue:work`` needs no ``--import``.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click
from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from kashq.config import ENV_PREFIX, Settings, env_name, load_settings, setting_of, variable_guess
from kashq.contrib._mounts import metrics_endpoint, mount_path
from kashq.exceptions import ConfigError
from kashq.manager import QueueManager, configure, swap_manager
from kashq.manager import manager as current_manager
from kashq.registry import REGISTRY, module_name
from kashq.webhooks.handler import WebhookHandler

__all__ = ["KashQ"]

log = logging.getLogger(__name__)


class KashQ:
    """kashq set up for ``app`` (or for each app given to :meth:`init_app`)."""

    def __init__(
        self,
        app: Flask | None = None,
        *,
        metrics: str | None = None,
        dashboard: str | None = None,
        dashboard_options: Mapping[str, Any] | None = None,
        webhooks: str | None = None,
        webhook_handler: WebhookHandler | None = None,
    ) -> None:
        # Paths are checked here, so a factory's mistake shows when its module is imported.
        self.metrics = None if metrics is None else mount_path(metrics)
        self.dashboard = None if dashboard is None else mount_path(dashboard)
        self.dashboard_options = dict(dashboard_options or {})
        self.webhooks = None if webhooks is None else mount_path(webhooks)
        self.webhook_handler = webhook_handler
        if app is not None:
            self.init_app(app)

    @property
    def manager(self) -> QueueManager:
        """The current queue manager (the one the app's settings made)."""
        return current_manager()

    def init_app(self, app: Flask) -> None:
        """Configure kashq from ``app.config``, mount what was asked for, add ``flask kashq``."""
        settings = app_settings(app.config)
        variables: dict[str, str | None] = {}
        if settings:
            manager = configure(QueueManager(load_settings(origin="app.config", **settings)))
            variables = _variables(manager.settings, settings)
        app.extensions["kashq"] = self
        if self.metrics is not None:
            self._mount_metrics(app, self.metrics)
        mounts: dict[str, Any] = {}
        if self.dashboard is not None:
            from kashq.dashboard import wsgi_app

            mounts[self.dashboard] = wsgi_app(**self.dashboard_options)
        if self.webhooks is not None:
            from kashq.webhooks import default_handler

            mounts[self.webhooks] = (self.webhook_handler or default_handler).wsgi_app
        if mounts:
            app.wsgi_app = DispatcherMiddleware(app.wsgi_app, mounts)  # type: ignore[method-assign]
        app.cli.add_command(KashqCommands(app, variables))
        atexit.unregister(close_at_exit)  # registered once, however many apps
        atexit.register(close_at_exit)

    def _mount_metrics(self, app: Flask, path: str) -> None:
        """Serve Prometheus text at exactly ``path``: a route of the app, its other routes kept."""
        endpoint = metrics_endpoint(self.manager)

        def kashq_metrics() -> Any:
            return endpoint.wsgi  # Flask runs a WSGI app returned by a view

        app.add_url_rule(path, view_func=kashq_metrics, methods=["GET"])


def app_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The kashq settings among ``config``'s keys (``KASHQ_MAX_RETRY``: ``max_retry``).

    A ``KASHQ_*`` key that names no setting is a one-line ConfigError, with the
    setting it is close to, as unknown ``KASHQ_*`` variables are reported.
    """
    settings = {}
    for key, value in config.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = setting_of(key)
        if name is None:
            raise ConfigError(f"unknown setting {key} in app.config{variable_guess(key)}")
        settings[name] = value
    return settings


def close_at_exit() -> None:
    """Close the current queue manager, if any, and let it go (the ``atexit`` hook).

    Calling it again finds no manager: a second close does nothing.
    """
    closing = swap_manager(None)
    if closing is not None:
        closing.close()
        log.info("kashq: queue manager closed at exit")


class KashqCommands(click.Command):
    """``flask kashq``: the ``kashq`` command (loaded when run) with the app's settings.

    A plain command forwarding its arguments, so web and worker processes that
    import the app never load the command line.
    """

    def __init__(self, app: Flask, variables: Mapping[str, str | None]) -> None:
        super().__init__(
            "kashq",
            help="kashq's commands (queue:work, queue:failed...) with this app's settings.",
            context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
            add_help_option=False,
        )
        self.app = app
        self.variables = dict(variables)

    def invoke(self, ctx: click.Context) -> Any:
        from kashq.cli import app as kashq_app

        # Typer brings a click of its own: the kashq command runs as a program, here.
        with self.environment():
            return kashq_app(args=list(ctx.args), prog_name=ctx.command_path)

    @contextlib.contextmanager
    def environment(self) -> Iterator[None]:
        """The app's settings as ``KASHQ_*`` variables, which worker processes inherit, and
        its job modules in ``KASHQ_IMPORTS`` (their directories on ``PYTHONPATH``)."""
        from kashq.cli import output

        names = [*self.variables, "KASHQ_IMPORTS", "PYTHONPATH"]
        saved = {name: os.environ.get(name) for name in names}
        try:
            _set(self.variables)
            output.show_warnings_of("kashq.config")
            try:
                imports = load_settings().imports
            except ConfigError:
                imports = None  # a bad setting: the command says so, in its own words
            if imports is not None:
                modules = job_modules(self.app)
                paths = [*dict.fromkeys(modules.values()), os.environ.get("PYTHONPATH")]
                os.environ["KASHQ_IMPORTS"] = ",".join(dict.fromkeys([*imports, *modules]))
                os.environ["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
            yield
        finally:
            _set(saved)


def job_modules(app: Flask) -> dict[str, str]:
    """The app's module and every module defining a job the app knows (kashq's own aside),
    each with the ``sys.path`` entry it was imported from."""
    names = [app.import_name]
    names += [module_name(REGISTRY.resolve(name).target) for name in REGISTRY.names()]
    found = {}
    for name in dict.fromkeys(names):
        root = _import_root(name)
        if root is not None and name != "kashq" and not name.startswith("kashq."):
            found[name] = root
    return found


def _import_root(name: str) -> str | None:
    """The directory module ``name`` is imported from (None: not a module from a file)."""
    file = getattr(sys.modules.get(name), "__file__", None)
    if name == "__main__" or not file:
        return None
    path = Path(os.path.abspath(file))
    if path.stem == "__init__":
        path = path.parent
    return str(path.parents[name.count(".")])


def _variables(parsed: Settings, given: Mapping[str, Any]) -> dict[str, str | None]:
    """The settings ``given`` (from ``app.config``) as ``KASHQ_*`` variables, from their
    ``parsed`` values. None stands for unset: a setting whose default is None needs none."""
    variables: dict[str, str | None] = {}
    for name in given:
        value = getattr(parsed, name)
        if isinstance(value, bool):
            text: str | None = "true" if value else "false"
        elif isinstance(value, list):
            text = ",".join(value)
        elif value is None:
            text = None if Settings.model_fields[name].default is None else "none"
        else:
            text = str(value)
        variables[env_name(name)] = text
    return variables


def _set(variables: Mapping[str, str | None]) -> None:
    for name, value in variables.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
