"""The job type registry: the only way a type name from a queue becomes code.

Every :class:`kashq.Job` subclass registers itself under
``"<module>.<QualName>"``; :func:`register` adds aliases (Kashvi's
``queue.Register``) and :func:`handler` registers plain functions for named
jobs (GoFlow's ``worker.Handle``). Decoding looks names up here and nowhere
else: a name that is not registered is refused, never imported, never
unpickled.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kashq.exceptions import RegistryError, UnknownJobType

MAX_NAME_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Entry:
    """What a registered name stands for: a Job class or a handler function."""

    name: str
    target: Any
    is_handler: bool


def module_name(obj: Any) -> str:
    """The importable module of ``obj``, even when it was defined in ``__main__``.

    A script run as ``python app.py`` defines its classes in ``__main__``; a
    worker in another process knows that module as ``app``. Using the real name
    keeps dispatcher and worker agreeing on type names.
    """
    name: str = obj.__module__
    if name != "__main__":
        return name
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return str(spec.name)
    filename = getattr(main, "__file__", None)
    return Path(filename).stem if filename else name


def qualified_name(obj: Any) -> str:
    """``"<module>.<QualName>"`` for a class or function."""
    return f"{module_name(obj)}.{obj.__qualname__}"


class Registry:
    """A thread-safe map from type names to Job classes and handler functions."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()

    def add(self, name: str, target: Any, *, is_handler: bool) -> None:
        """Register ``target`` under ``name``; a different owner of the name is an error.

        Redefining the same class or function (same module and qualified name:
        a module reload, a class defined inside a function) replaces the old
        one, together with every alias that pointed at it.
        """
        _check_name(name)
        with self._lock:
            current = self._entries.get(name)
            if current is not None and current.target is not target:
                if not _is_redefinition(current.target, target):
                    raise RegistryError(
                        f"job type name {name!r} is already registered to "
                        f"{_describe(current.target)}; cannot register {_describe(target)}"
                    )
                for key, entry in list(self._entries.items()):
                    if entry.target is current.target:
                        self._entries[key] = Entry(key, target, entry.is_handler)
            self._entries[name] = Entry(name, target, is_handler)

    def resolve(self, name: str) -> Entry:
        """The entry for ``name``, or :class:`UnknownJobType`."""
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownJobType(name)
        return entry

    def name_of(self, target: Any) -> str | None:
        """The name ``target`` (a class or handler function) was first registered under."""
        return next((e.name for e in self._entries.values() if e.target is target), None)

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


REGISTRY = Registry()


def register(name: str, cls: type[Any]) -> None:
    """Register ``cls`` under an extra name, e.g. ``register("jobs.WelcomeEmailJob", Cls)``."""
    from kashq.job import Job

    if not (isinstance(cls, type) and issubclass(cls, Job)):
        raise RegistryError(f"register() takes a Job subclass, got {cls!r}")
    REGISTRY.add(name, cls, is_handler=False)


def handler(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a function ``fn(envelope)`` as the handler of named jobs ``name``."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(fn):
            raise RegistryError(f"handler({name!r}) must decorate a function, got {fn!r}")
        REGISTRY.add(name, fn, is_handler=True)
        return fn

    return decorate


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        raise RegistryError(f"job type name must be 1-{MAX_NAME_LENGTH} characters: {name!r}")
    if any(ch.isspace() for ch in name):
        raise RegistryError(f"job type name must not contain whitespace: {name!r}")


def _is_redefinition(old: Any, new: Any) -> bool:
    return (
        isinstance(old, type) == isinstance(new, type)
        and module_name(old) == module_name(new)
        and getattr(old, "__qualname__", None) == getattr(new, "__qualname__", None)
    )


def _describe(target: Any) -> str:
    kind = "class" if isinstance(target, type) else "function"
    return f"{kind} {qualified_name(target)}"
