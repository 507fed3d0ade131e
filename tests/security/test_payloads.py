"""Nothing read from a queue becomes code but a registered job type, validated.

Jobs are forged the way someone with write access to Redis would: any text
stored where envelopes go, on a real Redis queue. A real :class:`Worker`
takes them; each must end in the failed_jobs table (a real SQLite store) with
a one-line reason, and nothing it names may have run: every command below
would create a marker file.
"""

from __future__ import annotations

import ast
import base64
import os
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import kashq
from kashq import Job, Outcome, Worker, WorkerOptions
from kashq.drivers.redis import RedisDriver
from kashq.failed.database import DatabaseFailedJobStore
from tests.security.forged import envelope_text, forged
from tests.support.redis import redis_driver

PACKAGE = Path(kashq.__file__).parent
RAN: list[str] = []


class Greet(Job):
    """A registered job: the only kind of thing a forged envelope can run."""

    name: str

    def handle(self) -> None:
        RAN.append(self.name)


class Pwned:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def driver() -> Iterator[RedisDriver]:
    with redis_driver() as redis:
        yield redis


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DatabaseFailedJobStore]:
    failed = DatabaseFailedJobStore(f"sqlite:///{tmp_path / 'failed.sqlite'}")
    yield failed
    failed.close()


@pytest.fixture
def worker(driver: RedisDriver, store: DatabaseFailedJobStore) -> Worker:
    return Worker(driver, store, WorkerOptions(connection="redis", tries=1))


def take_one(worker: Worker, driver: RedisDriver) -> Outcome:
    """Run the one queued job; the queue is empty afterwards (failed jobs are not retried)."""
    outcome = worker.run_next()
    assert outcome is not None, "the forged job was not delivered"
    assert driver.sizes(["default"])["default"].total == 0
    return outcome


# --------------------------------------------------------------------------- type names


def commands(marker: Path) -> dict[str, object]:
    """What each dangerous callable would be given, were a type name ever resolved to it."""
    return {
        "os.system": {"command": f"touch {marker}"},
        "builtins.eval": {"source": f"open({str(marker)!r}, 'w')"},
        "builtins.exec": {"source": f"open({str(marker)!r}, 'w')"},
        "subprocess.Popen": {"args": ["touch", str(marker)]},
        "pickle.loads": {"data": base64.b64encode(pickle.dumps(Pwned(marker))).decode()},
        "posix.system": {"command": f"touch {marker}"},
    }


@pytest.mark.parametrize(
    "type_name",
    ["os.system", "builtins.eval", "builtins.exec", "subprocess.Popen", "pickle.loads",
     "posix.system"],
)  # fmt: skip
def test_a_type_name_of_a_dangerous_callable_is_failed_cleanly_and_runs_nothing(
    type_name: str, driver: RedisDriver, worker: Worker, store: DatabaseFailedJobStore,
    tmp_path: Path,
) -> None:  # fmt: skip
    marker = tmp_path / "pwned"
    driver.push(forged(envelope_text(type_name, commands(marker)[type_name])))

    assert take_one(worker, driver) is Outcome.FAILED

    [record] = store.all()
    assert record.job_type == type_name
    assert record.error.startswith(f"unknown job type {type_name!r}: no Job class or handler")
    assert "\n" not in record.error
    assert not marker.exists()


def test_resolving_a_type_name_never_imports_its_module(
    driver: RedisDriver, worker: Worker, store: DatabaseFailedJobStore, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    marker = tmp_path / "imported"
    (tmp_path / "kashq_trap.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # importable, were anything to try
    driver.push(forged(envelope_text("kashq_trap.Job", {})))

    assert take_one(worker, driver) is Outcome.FAILED

    assert not marker.exists() and "kashq_trap" not in sys.modules
    assert "unknown job type 'kashq_trap.Job'" in store.all()[0].error


@pytest.mark.parametrize("protocol", [0, pickle.HIGHEST_PROTOCOL])
def test_a_pickle_stored_as_the_job_is_failed_as_undecodable_and_never_unpickled(
    protocol: int, driver: RedisDriver, worker: Worker, store: DatabaseFailedJobStore,
    tmp_path: Path,
) -> None:  # fmt: skip
    marker = tmp_path / "pwned"
    driver.push(forged(pickle.dumps(Pwned(marker), protocol=protocol)))

    assert take_one(worker, driver) is Outcome.FAILED

    [record] = store.all()
    assert record.job_type == "(undecodable)"
    assert record.error.startswith("envelope is not valid JSON")
    assert "\n" not in record.error
    assert not marker.exists()


def test_a_registered_job_gets_its_declared_fields_and_nothing_else(
    driver: RedisDriver, worker: Worker, store: DatabaseFailedJobStore
) -> None:
    RAN.clear()
    payload = {
        "name": "ada",
        "handle": "os.system",
        "__class__": "os.system",
        "model_config": {"extra": "allow"},
        "tries": 99,
    }
    driver.push(forged(envelope_text(Greet.__kashq_name__, payload)))

    assert take_one(worker, driver) is Outcome.COMPLETED

    assert RAN == ["ada"]  # its own handle(), with its own field
    assert Greet.tries is None and store.all() == []


# --------------------------------------------------------------------------- malformed envelopes


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 100_000,  # nested past the recursion limit
        envelope_text("x.Y", {}, created_at=10**400),  # a float cannot hold it
        envelope_text("x.Y", {}, timeout_s=float("inf")),
        envelope_text("x.Y", {}, available_at=float("nan")),
        envelope_text("x.Y", {"text": "\ud800"}),  # a lone surrogate: no UTF-8 store takes it
        b"\xff\xfe\x00garbage",
    ],
    ids=["deep", "huge-int", "infinite", "nan", "lone-surrogate", "not-utf8"],
)
def test_a_malformed_envelope_is_failed_in_one_line_and_never_redelivered(
    raw: str | bytes, driver: RedisDriver, worker: Worker, store: DatabaseFailedJobStore
) -> None:
    driver.push(forged(raw))

    assert take_one(worker, driver) is Outcome.FAILED

    [record] = store.all()
    assert "\n" not in record.error
    assert record.error.startswith(("envelope is not valid JSON", "malformed envelope"))


def test_a_payload_nested_deeper_than_python_can_decode_is_failed_in_one_line(
    driver: RedisDriver, worker: Worker, store: DatabaseFailedJobStore
) -> None:
    nested = "[" * 5000 + "]" * 5000
    raw = envelope_text("x.Y", {}).replace('"payload": {}', f'"payload": {{"a": {nested}}}')
    driver.push(forged(raw))

    assert take_one(worker, driver) is Outcome.FAILED

    assert store.all()[0].error.startswith("envelope is not valid JSON: maximum recursion depth")


# --------------------------------------------------------------------------- the package itself

UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle",
                  "jsonpickle", "yaml"}  # fmt: skip
UNSAFE_CALLS = {"eval", "exec", "compile", "__import__"}  # the builtins, bare or builtins.*
IMPORTERS = {"__init__.py", "imports.py"}  # a fixed lazy table; the --import modules


def test_the_package_never_unpickles_evaluates_or_imports_by_a_name_it_was_sent() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [f"{where}: import {a.name}" for a in node.names if _unsafe(a.name)]
            elif isinstance(node, ast.ImportFrom) and _unsafe(node.module or ""):
                found.append(f"{where}: from {node.module} import ...")
            elif isinstance(node, ast.Call):
                name = _called(node.func)
                imports = name.endswith("import_module") and str(where) not in IMPORTERS
                if name.removeprefix("builtins.") in UNSAFE_CALLS or imports:
                    found.append(f"{where}:{node.lineno}: {name}()")
    assert found == []


def _unsafe(module: str) -> bool:
    return module.partition(".")[0] in UNSAFE_MODULES


def _called(func: ast.expr) -> str:
    """``name`` or ``module.name`` of a call (``""`` for anything fancier)."""
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return ""
