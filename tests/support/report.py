"""Lines a test wants in the run's report (the chaos ledger summaries, the soak's figures).

:func:`add` keeps a line; ``pytest_terminal_summary`` in ``tests/conftest.py``
prints them all at the end of the run, captured output or not.
"""

from __future__ import annotations

LINES: list[str] = []


def add(line: str) -> None:
    """Print ``line`` now (seen with ``-s``) and in the run's closing report."""
    print(f"\n{line}")
    LINES.append(line)
