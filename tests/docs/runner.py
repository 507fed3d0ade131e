"""Run one page's blocks in order, in a directory of its own, against real servers.

Pages show the addresses a reader would type; the runner points them at the
test servers (and maps them back in the output it compares):

=================================  ============================================
shown on the page                  run against
=================================  ============================================
``redis://localhost:6379/0``       a private ``redis-server``, emptied per page
``redis://127.0.0.1:6379/0``       (the default ``KASHQ_REDIS_URL``) the same
``redis://localhost:6381/0``       three more private servers, for sharding
``redis://localhost:6382/0``       (emptied per page)
``redis://localhost:6383/0``
``redis+cluster://localhost:7000``  a private three-master Redis Cluster
``postgresql://localhost/app``     a fresh PostgreSQL schema per page
``mysql://root@localhost/app``     a fresh MariaDB database per page
=================================  ============================================

Every page starts in an empty directory holding a copy of ``examples/``, with
no ``KASHQ_*`` variable set but ``KASHQ_REDIS_URL`` (the private server), so
the default connection is a new ``kashq.sqlite`` there. Each shown address
maps to a real one spelled the same way (scheme, and ``localhost`` or
``127.0.0.1``), so what kashq prints maps back to what a reader would see.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.docs.blocks import ROOT, Block, matches, parse

REDIS = ("redis://127.0.0.1:6379/0", "redis://localhost:6379/0")  # the default first
SHARDS = ("redis://localhost:6381/0", "redis://localhost:6382/0", "redis://localhost:6383/0")
CLUSTER = "redis+cluster://localhost:7000"
POSTGRES = ("postgresql+psycopg://localhost/app", "postgresql://localhost/app")
MARIADB = ("mysql+pymysql://root@localhost/app", "mysql://root@localhost/app")
DEFAULT_TIMEOUT_S = 60.0


def spelled_as(shown: str, real: str) -> str:
    """``real`` with the scheme and host name of ``shown``: one real spelling per shown one."""
    _, _, rest = real.partition("://")
    host = "localhost" if "://localhost" in shown else "127.0.0.1"
    if "@127.0.0.1" in rest or rest.startswith("127.0.0.1"):
        rest = rest.replace("127.0.0.1", host, 1)
    return f"{shown.partition('://')[0]}://{rest}"


class ExampleFailed(AssertionError):
    """A block that did not do what its page says."""


@dataclass
class Page:
    """The state one page's blocks share: a directory, an environment, the addresses."""

    directory: Path
    env: dict[str, str]
    addresses: dict[str, str]  # shown -> real
    last_output: str | None = None  # what the last run block printed, for an output block
    last_python: str = ""  # the last python block's program, for a ``continue`` block

    def real(self, text: str) -> str:
        for shown in sorted(self.addresses, key=len, reverse=True):
            text = text.replace(shown, self.addresses[shown])
        return text

    @property
    def shown(self) -> dict[str, str]:
        return {real: shown for shown, real in self.addresses.items()}


def new_page(directory: Path, addresses: Mapping[str, str]) -> Page:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "examples", directory / "examples", dirs_exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KASHQ_")}
    env.pop("COLUMNS", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(directory)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["KASHQ_REDIS_URL"] = addresses[REDIS[0]]
    return Page(directory, env, dict(addresses))


def run_block(page: Page, block: Block) -> None:
    """Do what the block's kind asks; raise :class:`ExampleFailed` if it does not hold."""
    kind = block.kind
    if kind == "compare":
        _compare(page, block)
    elif kind == "parse":
        try:
            parse(block)
        except ValueError as exc:
            raise ExampleFailed(f"{block.where}: not valid {block.lang}: {exc}") from exc
    elif kind == "compile":
        try:
            compile(_program(page, block), block.where, "exec")
        except SyntaxError as exc:
            raise ExampleFailed(f"{block.where}: does not compile: {exc}") from exc
    elif kind == "run" and block.is_python:
        _run_python(page, block)
    elif kind == "run":
        _run_shell(page, block)


def _program(page: Page, block: Block) -> str:
    """The block's code behind its hidden setup (and the previous program, for ``continue``)."""
    code = page.real(f"{block.setup}\n{block.code}" if block.setup else block.code)
    if "continue" in block.options:
        code = page.last_python + "\n" + code
    page.last_python = code
    return code


def _run_python(page: Page, block: Block) -> None:
    code = _program(page, block)
    target = _cwd(page, block) / block.options.get("file", "example.py")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(code, encoding="utf-8")
    _finish(page, block, [sys.executable, str(target)])


def _run_shell(page: Page, block: Block) -> None:
    script = block.options.get("instead", block.code)
    _finish(page, block, ["bash", "-e", "-o", "pipefail", "-c", page.real(script)])


def _cwd(page: Page, block: Block) -> Path:
    where = page.directory / block.options.get("cwd", ".")
    where.mkdir(parents=True, exist_ok=True)
    return where


def _finish(page: Page, block: Block, argv: list[str]) -> None:
    env = {**page.env, **{k: page.real(v) for k, v in block.env.items()}}
    timeout_s = float(block.options.get("timeout", DEFAULT_TIMEOUT_S))
    stop_after = block.options.get("stop-after")
    proc = subprocess.Popen(
        argv,
        cwd=_cwd(page, block),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        if stop_after is not None:
            try:
                out, _ = proc.communicate(timeout=float(stop_after))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGTERM)
                out, _ = proc.communicate(timeout=timeout_s)
        else:
            out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        message = f"{block.where}: still running after {timeout_s:g}s\n{_tail(out)}"
        raise ExampleFailed(message) from None
    finally:
        _reap(proc)
    page.last_output = out
    want = int(block.options.get("exit", "0"))
    if proc.returncode != want:
        raise ExampleFailed(
            f"{block.where}: exited {proc.returncode}, expected {want}\n{_tail(out)}"
        )


def _reap(proc: subprocess.Popen[str]) -> None:
    # Also whatever the block left running in its session (a worker started with &).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _compare(page: Page, block: Block) -> None:
    if page.last_output is None:
        raise ExampleFailed(f"{block.where}: an output block with no run block before it")
    if not matches(block.code, page.last_output, page.shown):
        raise ExampleFailed(
            f"{block.where}: the page shows\n{block.code}\nbut the example printed\n"
            f"{page.last_output}"
        )


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def run_page(page: Page, blocks: list[Block]) -> None:
    for block in blocks:
        run_block(page, block)
