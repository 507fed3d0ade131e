"""kashq's layers: every import points down, and each library stays in its corner.

The rules are read from the source with :mod:`ast` (every import statement,
at any depth: module level, inside functions, under ``TYPE_CHECKING``), so a
lazy import breaks them as surely as a top-level one. What a process loads at
run time is checked in fresh interpreters.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import kashq

PACKAGE = Path(kashq.__file__).resolve().parent

STORES = (
    "kashq.drivers",
    "kashq.failed",
    "kashq.locks",
    "kashq.events",
    "kashq.results",
    "kashq.recent",
    "kashq.history",
)
ABOVE_STORES = ("kashq.job", "kashq.worker", "kashq.manager", "kashq.dispatcher")
CONCRETE_DRIVERS = (
    "kashq.drivers.memory",
    "kashq.drivers.sync",
    "kashq.drivers.database",
    "kashq.drivers.redis.driver",
    "kashq.drivers.sharded",
)
DRIVER_CLASSES = {"MemoryDriver", "SyncDriver", "DatabaseDriver", "RedisDriver", "ShardedDriver"}
DATABASE_MODULES = (
    "kashq.db",
    "kashq.drivers.database",
    "kashq.failed.database",
    "kashq.locks.database",
    "kashq.events.database",
    "kashq.results.database",
    "kashq.recent.database",
    "kashq.history.database",
    "kashq.workflows.batches.database",
    "kashq.transactions",
    "kashq.outbox",
    "kashq.contrib.django",  # Django's transactions and database, for kashq's tables
)
REDIS_MODULES = (
    "kashq.drivers.redis",
    "kashq.drivers.sharded",
    "kashq.locks.redis",
    "kashq.events.redis",
    "kashq.results.redis",
    "kashq.recent.redis",
    "kashq.history.redis",
    "kashq.workflows.batches.redis",
)
CORNERS: dict[str, tuple[str, ...]] = {
    "redis": REDIS_MODULES,
    "sqlalchemy": DATABASE_MODULES,
    "alembic": DATABASE_MODULES,
    "typer": ("kashq.cli",),
    "click": ("kashq.cli", "kashq.contrib.flask"),
    "rich": ("kashq.cli", "kashq.supervisor.lines"),
    "prometheus_client": ("kashq.metrics",),
    "jinja2": ("kashq.dashboard",),
    "markupsafe": ("kashq.dashboard",),
    "starlette": ("kashq.contrib.fastapi",),
    "fastapi": ("kashq.contrib.fastapi",),
    "django": ("kashq.contrib.django",),
    "opentelemetry": ("kashq.tracing",),
    "flask": ("kashq.contrib.flask",),
    "werkzeug": ("kashq.contrib.flask",),
}


def within(module: str, *packages: str) -> bool:
    """Whether ``module`` is one of ``packages`` or inside one of them."""
    return any(module == p or module.startswith(p + ".") for p in packages)


def module_name(path: Path) -> str:
    parts = ["kashq", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, and every ``module.name`` it imports from one."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value


MODULES = {module_name(path): sorted(set(imported(path))) for path in PACKAGE.rglob("*.py")}


def offences(applies: Callable[[str], bool], forbidden: Callable[[str], bool]) -> list[str]:
    """``module -> import`` for each import ``forbidden`` in a module ``applies`` to."""
    return [
        f"{module} -> {name}"
        for module, names in sorted(MODULES.items())
        if applies(module)
        for name in names
        if forbidden(name)
    ]


def test_the_modules_were_read() -> None:
    assert {"kashq.cli", "kashq.locks", "kashq.supervisor.child", "kashq.worker.worker"} <= set(
        MODULES
    )


def test_only_the_command_line_imports_the_command_line() -> None:
    assert (
        offences(
            # and the frameworks' own commands, which are the kashq command
            lambda module: (
                not within(
                    module,
                    "kashq.cli",
                    "kashq.__main__",
                    "kashq.contrib.django.management",
                    "kashq.contrib.flask",
                )
            ),
            lambda name: within(name, "kashq.cli"),
        )
        == []
    )


def test_the_stores_import_nothing_above_them() -> None:
    """Drivers, failed-job stores, locks and events know no job, worker, manager or dispatcher."""
    assert (
        offences(lambda module: within(module, *STORES), lambda name: within(name, *ABOVE_STORES))
        == []
    )


def test_locks_and_events_know_no_driver_class() -> None:
    """They choose by ``driver.storage``, never by a driver's type."""
    assert (
        offences(
            lambda module: within(module, "kashq.locks", "kashq.events"),
            lambda name: (
                within(name, *CONCRETE_DRIVERS) or name.rpartition(".")[2] in DRIVER_CLASSES
            ),
        )
        == []
    )


@pytest.mark.parametrize("library", sorted(CORNERS))
def test_each_library_stays_in_its_corner(library: str) -> None:
    corner = CORNERS[library]
    assert (
        offences(lambda module: not within(module, *corner), lambda name: within(name, library))
        == []
    )


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    script = f"import sys\n{code}\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_a_worker_process_never_loads_the_command_line() -> None:
    loaded = loaded_after("import kashq.supervisor.child")
    assert {"typer", "click", "kashq.cli"} & loaded == set()


def test_importing_kashq_loads_no_backend_library() -> None:
    """``import kashq`` loads no server, command-line or metrics library."""
    loaded = loaded_after("import kashq")
    assert set(CORNERS) & loaded == set()
