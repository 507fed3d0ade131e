"""Importing the user's job modules, so the type registry knows their job classes."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path

from kashq.exceptions import KashqError


class ImportFailed(KashqError):
    """A job module could not be imported; ``details`` holds its traceback."""

    def __init__(self, name: str, error: BaseException) -> None:
        super().__init__(f"cannot import job module {name!r}: {type(error).__name__}: {error}")
        self.name = name
        self.details = _user_traceback(error)


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
            raise ImportFailed(name, exc) from None
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
