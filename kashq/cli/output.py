"""The CLI's only way to print: rich consoles for results (stdout) and errors (stderr)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from kashq.exceptions import KashqError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


def error(message: str) -> None:
    """Print one error line on stderr."""
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` as an error and return the Exit to raise."""
    error(message)
    return typer.Exit(code=code)


def friendly(fn: F) -> F:
    """Turn kashq and OS errors raised by a command into one line and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (KashqError, OSError) as exc:
            raise fail(str(exc)) from None

    return wrapper  # type: ignore[return-value]
