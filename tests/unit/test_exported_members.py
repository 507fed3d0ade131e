"""``kashq.__all__`` is complete, resolvable and kept in ruff's RUF022 order."""

from __future__ import annotations

import inspect
import re
import types

import kashq


def _natural_key(name: str) -> tuple[object, ...]:
    """Natural sort: runs of digits compare as numbers (``x2`` < ``x10``)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def isort_style_key(name: str) -> tuple[int, tuple[object, ...]]:
    """Ruff RUF022's "isort-style" order.

    SCREAMING_SNAKE_CASE first, then CamelCase, then everything else; a natural
    sort inside each group.
    """
    if len(name) > 1 and name.isupper():
        category = 0
    elif name[:1].isupper():
        category = 1
    else:
        category = 2
    return category, _natural_key(name)


def _defined_in_kashq(obj: object) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == "kashq" or module.startswith("kashq.")


def test_isort_style_key_mirrors_ruff_order() -> None:
    names = ["zeta", "Alpha", "BETA", "__version__", "A", "job10", "job2", "Job", "MAX_SIZE"]

    assert sorted(names, key=isort_style_key) == [
        "BETA",
        "MAX_SIZE",
        "A",
        "Alpha",
        "Job",
        "__version__",
        "job2",
        "job10",
        "zeta",
    ]


def test_every_name_in_all_exists_on_the_module() -> None:
    missing = [name for name in kashq.__all__ if not hasattr(kashq, name)]

    assert missing == []


def test_all_has_no_duplicates() -> None:
    assert len(kashq.__all__) == len(set(kashq.__all__))


def test_all_is_sorted_isort_style() -> None:
    assert kashq.__all__ == sorted(kashq.__all__, key=isort_style_key)


def test_star_import_provides_every_name_in_all() -> None:
    namespace: dict[str, object] = {}
    exec("from kashq import *", namespace)

    for name in kashq.__all__:
        assert namespace[name] is getattr(kashq, name)


def test_every_public_class_and_function_defined_in_kashq_is_exported() -> None:
    public = {
        name: obj
        for name, obj in vars(kashq).items()
        if not name.startswith("_") and not isinstance(obj, types.ModuleType)
    }
    unexported = sorted(
        name
        for name, obj in public.items()
        if (inspect.isclass(obj) or inspect.isfunction(obj))
        and _defined_in_kashq(obj)
        and name not in kashq.__all__
    )

    assert unexported == []


def test_every_public_instance_of_a_kashq_class_is_exported() -> None:
    unexported = sorted(
        name
        for name, obj in vars(kashq).items()
        if not name.startswith("_")
        and not isinstance(obj, types.ModuleType)
        and not inspect.isclass(obj)
        and not inspect.isroutine(obj)
        and _defined_in_kashq(type(obj))
        and name not in kashq.__all__
    )

    assert unexported == []


def test_exported_classes_and_functions_come_from_kashq() -> None:
    foreign = sorted(
        name
        for name in kashq.__all__
        if (inspect.isclass(obj := getattr(kashq, name)) or inspect.isfunction(obj))
        and not _defined_in_kashq(obj)
    )

    assert foreign == []


def test_no_submodule_is_exported() -> None:
    modules = [name for name in kashq.__all__ if isinstance(getattr(kashq, name), types.ModuleType)]

    assert modules == []


def test_version_is_exported_as_a_string() -> None:
    assert "__version__" in kashq.__all__
    assert isinstance(kashq.__version__, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", kashq.__version__)


def test_sharded_driver_is_exported_and_sharded_queue_is_another_name_for_it() -> None:
    from kashq.drivers.sharded import ShardedDriver

    assert kashq.ShardedDriver is ShardedDriver
    assert kashq.ShardedQueue is ShardedDriver
    assert {"ShardedDriver", "ShardedQueue"} <= set(kashq.__all__)
