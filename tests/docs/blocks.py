"""Every fenced block of the README, CONTRIBUTING.md and ``docs/``, with what the tests do with it.

A block is run, compiled, parsed or compared according to its language and an
optional marker: an HTML comment on the line right above the fence, invisible
on GitHub and on the site::

    <!-- test: compile -- reason it cannot run -->

The first line of a marker holds its options (split like a shell line); any
further lines, up to ``-->``, are Python run before the block without being
shown (a hidden setup, such as a stand-in ``mailer``).

=================  ============================================================
option             meaning
=================  ============================================================
``compile``        python: compiled only; a reason after ``--`` is required
``skip``           bash, json, toml, yaml: not run; a reason after ``--`` is required
``file=PATH``      python: written to PATH in the page's directory, then run
``continue``       python: run after the page's previous python block's code
``output``         the block is what the previous run block prints (compared)
``exit=N``         the exit status the block ends with (default 0)
``timeout=N``      seconds the block may take (default 60)
``stop-after=N``   bash: sent SIGTERM after N seconds; must then exit 0
``instead=CMD``    bash: run CMD in place of the block (say why after ``--``)
``env=NAME=VALUE`` an environment variable for this block (repeatable)
``cwd=DIR``        run in DIR, a directory of its own inside the page's
=================  ============================================================

What happens without a marker, by language: ``python`` runs; ``bash``/``sh``/
``console`` runs when a line calls ``kashq``; ``json``, ``toml`` and ``yaml`` are
parsed; anything else (``text``, ``ini``, no language) is shown only.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
SHELL = ("bash", "sh", "console", "shell")
PYTHON = ("python", "py")
PARSED = ("json", "toml", "yaml", "yml")
_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
# A command word ``kashq`` (or a path ending in it, or ``-m kashq``) anywhere on a shell line.
_KASHQ_WORD = re.compile(r"(?:^|[\s;&|(!`])(?:\S*/)?kashq(?=\s|$|[;&|)])")
_SNIPPET = re.compile(r'^--8<-- "(?P<path>[^"]+)"$', re.MULTILINE)
_NOT_A_CALL = re.compile(r"^\s*(?:#|(?:\S*/)?(?:pip3?|pipx|uv)\s)")  # a comment, an install
_FLAGS = {"compile", "skip", "continue", "output"}
_VALUED = {"file", "exit", "timeout", "stop-after", "instead", "env", "cwd"}


class MarkerError(ValueError):
    """A marker the collector cannot honour: one line naming the page and line."""


@dataclass
class Block:
    """One fenced block: where it is, its language and code, and its marker's options."""

    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    options: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    setup: str = ""

    @property
    def where(self) -> str:
        return f"{_name(self.path)}:{self.line}"

    @property
    def is_python(self) -> bool:
        return self.lang in PYTHON

    @property
    def is_shell(self) -> bool:
        return self.lang in SHELL

    @property
    def calls_kashq(self) -> bool:
        lines = (line.split(" #", 1)[0] for line in self.code.splitlines())
        return any(_KASHQ_WORD.search(line) for line in lines if not _NOT_A_CALL.match(line))

    @property
    def kind(self) -> str:
        """What the tests do with the block: run, compile, parse, compare, skip or show."""
        if "output" in self.options:
            return "compare"
        if self.is_python:
            return "compile" if "compile" in self.options else "run"
        if self.is_shell:
            if "skip" in self.options:
                return "skip"
            return "run" if self.calls_kashq or "instead" in self.options else "show"
        if self.lang in PARSED:
            return "skip" if "skip" in self.options else "parse"
        return "show"


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def pages() -> list[Path]:
    """Every Markdown file whose blocks are tested, README first."""
    found = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [path for path in found if path.exists()]


def _parse_marker(text: str, where: str) -> tuple[dict[str, str], dict[str, str], str, str]:
    first, _, setup = text.partition("\n")
    head, _, reason = first.partition(" -- ")
    if first.rstrip().endswith(" --"):
        head, reason = first.rstrip()[:-3], ""
    options: dict[str, str] = {}
    env: dict[str, str] = {}
    for word in shlex.split(head):
        name, eq, value = word.partition("=")
        if name in _FLAGS and not eq:
            options[name] = ""
        elif name == "env" and eq and "=" in value:
            key, _, val = value.partition("=")
            env[key] = val
        elif name in _VALUED and eq and value:
            options[name] = value
        else:
            raise MarkerError(f"{where}: unknown marker option {word!r}")
    return options, env, reason.strip(), setup


def _check(block: Block) -> None:
    opts = block.options
    needs_reason = ("compile" in opts or "skip" in opts or "instead" in opts) and not block.reason
    if needs_reason:
        raise MarkerError(f"{block.where}: 'compile', 'skip' and 'instead' need a reason after --")
    if "compile" in opts and not block.is_python:
        raise MarkerError(f"{block.where}: 'compile' is for python blocks")
    if "skip" in opts and block.is_python:
        raise MarkerError(f"{block.where}: a python block is at least compiled: use 'compile'")
    if ("stop-after" in opts or "instead" in opts) and not block.is_shell:
        raise MarkerError(f"{block.where}: 'stop-after' and 'instead' are for shell blocks")
    if ("file" in opts or "continue" in opts) and not block.is_python:
        raise MarkerError(f"{block.where}: 'file' and 'continue' are for python blocks")
    if block.setup and not block.is_python:
        raise MarkerError(f"{block.where}: hidden setup code is for python blocks")


def collect(path: Path) -> list[Block]:
    """The fenced blocks of one page, in order, each with its marker applied."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    marker: tuple[int, str] | None = None  # (line index of its last line, text)
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("<!-- test:"):
            start = i
            text = line.lstrip()[len("<!-- test:") :]
            while "-->" not in text and i + 1 < len(lines):
                i += 1
                text += "\n" + lines[i]
            if "-->" not in text:
                raise MarkerError(f"{_name(path)}:{start + 1}: marker never closed")
            marker = (i, text[: text.index("-->")].lstrip(" ").rstrip())
            i += 1
            continue
        match = _FENCE.match(line)
        if match is None:
            if marker is not None and line.strip():
                raise MarkerError(
                    f"{_name(path)}:{marker[0] + 1}: a marker must sit right above a fenced block"
                )
            i += 1
            continue
        fence, indent, opening = match["fence"], len(match["indent"]), i + 1
        lang = (match["info"].split() or [""])[0].lower()
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        block = Block(path, opening, lang, _expand_snippets("\n".join(body) + "\n"))
        if marker is not None:
            where = f"{_name(path)}:{marker[0] + 1}"
            block.options, block.env, block.reason, block.setup = _parse_marker(marker[1], where)
            marker = None
            _check(block)
        blocks.append(block)
        i += 1
    if marker is not None:
        raise MarkerError(f"{_name(path)}:{marker[0] + 1}: marker on no block")
    return blocks


def _expand_snippets(code: str) -> str:
    """A ``--8<-- "path"`` line (pymdownx.snippets) stands for that file of the repository."""
    return _SNIPPET.sub(lambda m: (ROOT / m["path"]).read_text(encoding="utf-8").rstrip("\n"), code)


def parse(block: Block) -> None:
    """Parse a json or toml block; raise ``ValueError`` if it is not valid."""
    if block.lang == "toml":
        tomllib.loads(block.code)
        return
    if block.lang in ("yaml", "yml"):
        import yaml  # mkdocs needs PyYAML, so the docs extra brings it

        try:
            list(yaml.safe_load_all(block.code))
        except yaml.YAMLError as exc:
            raise ValueError(str(exc)) from exc
        return
    try:
        json.loads(block.code)
    except json.JSONDecodeError:
        for line in block.code.splitlines():  # one JSON document per line (log lines)
            if line.strip():
                json.loads(line)


# Output comparison ---------------------------------------------------------

_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)?")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DURATION = re.compile(r"\b\d+(?:\.\d+)?(?:ms|µs|s)\b")
_MEASURED = re.compile(r"\b(\w+_(?:ms|s)=)\d+(?:\.\d+)?")  # duration_ms=0.048
# host:pid of a process (an event's worker column); not an address's host:port
_HOST_PID = re.compile(r"(?<![/@\w.-])[A-Za-z][\w.-]*:\d+\b(?!/)")
_LEADER = re.compile(r" ?\.{2,} ?")
_SPACES = re.compile(r"[ \t]+")
_TABLE_RULE = re.compile(r"[━─═]+")


def normalize(text: str, replacements: dict[str, str] | None = None) -> list[str]:
    """Lines with times, ids, durations, host:pid, dot leaders and table widths made comparable."""
    for real, shown in (replacements or {}).items():
        text = text.replace(real, shown)
    out = []
    for raw in text.splitlines():
        line = _TIMESTAMP.sub("<time>", raw)
        line = _UUID.sub("<id>", line)
        line = _DURATION.sub("<duration>", line)
        line = _MEASURED.sub(r"\1<n>", line)
        line = _HOST_PID.sub("<host:pid>", line)
        line = _LEADER.sub(" … ", line)
        line = _TABLE_RULE.sub("─", line)
        out.append(_SPACES.sub(" ", line).strip())
    while out and not out[-1]:
        out.pop()
    return out


def matches(expected: str, actual: str, replacements: dict[str, str] | None = None) -> bool:
    """Whether ``actual`` reads as ``expected``; a line ``...`` there stands for any lines.

    Apart from the ``...`` lines, every expected line must be there, in order,
    and nothing else may come between them.
    """
    want = normalize(expected)
    have = normalize(actual, replacements)
    return _match(want, have)


def _match(want: list[str], have: list[str]) -> bool:
    if not want:
        return not have
    head = want[0]
    if head in ("...", "…"):
        return any(_match(want[1:], have[i:]) for i in range(len(have) + 1))
    return bool(have) and have[0] == head and _match(want[1:], have[1:])
