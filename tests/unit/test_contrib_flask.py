"""``kashq.contrib.flask.KashQ`` in process, through Flask's test client and CLI runner (the
example app runs end to end in ``tests/e2e/test_flask_app.py``)."""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

import kashq
from kashq import Job
from kashq.config import load_settings
from kashq.contrib.flask import KashQ, KashqCommands, close_at_exit
from kashq.exceptions import ConfigError
from kashq.manager import swap_manager
from kashq.webhooks import WebhookHandler, WebhookJob


class Noted(Job):
    n: int = 0

    def handle(self) -> None:
        pass


class Pushed(WebhookJob):
    def handle(self) -> None:
        pass


@pytest.fixture(autouse=True)
def own_manager() -> Iterator[None]:
    """Each test's settings build a manager of its own; the previous one comes back."""
    old = swap_manager(None)
    try:
        yield
    finally:
        new = swap_manager(old)
        if new is not None:
            new.close()


def _app(**config: object) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    return app


def test_the_kashq_keys_of_app_config_configure_kashq() -> None:
    KashQ(_app(KASHQ_CONNECTION="memory", KASHQ_QUEUE="mail", KASHQ_MAX_RETRY="5", OTHER=1))
    settings = kashq.manager().settings
    assert (settings.connection, settings.queue, settings.max_retry) == ("memory", "mail", 5)


def test_an_unknown_kashq_key_is_one_line_naming_it_and_the_close_setting() -> None:
    with pytest.raises(ConfigError) as raised:
        KashQ(_app(KASHQ_CONNECTION="memory", KASHQ_MAX_RETRIES=5))
    assert str(raised.value) == (
        "unknown setting KASHQ_MAX_RETRIES in app.config (did you mean KASHQ_MAX_RETRY?)"
    )


def test_a_bad_value_is_one_line_naming_the_setting_and_app_config() -> None:
    with pytest.raises(ConfigError) as raised:
        KashQ(_app(KASHQ_CONNECTION="memory", KASHQ_MAX_RETRY=0))
    message = str(raised.value)
    assert message.startswith("invalid setting max_retry (from app.config): "), message
    assert "\n" not in message


def test_without_kashq_keys_kashq_keeps_the_current_manager() -> None:
    kashq.configure(connection="memory", queue="mail")
    before = kashq.manager()
    assert KashQ(_app()).manager is before
    assert before.settings.queue == "mail"


def test_metrics_are_served_at_exactly_their_path_beside_the_app_s_routes() -> None:
    app = _app(KASHQ_CONNECTION="memory")

    @app.get("/metrics/today")
    def today() -> str:
        return "the app's own"

    KashQ(app, metrics="/metrics/")
    Noted(n=1).dispatch()
    client = app.test_client()

    scraped = client.get("/metrics")
    assert scraped.status_code == 200
    assert 'kashq_queue_size{queue="default",state="ready"} 1.0' in scraped.text
    assert client.get("/metrics/today").text == "the app's own"
    assert client.get("/metrics/other").status_code == 404


def test_the_dashboard_is_mounted_under_its_path() -> None:
    app = _app(KASHQ_CONNECTION="memory")

    @app.get("/")
    def home() -> str:
        return "home"

    KashQ(app, dashboard="/kashq")
    client = app.test_client()

    page = client.get("/kashq/failed")
    assert page.status_code == 200
    assert 'href="/kashq/static/dashboard.css"' in page.text
    assert client.get("/").text == "home"


def test_webhooks_mount_where_given_and_a_signed_post_queues_one_job() -> None:
    hooks = WebhookHandler()
    hooks.register_job_webhook("/github", Pushed, secret="s3cret", verifier="github")
    app = _app(KASHQ_CONNECTION="memory")
    KashQ(app, webhooks="/hooks/", webhook_handler=hooks)
    body = json.dumps({"ref": "main"}).encode()
    signed = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    headers = {"x-hub-signature-256": signed, "x-github-delivery": "d-1"}
    client = app.test_client()

    accepted = client.post("/hooks/github", data=body, headers=headers)
    forged = client.post("/hooks/github", data=body + b" ", headers=headers)

    assert (accepted.status_code, forged.status_code) == (202, 401), accepted.text
    assert kashq.manager().connection().sizes(["default"])["default"].ready == 1


def test_init_app_sets_up_each_app_of_a_factory() -> None:
    ext = KashQ(metrics="/metrics")

    def create_app() -> Flask:
        app = _app(KASHQ_CONNECTION="memory")
        ext.init_app(app)
        return app

    apps = [create_app(), create_app()]
    for app in apps:
        assert app.extensions["kashq"] is ext
        assert app.test_client().get("/metrics").status_code == 200
        assert isinstance(app.cli.get_command(None, "kashq"), KashqCommands)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["metrics", "/", ""])
@pytest.mark.parametrize("mount", ["metrics", "dashboard", "webhooks"])
def test_a_mount_path_must_start_with_a_slash_and_not_be_the_root(mount: str, path: str) -> None:
    with pytest.raises(ValueError, match="starts with /"):
        KashQ(**{mount: path})  # type: ignore[arg-type]


def test_flask_kashq_lists_kashq_s_commands() -> None:
    app = _app()
    KashQ(app)
    listed = app.test_cli_runner().invoke(args=["--help"])
    assert "kashq" in listed.output

    shown = app.test_cli_runner().invoke(args=["kashq", "--help"])

    assert shown.exit_code == 0, shown.output
    assert " kashq [OPTIONS] COMMAND [ARGS]..." in shown.output  # flask's name, then kashq
    for command in ("queue:work", "queue:failed", "migrate"):
        assert command in shown.output


def test_flask_kashq_runs_a_command_with_the_app_s_settings(tmp_path: Path) -> None:
    database = tmp_path / "app.sqlite"
    app = _app(KASHQ_DATABASE_URL=f"sqlite:///{database}", KASHQ_QUEUE="mail")
    KashQ(app)
    runner = app.test_cli_runner()
    before = dict(os.environ)

    migrated = runner.invoke(args=["kashq", "migrate"])
    sized = runner.invoke(args=["kashq", "queue:size", "--json"])

    assert migrated.exit_code == 0, migrated.output
    assert database.is_file()
    assert sized.exit_code == 0, sized.output
    assert list(json.loads(sized.stdout)) == ["mail"]
    assert dict(os.environ) == before  # the app's settings were the commands' only


def test_a_bad_setting_in_the_environment_is_the_command_s_one_line_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KASHQ_MAX_RETRY", "0")
    app = _app()
    KashQ(app)

    run = app.test_cli_runner().invoke(args=["kashq", "queue:size"])

    assert run.exit_code == 1, run.output
    assert run.output.startswith("error: invalid setting max_retry (from environment variable")
    assert len(run.output.strip().splitlines()) == 1, run.output


def test_the_commands_see_the_app_s_settings_as_parsed_and_its_job_modules() -> None:
    config = {
        "KASHQ_CONNECTION": "redis", "KASHQ_TIMEOUT": "none", "KASHQ_AFTER_COMMIT": True,
        "KASHQ_IMPORTS": "billing.jobs", "KASHQ_RETRY_AFTER": 45, "KASHQ_SLACK_CHANNEL": None,
    }  # fmt: skip
    app = _app(**config)
    KashQ(app)
    commands = app.cli.get_command(None, "kashq")  # type: ignore[arg-type]
    assert isinstance(commands, KashqCommands)

    with commands.environment():
        seen = load_settings()
        path = os.environ["PYTHONPATH"].split(os.pathsep)

    assert (seen.connection, seen.timeout, seen.after_commit) == ("redis", None, True)
    assert (seen.retry_after, seen.slack_channel) == (45.0, None)
    assert seen.imports[:2] == ["billing.jobs", __name__]  # this module: the app's and Noted's
    assert path[0] == str(Path(__file__).resolve().parents[2])  # where `tests` is imported from


def test_at_exit_the_current_manager_is_closed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    hooks: list[Callable[[], None]] = []

    def unregister(hook: Callable[[], None]) -> None:
        hooks[:] = [h for h in hooks if h is not hook]

    monkeypatch.setattr(atexit, "register", hooks.append)
    monkeypatch.setattr(atexit, "unregister", unregister)
    ext = KashQ(_app(KASHQ_CONNECTION="memory"))
    ext.init_app(_app(KASHQ_CONNECTION="memory"))  # a second app: still one hook
    assert hooks == [close_at_exit]
    manager, closed = kashq.manager(), list[bool]()
    closing = manager.close

    def close() -> None:
        closed.append(True)
        closing()

    manager.close = close  # type: ignore[method-assign]

    close_at_exit()
    close_at_exit()  # nothing left to close
    manager.close()  # and a manager closes twice harmlessly

    assert closed == [True, True]
    assert swap_manager(None) is None
