"""``kashq make:job``: scaffold a job class in the user's jobs package."""

from __future__ import annotations

import json
import keyword
from pathlib import Path
from typing import Annotated

import typer

from kashq.cli import output
from kashq.names import check_queue_name

_TAKEN = ("Job",)  # the template imports it

TEMPLATE = '''"""The {cls} job."""

from __future__ import annotations

from kashq import Job


class {cls}(Job):
    """Say what this job does."""

    # The payload: annotated attributes, validated and stored as JSON.
    # user_id: int

    # Options, all optional: queue, tries, backoff, timeout, priority.
{options}
    def handle(self) -> None:
        """Do the work. Raise to fail the attempt; it is retried with backoff."""
'''


def class_name(name: str) -> str:
    """``send_welcome_email`` or ``SendWelcomeEmail`` → ``SendWelcomeEmail``."""
    if "_" in name or name.islower():
        return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)
    return name[:1].upper() + name[1:]


def module_name(cls: str) -> str:
    """``SendWelcomeEmail`` → ``send_welcome_email`` (any alphabet: ``ÉcrireRapport`` too)."""
    words = []
    for i, char in enumerate(cls):
        before = cls[i - 1] if i else ""
        after = cls[i + 1] if i + 1 < len(cls) else ""
        starts_word = char.isupper() and (
            before.islower() or before.isdigit() or (before.isupper() and after.islower())
        )
        words.append(f"_{char}" if starts_word else char)
    return "".join(words).lower()


def _problem(name: str, cls: str) -> str | None:
    """Why ``name`` cannot be a job class (and its module), or None if it can."""
    module = module_name(cls)
    if not name.isidentifier() or not cls.isidentifier() or not module.isidentifier():
        return "it is not a Python identifier"
    if keyword.iskeyword(cls) or keyword.iskeyword(module):
        return "it is a Python keyword"
    if cls in _TAKEN:
        return f"{cls} is the name of kashq's base class"
    return None


def make_job(
    name: Annotated[str, typer.Argument(help="Class name, e.g. SendWelcomeEmail.")],
    path: Annotated[
        Path, typer.Option("--path", help="Package directory the job goes into.")
    ] = Path("jobs"),
    queue: Annotated[
        str | None, typer.Option("--queue", help="Queue the job class dispatches to.")
    ] = None,
) -> None:
    """Create a new job class (refuses to overwrite an existing file)."""
    cls = class_name(name)
    problem = _problem(name, cls)
    if problem is not None:
        raise output.fail(
            f"job name must be a class name such as SendWelcomeEmail, got {name!r}: {problem}"
        )
    if queue is not None:
        try:
            check_queue_name(queue)
        except ValueError as exc:
            raise output.fail(str(exc)) from None
    target = path / f"{module_name(cls)}.py"
    if target.exists():
        raise output.fail(f"{target} already exists; not overwriting it")
    options = f"    queue = {json.dumps(queue)}\n" if queue else '    # queue = "default"\n'
    try:
        path.mkdir(parents=True, exist_ok=True)
        init = path / "__init__.py"
        if not init.exists():
            init.write_text('"""Job classes."""\n')
        target.write_text(TEMPLATE.format(cls=cls, options=options))
    except OSError as exc:
        raise output.fail(f"cannot write {target}: {exc.strerror or exc}") from None
    output.out.print(f"Job [bold]{target}[/] created.")
    if not path.is_absolute():
        dotted = ".".join((*path.parts, module_name(cls)))
        output.out.print(f"Add [bold]{dotted}[/] to KASHQ_IMPORTS so workers can load it.")


def register(app: typer.Typer) -> None:
    app.command("make:job")(make_job)
