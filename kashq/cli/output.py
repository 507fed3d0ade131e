"""The CLI's only way to print: rich consoles for results (stdout) and errors (stderr).

Commands print through the helpers here: plain lines, rich tables, a live view,
and JSON (written to stdout verbatim, never through rich markup or
highlighting, so it always parses).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import signal
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from types import FrameType
from typing import Any, TypeVar

import typer
from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from kashq.exceptions import ImportFailed, KashqError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])
FLEX_MIN = 20


def error(message: str) -> None:
    """Print one error line on stderr."""
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True)


def warning(message: str) -> None:
    """Print one warning line on stderr (the command goes on)."""
    err.print(f"[yellow]warning:[/] {escape(message)}", markup=True)


class WarningLines(logging.Handler):
    """Shows the log warnings of a kashq module as ``warning:`` lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        warning(record.getMessage())


def show_warnings_of(logger_name: str) -> None:
    """Print ``logger_name``'s warnings as this CLI's own lines (once, however often asked)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(handler, WarningLines) for handler in logger.handlers):
        logger.addHandler(WarningLines(logging.WARNING))
        logger.propagate = False


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` as an error and return the Exit to raise."""
    error(message)
    return typer.Exit(code=code)


def import_failed(exc: ImportFailed) -> typer.Exit:
    """Print a job module's import error and the user's traceback; return the Exit to raise."""
    error(str(exc))
    err.print(exc.details, markup=False, highlight=False)
    return typer.Exit(code=1)


def friendly(fn: F) -> F:
    """Turn kashq and OS errors raised by a command into one line and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (KashqError, OSError) as exc:
            raise fail(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def confirm(question: str) -> bool:
    """Whether the user answers yes on stderr's prompt; no input (EOF) or Ctrl-C is no."""
    try:
        return typer.confirm(question, default=False, err=True)
    except typer.Abort:
        return False


def line(text: str = "") -> None:
    """Print ``text`` on stdout as it is (no markup, no highlighting)."""
    out.print(text, markup=False, highlight=False, emoji=False)


def show(renderable: RenderableType) -> None:
    """Print a rich renderable (a table, a grid ...) on stdout."""
    out.print(renderable)


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout, bypassing rich entirely."""
    stream = out.file
    stream.write(json.dumps(data, indent=2) + "\n")
    stream.flush()


def table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    flexible: str | None = None,
    right: Sequence[str] = (),
    styles: Sequence[str | None] | None = None,
) -> Table:
    """A result table of plain-text cells that keeps every cell whole but ``flexible``'s.

    On a terminal, the ``flexible`` column (a long message) is cut with an
    ellipsis to what the terminal leaves, but never below ``FLEX_MIN``
    characters; if the table still does not fit, it is printed wider rather
    than chopping ids and names. Into a file or a pipe nothing is cut: there is
    no screen width to fit, and a script reading the table wants whole cells.
    """
    natural = [
        max([cell_len(name), *(cell_len(row[i]) for row in rows)]) for i, name in enumerate(columns)
    ]
    chrome = 3 * len(columns) + 1  # padding and borders of the default box
    grid = Table(header_style="bold")
    if flexible in columns and out.is_terminal:
        at = columns.index(flexible)
        room = out.width - chrome - sum(natural) + natural[at]
        natural[at] = min(natural[at], max(FLEX_MIN, room))
    for name, width in zip(columns, natural, strict=True):
        grid.add_column(
            name,
            no_wrap=True,
            overflow="ellipsis",
            max_width=width,
            justify="right" if name in right else "left",
        )
    for i, row in enumerate(rows):
        grid.add_row(*(Text(cell) for cell in row), style=styles[i] if styles else None)
    if sum(natural) + chrome > out.width:
        grid.width = sum(natural) + chrome  # wider than the terminal, never chopped
    return grid


def local_time(moment: datetime) -> str:
    """An aware datetime in the local zone as ``YYYY-MM-DD HH:MM:SS``."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


@contextlib.contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """Within the block, SIGTERM stops a watching command as Ctrl-C does (exit 0).

    Service managers and ``timeout`` stop programs with SIGTERM; a command that
    only watches (``queue:monitor``, ``queue:tail``) has nothing to finish.
    """

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def frames(*, in_place: bool) -> Iterator[Callable[[RenderableType], None]]:
    """A function showing each new frame of a view on stdout.

    ``in_place`` (a terminal): the frame is redrawn where the last one was;
    otherwise (a file, a pipe) frames are appended, each flushed at once.
    """
    if not in_place:

        def append(frame: RenderableType) -> None:
            out.print(frame)
            out.file.flush()

        yield append
        return
    with Live(Text(""), console=out, auto_refresh=False, transient=False) as view:
        yield lambda frame: view.update(frame, refresh=True)
