"""Every example on every page runs: the README, CONTRIBUTING.md and the docs site.

Each page is one test. Its blocks run in order in a directory of the page's
own (see :mod:`tests.docs.runner`); a block marked ``compile`` is compiled
only, and one marked ``skip`` carries its reason (:mod:`tests.docs.blocks`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.docs import blocks, runner
from tests.support import report

PAGES = blocks.pages()


@pytest.fixture(params=PAGES, ids=[str(p.relative_to(blocks.ROOT)) for p in PAGES])
def page_path(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


def test_the_page_s_examples_do_what_it_says(
    page_path: Path, page_addresses: dict[str, str], tmp_path: Path
) -> None:
    page = runner.new_page(tmp_path / "page", page_addresses)
    runner.run_page(page, blocks.collect(page_path))


def test_every_block_is_accounted_for() -> None:
    """Count what happens to the blocks, and list each one that is not run, with its reason."""
    counts: Counter[str] = Counter()
    not_run: list[str] = []
    for path in PAGES:
        for block in blocks.collect(path):  # raises on a marker it cannot honour
            counts[block.kind] += 1
            if block.kind in ("compile", "skip"):
                not_run.append(f"  {block.kind:8} {block.where}: {block.reason}")
    total = sum(counts.values())
    summary = ", ".join(f"{counts[k]} {k}" for k in sorted(counts))
    report.add(f"docs examples: {total} fenced blocks: {summary}")
    for line in not_run:
        report.add(line)
    assert counts["run"] > 0
