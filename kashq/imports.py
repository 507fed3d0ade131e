"""Importing the user's job modules, so the type registry knows their job classes."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path

from kashq.exceptions import ImportFailed

__all__ = ["ImportFailed", "check_in_subprocess", "import_job_modules"]

_CHECK = "from kashq.imports import _check_main; _check_main()"


def import_job_modules(names: Iterable[str], cwd: str | None = None) -> list[str]:
    """Import each module (dotted name, or a ``path/to/file.py``) with ``cwd`` on sys.path.

    A file path imports the file as a top-level module named after it, its
    directory put on ``sys.path`` — the name a script run as ``python
    path/to/file.py`` gives its job classes. Returns the module names.
    """
    root = os.path.abspath(cwd or os.getcwd())
    if root not in sys.path:
        sys.path.insert(0, root)
    imported = []
    for name in names:
        module = _module_name(name, root)
        try:
            importlib.import_module(module)
        except BaseException as exc:  # SystemExit and friends too: report, do not die
            message = f"cannot import job module {name!r}: {type(exc).__name__}: {exc}"
            raise ImportFailed(message, _user_traceback(exc)) from None
        imported.append(module)
    return imported


def _module_name(name: str, root: str) -> str:
    if not name.endswith(".py") and "/" not in name and os.sep not in name:
        return name
    path = Path(root, name).resolve()
    directory = str(path.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    return path.stem


def _user_traceback(error: BaseException) -> str:
    """The traceback without importlib's own frames (one screen, the user's code)."""
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if "importlib" not in frame.filename and not frame.filename.endswith("kashq/imports.py")
    ]
    lines = traceback.format_list(frames) + traceback.format_exception_only(type(error), error)
    return "".join(lines).rstrip()


def check_in_subprocess(names: Iterable[str], timeout_s: float = 120) -> None:
    """Import the modules in a throwaway interpreter; raise :class:`ImportFailed` if one fails.

    ``queue:work`` checks this way so that the supervisor itself never runs the
    user's module code (threads a module starts could keep it from exiting).
    """
    names = list(names)
    if not names:
        return
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHECK, json.dumps(names)],
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise ImportFailed(f"importing {', '.join(names)} took over {timeout_s:g}s") from None
    if proc.returncode != 0:
        last = (proc.stdout.strip().splitlines() or [""])[-1]  # modules may print too
        report = json.loads(last) if last.startswith('{"message"') else {}
        message = report.get("message") or f"checking job modules failed: {proc.stderr.strip()}"
        raise ImportFailed(message, report.get("details", ""))


def _check_main() -> None:
    try:
        import_job_modules(json.loads(sys.argv[1]))
    except ImportFailed as exc:
        sys.stdout.write(json.dumps({"message": str(exc), "details": exc.details}))
        sys.stdout.flush()
        os._exit(1)
    os._exit(0)
