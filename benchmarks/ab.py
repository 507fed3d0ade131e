"""An A/B of the ``queue:work`` drain: two kashq source trees taking turns in one run.

    python benchmarks/ab.py BEFORE AFTER [--jobs N] [--rounds R] [--workers W]
                            [--events on|off] [--job noop|incr]

BEFORE and AFTER are checkouts of kashq (``git worktree add --detach
/tmp/before <rev>`` makes one). Each round drains N queued jobs with the real
``kashq queue:work --workers W`` of each tree in turn, the order alternating
from round to round, measured as ``costs.py`` measures (between 10% and 90%
done, with the CPU per job of the worker processes and of the Redis server).
The worker processes import kashq from the tree (it goes first on their
``PYTHONPATH``; the line "workers import kashq from" proves it); the jobs are
dispatched by this checkout, whose envelopes both read.

Printed: each drain, then per tree the median rate, its ratio to BEFORE's, and
the median worker CPU per job. The rounds share the machine's moods; compare
the ratios, and read the spread of the runs before calling a gap real.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from common import private_redis
from costs import measure
from peer_systems.harness import HERE, Bench
from rich.console import Console
from rich.table import Table

console = Console(width=110)


class TreeBench(Bench):
    """A :class:`Bench` whose worker processes import kashq from ``tree``."""

    def __init__(self, tree: Path, url: str, n: int) -> None:
        super().__init__(url, n, runs=1, samples=0)
        self.tree = tree

    def env(self, url: str) -> dict[str, str]:
        env = super().env(url)
        env["PYTHONPATH"] = f"{self.tree}{os.pathsep}{env['PYTHONPATH']}"
        return env

    def imported_from(self) -> Path:
        """Where a worker process of this tree finds kashq (run from the benchmarks' folder,
        as the workers are)."""
        code = "import kashq, pathlib; print(pathlib.Path(kashq.__file__).resolve().parent.parent)"
        found = subprocess.run(
            [sys.executable, "-c", code], env=self.env(self.url), cwd=HERE,
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return Path(found.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs=2, type=Path, metavar="TREE", help="BEFORE, then AFTER")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--events", choices=["on", "off"], default="on")
    parser.add_argument("--job", choices=["noop", "incr"], default="noop")
    args = parser.parse_args()
    trees = [tree.resolve() for tree in args.trees]
    for tree in trees:
        if not (tree / "kashq" / "__init__.py").is_file():
            parser.error(f"{tree} is not a kashq source tree (no kashq/__init__.py)")
    with private_redis() as url:
        db_url = url.rsplit("/", 1)[0] + "/1"
        os.environ["BENCH_REDIS_URL"] = db_url  # the job modules read it on import
        benches = [TreeBench(tree, db_url, args.jobs) for tree in trees]
        for bench in benches:
            found = bench.imported_from()
            console.print(f"workers import kashq from {found}")
            if found != bench.tree:
                raise SystemExit(f"the workers of {bench.tree} would import kashq from {found}")
        runs: dict[Path, list[tuple[float, ...]]] = {tree: [] for tree in trees}
        for round_ in range(args.rounds):
            for bench in benches if round_ % 2 == 0 else benches[::-1]:
                figures = measure(bench, db_url, args.job, args.workers, args.events == "on")
                runs[bench.tree].append(figures)
                console.print(
                    f"[dim]round {round_ + 1}: {bench.tree.name}: {figures[0]:,.0f} jobs/s, "
                    f"worker CPU {figures[1]:.1f} µs/job[/dim]"
                )
    console.print(table(args, trees, runs))


def table(args: argparse.Namespace, trees: list[Path], runs: dict[Path, list]) -> Table:
    out = Table(
        title=f"{args.job} drain of {args.jobs:,} jobs, --workers {args.workers}, "
        f"events {args.events}: {args.rounds} rounds"
    )
    for column in ("tree", "jobs/s, median", "ratio", "worker CPU µs/job", "runs (jobs/s)"):
        out.add_column(column, justify="left" if column == "tree" else "right")
    base = statistics.median(run[0] for run in runs[trees[0]])
    for tree, label in zip(trees, ("before", "after"), strict=True):
        rates = [run[0] for run in runs[tree]]
        rate = statistics.median(rates)
        cpu = statistics.median(run[1] for run in runs[tree])
        out.add_row(
            f"{label}: {tree}", f"{rate:,.0f}", f"{rate / base:.3f}", f"{cpu:.1f}",
            " ".join(f"{r:,.0f}" for r in rates),
        )  # fmt: skip
    return out


if __name__ == "__main__":
    main()
