"""Lua scripts from a package's ``lua/`` folder, run by SHA1 (EVALSHA).

Every kashq script (queues, locks, events) goes through this class, and a lost
script cache is recovered by the one retry policy (:mod:`.retry`), which calls
:meth:`LuaScripts.load`. redis-py's ``Script`` objects are not used: they
reload on NOSCRIPT by themselves (a second policy, blind to a lost connection
in the same call) and add a ``SCRIPT EXISTS`` round trip to every pipeline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any


class LuaScripts:
    """The scripts ``names`` of ``package`` (``<package>/lua/<name>.lua``): sources and SHA1s.

    A name of ``joined`` is a script made of several files, one after the other
    (``{"push_once": ("push_once", "push")}``: a prelude that may ``return`` early,
    then the script it guards); ``"<package>:<name>"`` is a file of another package.
    """

    def __init__(
        self,
        package: str,
        names: Iterable[str],
        joined: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        folder = resources.files(package).joinpath("lua")

        def read(name: str) -> str:
            where, _, name = name.rpartition(":")
            found = resources.files(where).joinpath("lua") if where else folder
            return found.joinpath(f"{name}.lua").read_text("utf-8")

        self._sources = {name: read(name) for name in names}
        for name, parts in (joined or {}).items():
            self._sources[name] = "\n".join(map(read, parts))
        self._shas = {
            name: hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
            for name, source in self._sources.items()
        }

    def load(self, client: Any) -> None:
        """Load every script into the script cache of ``client``'s server (every primary
        of a cluster)."""
        for source in self._sources.values():
            client.script_load(source)

    def command(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> list[Any]:
        """The whole ``EVALSHA`` command running ``name``, for callers that send it themselves."""
        return ["EVALSHA", self._shas[name], len(keys), *keys, *args]

    def run(self, target: Any, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run (or, on a pipeline, queue) ``name`` on ``target``, anything with ``evalsha``."""
        return target.evalsha(self._shas[name], len(keys), *keys, *args)
