"""``kashq make:job``: scaffold a job class in the user's jobs package."""

from __future__ import annotations

import json
import keyword
import re
from pathlib import Path
from typing import Annotated

import typer

from kashq.cli import output
from kashq.names import check_queue_name

_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

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
    """``SendWelcomeEmail`` → ``send_welcome_email``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", cls).lower()


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
    if not _IDENTIFIER.match(name) or not cls.isidentifier() or keyword.iskeyword(cls):
        raise output.fail(f"job name must be a class name such as SendWelcomeEmail, got {name!r}")
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
