"""The README's quick start, run as a newcomer runs it: ``python examples/quickstart.py``.

Its output goes to a pipe (not a terminal) and no ``COLUMNS`` is set, as when
the command's output is captured or piped into ``less``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"


def test_the_quick_start_runs_every_job_and_lists_the_whole_failure(tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    shutil.copy(EXAMPLE, tmp_path / "examples" / "quickstart.py")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KASHQ_")}
    env.pop("COLUMNS", None)

    proc = subprocess.run(
        [sys.executable, "examples/quickstart.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("SendWelcomeEmail") >= 10  # RUNNING and DONE for each of 5
    assert "ChargeCard.failed(): telling support about order 42" in proc.stdout
    assert "Stopped." in proc.stdout
    table = [line for line in proc.stdout.splitlines() if "quickstart.ChargeCard" in line][-1]
    assert "RuntimeError: card declined for order 42" in table  # whole, not "RuntimeError: c…"
    assert "…" not in table
    assert "Traceback" not in proc.stderr
