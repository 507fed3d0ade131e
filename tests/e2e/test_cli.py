"""End-to-end tests of the ``kashq`` command line.

Every behaviour is checked twice: in-process through ``typer.testing.CliRunner``
on :data:`kashq.cli.app`, and through the installed ``kashq`` executable run in
a subprocess. Generated job modules are imported in a subprocess so their job
classes never land in this process's registry.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

import kashq
from kashq.cli import app


@dataclass(frozen=True)
class Run:
    """What one invocation of the CLI did."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


Invoke = Callable[[Sequence[str]], Run]


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KASHQ_")}
    env.pop("FORCE_COLOR", None)
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    return env


def _kashq_executable() -> Path:
    beside_python = Path(sys.executable).parent / "kashq"
    if beside_python.is_file():
        return beside_python
    found = shutil.which("kashq")
    if found is None:
        pytest.fail("the kashq console script is not installed (pip install -e .)")
    return Path(found)


@pytest.fixture(params=["in-process", "executable"])
def kashq_cli(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Invoke:
    """Run ``kashq <args>`` with ``tmp_path`` as the working directory."""
    for name in list(os.environ):
        if name.upper().startswith("KASHQ_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)

    if request.param == "in-process":
        runner = CliRunner()

        def invoke_in_process(args: Sequence[str]) -> Run:
            result = runner.invoke(app, list(args), catch_exceptions=False)
            return Run(result.exit_code, result.stdout, result.stderr)

        return invoke_in_process

    executable = _kashq_executable()

    def invoke_executable(args: Sequence[str]) -> Run:
        proc = subprocess.run(
            [str(executable), *args],
            cwd=tmp_path,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    return invoke_executable


def run_python(cwd: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -c code`` in ``cwd`` (which is then first on ``sys.path``)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_imports_job_class(cwd: Path, module: str, cls: str, queue: str | None = None) -> None:
    code = (
        f"import {module} as m; import kashq\n"
        f"assert issubclass(m.{cls}, kashq.Job), m.{cls}\n"
        f"assert m.{cls}.__name__ == {cls!r}\n"
        f"assert m.{cls}.queue == {queue!r}, m.{cls}.queue\n"
    )
    proc = run_python(cwd, code)
    assert proc.returncode == 0, proc.stderr


def stderr_lines(run: Run) -> list[str]:
    return [line for line in run.stderr.splitlines() if line.strip()]


# --------------------------------------------------------------------------- top level


def test_help_lists_make_job(kashq_cli: Invoke) -> None:
    run = kashq_cli(["--help"])

    assert run.exit_code == 0, run.output
    assert "make:job" in run.stdout
    assert "Usage" in run.stdout
    assert "--version" in run.stdout


def test_version_prints_kashq_and_package_version(kashq_cli: Invoke) -> None:
    run = kashq_cli(["--version"])

    assert run.exit_code == 0, run.output
    assert run.stdout.strip() == f"kashq {kashq.__version__}"
    assert run.stderr == ""


def test_no_arguments_shows_usage(kashq_cli: Invoke) -> None:
    run = kashq_cli([])

    # Click exits 2 for no_args_is_help (a usage error); older versions exit 0.
    assert run.exit_code in (0, 2), run.output
    assert "Usage" in run.output
    assert "make:job" in run.output
    assert "Traceback" not in run.output


def test_unknown_command_fails_without_traceback(kashq_cli: Invoke) -> None:
    run = kashq_cli(["make:nothing"])

    assert run.exit_code != 0
    assert "Traceback" not in run.output


# --------------------------------------------------------------------------- make:job


def test_make_job_creates_package_and_module(kashq_cli: Invoke, tmp_path: Path) -> None:
    run = kashq_cli(["make:job", "SendWelcomeEmail"])

    assert run.exit_code == 0, run.output
    assert (tmp_path / "jobs" / "__init__.py").is_file()
    module = tmp_path / "jobs" / "send_welcome_email.py"
    assert module.is_file()
    source = module.read_text()
    assert "class SendWelcomeEmail(Job):" in source
    assert "def handle(self)" in source
    compile(source, str(module), "exec")
    assert "jobs/send_welcome_email.py" in run.stdout.replace(os.sep, "/")
    assert "jobs.send_welcome_email" in run.stdout  # the dotted name for KASHQ_IMPORTS
    assert run.stderr == ""


def test_make_job_generated_module_defines_job_subclass(kashq_cli: Invoke, tmp_path: Path) -> None:
    assert kashq_cli(["make:job", "SendWelcomeEmail"]).exit_code == 0

    assert_imports_job_class(tmp_path, "jobs.send_welcome_email", "SendWelcomeEmail")


def test_make_job_snake_case_name_gives_same_class(kashq_cli: Invoke, tmp_path: Path) -> None:
    run = kashq_cli(["make:job", "send_welcome_email"])

    assert run.exit_code == 0, run.output
    assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == [
        "__init__.py",
        "send_welcome_email.py",
    ]
    assert_imports_job_class(tmp_path, "jobs.send_welcome_email", "SendWelcomeEmail")


def test_make_job_camel_and_snake_names_target_the_same_file(
    kashq_cli: Invoke, tmp_path: Path
) -> None:
    assert kashq_cli(["make:job", "SendWelcomeEmail"]).exit_code == 0

    run = kashq_cli(["make:job", "send_welcome_email"])

    assert run.exit_code == 1
    assert "already exists" in run.stderr


def test_make_job_path_and_queue_options(kashq_cli: Invoke, tmp_path: Path) -> None:
    run = kashq_cli(["make:job", "SendInvoice", "--path", "app/jobs", "--queue", "emails"])

    assert run.exit_code == 0, run.output
    module = tmp_path / "app" / "jobs" / "send_invoice.py"
    assert module.is_file()
    assert (tmp_path / "app" / "jobs" / "__init__.py").is_file()
    assert not (tmp_path / "jobs").exists()
    assert 'queue = "emails"' in module.read_text()
    assert "app.jobs.send_invoice" in run.stdout
    assert_imports_job_class(tmp_path, "app.jobs.send_invoice", "SendInvoice", queue="emails")


def test_make_job_without_queue_leaves_queue_unset(kashq_cli: Invoke, tmp_path: Path) -> None:
    assert kashq_cli(["make:job", "Cleanup"]).exit_code == 0

    source = (tmp_path / "jobs" / "cleanup.py").read_text()
    assert "\n    queue = " not in source  # only the commented-out hint
    assert_imports_job_class(tmp_path, "jobs.cleanup", "Cleanup", queue=None)


def test_make_job_keeps_existing_package_init(kashq_cli: Invoke, tmp_path: Path) -> None:
    package = tmp_path / "jobs"
    package.mkdir()
    (package / "__init__.py").write_text("MARKER = 1\n")

    assert kashq_cli(["make:job", "First"]).exit_code == 0
    assert kashq_cli(["make:job", "Second"]).exit_code == 0

    assert (package / "__init__.py").read_text() == "MARKER = 1\n"
    assert (package / "first.py").is_file()
    assert (package / "second.py").is_file()


def test_make_job_twice_refuses_and_leaves_file_unchanged(
    kashq_cli: Invoke, tmp_path: Path
) -> None:
    assert kashq_cli(["make:job", "SendWelcomeEmail"]).exit_code == 0
    module = tmp_path / "jobs" / "send_welcome_email.py"
    edited = module.read_text() + "\n# edited by the user\n"
    module.write_text(edited)

    run = kashq_cli(["make:job", "SendWelcomeEmail"])

    assert run.exit_code == 1
    lines = stderr_lines(run)
    assert len(lines) == 1, run.stderr
    assert "already exists" in lines[0]
    assert "send_welcome_email.py" in lines[0]
    assert "Traceback" not in run.output
    assert module.read_text() == edited


@pytest.mark.parametrize("name", ["bad-name", "1abc", "has space", "dotted.name", ""])
def test_make_job_bad_name_fails_with_one_line_and_no_traceback(
    kashq_cli: Invoke, tmp_path: Path, name: str
) -> None:
    run = kashq_cli(["make:job", name])

    assert run.exit_code != 0
    lines = stderr_lines(run)
    assert len(lines) == 1, run.stderr
    assert "class name" in lines[0]
    assert "Traceback" not in run.output
    assert not (tmp_path / "jobs").exists()


def test_make_job_help_exits_zero(kashq_cli: Invoke) -> None:
    run = kashq_cli(["make:job", "--help"])

    assert run.exit_code == 0, run.output
    assert "--path" in run.stdout
    assert "--queue" in run.stdout


def test_make_job_without_name_is_a_usage_error(kashq_cli: Invoke, tmp_path: Path) -> None:
    run = kashq_cli(["make:job"])

    assert run.exit_code == 2
    assert "Traceback" not in run.output
    assert not (tmp_path / "jobs").exists()
