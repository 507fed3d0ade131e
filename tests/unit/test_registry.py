"""The job type registry: class names, aliases, handlers, conflicts, unknown names."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import kashq
from kashq.registry import MAX_NAME_LENGTH, REGISTRY, Registry, module_name, qualified_name

PREFIX = "tests.unit.test_registry"


class RegistryWelcomeEmailJob(kashq.Job):
    email: str = "a@example.com"

    def handle(self) -> None:
        pass


class RegistryInvoiceJob(kashq.Job):
    number: int = 1

    def handle(self) -> None:
        pass


class RegistryOuter:
    class NestedJob(kashq.Job):
        def handle(self) -> None:
            pass


class NotAJob(BaseModel):
    x: int = 0


def define_local_job() -> type[kashq.Job]:
    class RegistryLocalJob(kashq.Job):
        n: int = 0

        def handle(self) -> None:
            pass

    return RegistryLocalJob


def handler_a(envelope: kashq.Envelope) -> None:
    pass


def handler_b(envelope: kashq.Envelope) -> None:
    pass


def run_python(args: list[str], cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# -- class registration ------------------------------------------------------------


def test_job_subclass_registers_under_module_and_qualname() -> None:
    name = f"{__name__}.RegistryWelcomeEmailJob"

    assert RegistryWelcomeEmailJob.__kashq_name__ == name
    entry = REGISTRY.resolve(name)
    assert entry.target is RegistryWelcomeEmailJob
    assert entry.is_handler is False
    assert entry.name == name
    assert name in REGISTRY
    assert name in REGISTRY.names()


def test_nested_job_class_registers_under_its_dotted_qualname() -> None:
    name = f"{__name__}.RegistryOuter.NestedJob"

    assert RegistryOuter.NestedJob.__kashq_name__ == name
    assert REGISTRY.resolve(name).target is RegistryOuter.NestedJob


def test_module_name_and_qualified_name_of_an_ordinary_module() -> None:
    assert module_name(RegistryInvoiceJob) == __name__
    assert qualified_name(RegistryInvoiceJob) == f"{__name__}.RegistryInvoiceJob"
    assert qualified_name(handler_a) == f"{__name__}.handler_a"


def test_registry_names_are_sorted() -> None:
    names = REGISTRY.names()

    assert names == sorted(names)


# -- aliases ----------------------------------------------------------------------


def test_register_adds_an_alias_resolving_to_the_class() -> None:
    alias = "jobs.WelcomeEmailJob"

    kashq.register(alias, RegistryWelcomeEmailJob)

    entry = REGISTRY.resolve(alias)
    assert entry.target is RegistryWelcomeEmailJob
    assert entry.is_handler is False
    # the class keeps its own name too
    assert REGISTRY.resolve(RegistryWelcomeEmailJob.__kashq_name__).target is (
        RegistryWelcomeEmailJob
    )


def test_registering_the_same_alias_for_the_same_class_twice_is_allowed() -> None:
    alias = f"{PREFIX}.alias.same-twice"

    kashq.register(alias, RegistryInvoiceJob)
    kashq.register(alias, RegistryInvoiceJob)

    assert REGISTRY.resolve(alias).target is RegistryInvoiceJob


def test_registering_an_alias_for_a_different_class_raises_registry_error() -> None:
    alias = f"{PREFIX}.alias.taken"
    kashq.register(alias, RegistryWelcomeEmailJob)

    with pytest.raises(kashq.RegistryError, match="already registered") as info:
        kashq.register(alias, RegistryInvoiceJob)

    assert "RegistryWelcomeEmailJob" in str(info.value)
    assert "RegistryInvoiceJob" in str(info.value)
    assert REGISTRY.resolve(alias).target is RegistryWelcomeEmailJob


def test_fresh_registry_refuses_a_second_unrelated_class_under_one_name() -> None:
    registry = Registry()
    registry.add("jobs.Shared", RegistryWelcomeEmailJob, is_handler=False)

    with pytest.raises(kashq.RegistryError, match=r"'jobs\.Shared' is already registered"):
        registry.add("jobs.Shared", RegistryInvoiceJob, is_handler=False)

    assert registry.resolve("jobs.Shared").target is RegistryWelcomeEmailJob
    assert registry.names() == ["jobs.Shared"]


def test_fresh_registry_is_independent_of_the_global_one() -> None:
    registry = Registry()

    assert registry.names() == []
    assert RegistryWelcomeEmailJob.__kashq_name__ not in registry
    with pytest.raises(kashq.UnknownJobType):
        registry.resolve(RegistryWelcomeEmailJob.__kashq_name__)


def test_register_refuses_things_that_are_not_job_subclasses() -> None:
    alias = f"{PREFIX}.alias.not-a-job"

    with pytest.raises(kashq.RegistryError, match="takes a Job subclass"):
        kashq.register(alias, int)
    with pytest.raises(kashq.RegistryError, match="takes a Job subclass"):
        kashq.register(alias, NotAJob)
    with pytest.raises(kashq.RegistryError, match="takes a Job subclass"):
        kashq.register(alias, RegistryWelcomeEmailJob())  # type: ignore[arg-type]
    with pytest.raises(kashq.RegistryError, match="takes a Job subclass"):
        kashq.register(alias, handler_a)  # type: ignore[arg-type]

    assert alias not in REGISTRY


# -- handlers ---------------------------------------------------------------------


def test_handler_decorator_registers_the_function_and_returns_it() -> None:
    name = f"{PREFIX}.send_email"

    decorated = kashq.handler(name)(handler_a)

    assert decorated is handler_a
    entry = REGISTRY.resolve(name)
    assert entry.target is handler_a
    assert entry.is_handler is True


def test_handler_decorator_syntax_registers_a_function() -> None:
    name = f"{PREFIX}.decorator-syntax"

    @kashq.handler(name)
    def on_job(envelope: kashq.Envelope) -> str:
        return "ran"

    assert REGISTRY.resolve(name).target is on_job
    assert on_job(None) == "ran"  # type: ignore[arg-type]


def test_second_different_handler_under_same_name_raises_registry_error() -> None:
    name = f"{PREFIX}.handler-taken"
    kashq.handler(name)(handler_a)

    with pytest.raises(kashq.RegistryError, match="already registered to function"):
        kashq.handler(name)(handler_b)

    assert REGISTRY.resolve(name).target is handler_a


def test_same_handler_registered_twice_under_one_name_is_allowed() -> None:
    name = f"{PREFIX}.handler-twice"

    kashq.handler(name)(handler_b)
    kashq.handler(name)(handler_b)

    assert REGISTRY.resolve(name).target is handler_b


def test_handler_name_colliding_with_a_job_class_name_raises_registry_error() -> None:
    class_name = RegistryInvoiceJob.__kashq_name__

    with pytest.raises(kashq.RegistryError, match="already registered to class"):
        kashq.handler(class_name)(handler_a)

    entry = REGISTRY.resolve(class_name)
    assert entry.target is RegistryInvoiceJob
    assert entry.is_handler is False


def test_handler_refuses_a_non_callable() -> None:
    name = f"{PREFIX}.not-callable"

    with pytest.raises(kashq.RegistryError, match="must decorate a function"):
        kashq.handler(name)("not a function")  # type: ignore[arg-type]

    assert name not in REGISTRY


def test_fresh_registry_refuses_a_class_over_a_handler_and_vice_versa() -> None:
    registry = Registry()
    registry.add("jobs.fn", handler_a, is_handler=True)
    registry.add("jobs.cls", RegistryInvoiceJob, is_handler=False)

    with pytest.raises(kashq.RegistryError):
        registry.add("jobs.fn", RegistryInvoiceJob, is_handler=False)
    with pytest.raises(kashq.RegistryError):
        registry.add("jobs.cls", handler_a, is_handler=True)


# -- redefinition -------------------------------------------------------------------


def test_redefining_a_class_replaces_its_registration_and_aliases_follow() -> None:
    alias = f"{PREFIX}.alias.local-job"
    first = define_local_job()
    kashq.register(alias, first)

    second = define_local_job()

    assert first is not second
    assert first.__kashq_name__ == second.__kashq_name__
    assert second.__kashq_name__ == f"{__name__}.define_local_job.<locals>.RegistryLocalJob"
    assert REGISTRY.resolve(second.__kashq_name__).target is second
    assert REGISTRY.resolve(alias).target is second


def test_fresh_registry_redefinition_moves_every_alias_but_not_unrelated_names() -> None:
    registry = Registry()
    first, second = define_local_job(), define_local_job()
    registry.add(first.__kashq_name__, first, is_handler=False)
    registry.add("alias.one", first, is_handler=False)
    registry.add("alias.two", first, is_handler=False)
    registry.add("other", RegistryInvoiceJob, is_handler=False)

    registry.add(second.__kashq_name__, second, is_handler=False)

    assert registry.resolve(first.__kashq_name__).target is second
    assert registry.resolve("alias.one").target is second
    assert registry.resolve("alias.two").target is second
    assert registry.resolve("other").target is RegistryInvoiceJob


def test_redefined_handler_function_replaces_the_old_one() -> None:
    name = f"{PREFIX}.redefined-handler"

    def make() -> Callable[[Any], str]:
        def on_job(envelope: Any) -> str:
            return "x"

        return on_job

    old, new = make(), make()
    kashq.handler(name)(old)
    kashq.handler(name)(new)

    assert REGISTRY.resolve(name).target is new


# -- unknown names --------------------------------------------------------------------


def test_unknown_name_raises_unknown_job_type_mentioning_kashq_imports() -> None:
    name = f"{PREFIX}.NeverDefinedJob"

    with pytest.raises(kashq.UnknownJobType, match="KASHQ_IMPORTS") as info:
        REGISTRY.resolve(name)

    assert info.value.type_name == name
    assert repr(name) in str(info.value)
    assert isinstance(info.value, kashq.KashqError)


@pytest.mark.parametrize(
    "name",
    ["os.system", "builtins.eval", "subprocess.Popen", "builtins.__import__", "pickle.loads"],
)
def test_dangerous_importable_names_are_unknown(name: str) -> None:
    assert name not in REGISTRY
    with pytest.raises(kashq.UnknownJobType):
        REGISTRY.resolve(name)


def test_resolving_an_unknown_name_never_imports_its_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = "kashq_registry_probe_module"
    marker = tmp_path / "imported.txt"
    (tmp_path / f"{module}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('yes')\n"
        "import kashq\n"
        "class ProbeJob(kashq.Job):\n"
        "    def handle(self):\n"
        "        pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)

    with pytest.raises(kashq.UnknownJobType):
        REGISTRY.resolve(f"{module}.ProbeJob")

    assert module not in sys.modules
    assert not marker.exists()


# -- invalid names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["", " ", "   ", "\t", "has space", "line\nbreak", "x" * (MAX_NAME_LENGTH + 1), None, 5],
)
def test_invalid_names_raise_registry_error(name: Any) -> None:
    registry = Registry()

    with pytest.raises(kashq.RegistryError, match="job type name"):
        registry.add(name, RegistryInvoiceJob, is_handler=False)

    assert registry.names() == []


def test_invalid_names_are_refused_by_register_and_handler() -> None:
    with pytest.raises(kashq.RegistryError):
        kashq.register("", RegistryInvoiceJob)
    with pytest.raises(kashq.RegistryError):
        kashq.register("bad name", RegistryInvoiceJob)
    with pytest.raises(kashq.RegistryError):
        kashq.handler("x" * 256)(handler_a)
    with pytest.raises(kashq.RegistryError):
        kashq.handler("  ")(handler_a)


def test_name_of_exactly_max_length_is_accepted() -> None:
    registry = Registry()
    name = "x" * MAX_NAME_LENGTH

    registry.add(name, RegistryInvoiceJob, is_handler=False)

    assert registry.resolve(name).target is RegistryInvoiceJob


# -- __main__ scripts -------------------------------------------------------------------

SCRIPT = """\
import kashq
from kashq.registry import REGISTRY


class X(kashq.Job):
    n: int = 0

    def handle(self):
        pass


assert REGISTRY.resolve(X.__kashq_name__).target is X
print(X.__kashq_name__)
"""


def test_class_in_a_script_run_as_main_is_named_after_the_script(tmp_path: Path) -> None:
    (tmp_path / "myscript.py").write_text(SCRIPT)

    assert run_python(["myscript.py"], cwd=tmp_path) == "myscript.X"


def test_class_in_a_module_run_with_dash_m_is_named_after_the_module(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text(SCRIPT)

    assert run_python(["-m", "pkg.mod"], cwd=tmp_path) == "pkg.mod.X"


def test_importing_the_running_main_script_by_its_module_name_is_a_redefinition(
    tmp_path: Path,
) -> None:
    (tmp_path / "app.py").write_text(
        SCRIPT
        + textwrap.dedent(
            """\
            if __name__ == "__main__":
                import app

                print(REGISTRY.resolve("app.X").target is app.X)
            """
        )
    )

    assert run_python(["app.py"], cwd=tmp_path).splitlines() == ["app.X", "app.X", "True"]
