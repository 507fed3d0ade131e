"""Python subprocesses that start work at the same moment, for concurrency tests."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def start_python(code: str, *args: str) -> subprocess.Popen[str]:
    """``python -c code args...`` with stdin, stdout and stderr piped (text)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_together(procs: list[subprocess.Popen[str]]) -> list[list[str]]:
    """Wait for each process to print ``ready``, then send ``go`` to all at once.

    Returns each process's remaining output, split into words; fails if any
    exits non-zero. Processes still running when this fails are killed.
    """
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "ready", proc.communicate(timeout=30)[1]
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = []
        for proc in procs:
            out, err = proc.communicate(timeout=90)
            assert proc.returncode == 0, err
            outputs.append(out.split())
        return outputs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
