"""``kashq dashboard``'s refusals: each a one-line error, before anything listens.

The served dashboard itself is driven by the browser tests (``test_dashboard_browser.py``).
"""

from __future__ import annotations

import sys

from typer.testing import CliRunner

from kashq.cli import app as cli_app
from tests.e2e.conftest import Cli, assert_one_line_error


def test_another_host_than_this_machine_needs_a_token_or_a_user(kashq_cli: Cli) -> None:
    line = assert_one_line_error(kashq_cli(["dashboard", "--host", "0.0.0.0"]))
    assert "opens the dashboard to other machines" in line and "--token" in line
    line = assert_one_line_error(kashq_cli(["dashboard", "--token", "short"]))
    assert line == "error: a dashboard token must be at least 16 characters"
    line = assert_one_line_error(kashq_cli(["dashboard", "--user", "ops"]))
    assert "KASHQ_DASHBOARD_PASSWORD" in line
    line = assert_one_line_error(kashq_cli(["dashboard", "--port", "http"]))
    assert line == "error: --port must be a port number (0-65535), got 'http'"


def test_without_its_extra_it_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "jinja2", None)  # import jinja2 now raises ImportError
    monkeypatch.delitem(sys.modules, "kashq.dashboard.core", raising=False)
    result = CliRunner().invoke(cli_app, ["dashboard"])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == "error: the dashboard needs its extra: pip install 'kashq[dashboard]'\n"
