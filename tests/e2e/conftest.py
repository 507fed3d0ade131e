"""Shared e2e fixtures: ``kashq_cli`` runs ``kashq`` in-process and as the installed executable.

This ``kashq_cli`` extends the one in ``test_cli.py`` (which keeps its own
copy): settings given with :meth:`Cli.setenv` reach both runs (``monkeypatch``
for the in-process one, the subprocess environment for the executable), and a
run may be fed standard input. The executable never inherits pytest's stdin.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kashq.cli import app
from kashq.failed.database import DatabaseFailedJobStore
from tests.e2e.test_cli import Run, _clean_env, _kashq_executable


class Cli:
    """Runs ``kashq <args>`` in ``cwd``, in-process or as the executable."""

    def __init__(self, mode: str, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.mode = mode
        self.cwd = cwd
        self.env: dict[str, str] = {}
        self._monkeypatch = monkeypatch

    def setenv(self, name: str, value: str) -> None:
        """A setting (``KASHQ_*``) for every later run of this test."""
        self.env[name] = value
        if self.mode == "in-process":
            self._monkeypatch.setenv(name, value)

    def __call__(self, args: Sequence[str], *, input: str | None = None) -> Run:
        if self.mode == "in-process":
            result = CliRunner().invoke(app, list(args), input=input, catch_exceptions=False)
            return Run(result.exit_code, result.stdout, result.stderr)
        proc = subprocess.run(
            [str(_kashq_executable()), *args],
            cwd=self.cwd,
            env=self.subprocess_env(),
            input=input or "",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def subprocess_env(self) -> dict[str, str]:
        """The environment of a subprocess: no outside KASHQ_*, this test's settings."""
        return {**_clean_env(), **self.env}

    def python(self, code: str) -> subprocess.CompletedProcess[str]:
        """Run ``python -c code`` in ``cwd`` with this test's settings."""
        return subprocess.run(
            [sys.executable, "-c", code],
            cwd=self.cwd,
            env=self.subprocess_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture(params=["in-process", "executable"])
def kashq_cli(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Cli:
    """Run ``kashq <args>`` with ``tmp_path`` as the working directory."""
    for name in list(os.environ):
        if name.upper().startswith("KASHQ_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return Cli(str(request.param), tmp_path, monkeypatch)


@pytest.fixture
def db_url(kashq_cli: Cli, tmp_path: Path) -> str:
    """KASHQ_DATABASE_URL of the test: a SQLite file in its directory."""
    url = f"sqlite:///{tmp_path / 'kashq.sqlite'}"
    kashq_cli.setenv("KASHQ_DATABASE_URL", url)
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[DatabaseFailedJobStore]:
    """The failed-job store the commands of the test read (the failed_jobs table)."""
    failed = DatabaseFailedJobStore(db_url)
    yield failed
    failed.close()


def stderr_lines(run: Run) -> list[str]:
    return [line for line in run.stderr.splitlines() if line.strip()]


def assert_one_line_error(run: Run, *, hidden: str = "") -> str:
    """A failed run with exactly one stderr line, no traceback, ``hidden`` nowhere."""
    assert run.exit_code != 0, run.output
    lines = stderr_lines(run)
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.output
    if hidden:
        assert hidden not in run.output
    return lines[0]
