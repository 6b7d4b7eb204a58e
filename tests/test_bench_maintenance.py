"""bench/maintenance.py runs and reports every row (no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "maintenance.py"


def test_the_maintenance_benchmark_reports_each_row(tmp_path: Path) -> None:
    out = tmp_path / "MAINTENANCE.md"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--requests", "200", "--repeat", "1", "--write", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    for row in ("watcher/no state file", "middleware/off", "middleware/on", "request/difference"):
        assert f"| {row}" in text
    assert "Goal: under 50 µs" in text
