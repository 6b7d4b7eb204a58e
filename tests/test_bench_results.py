"""bench/bench.py rewrites RESULTS.md and keeps the sections the other bench scripts added."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
BENCH_MODULES = ("bench", "common", "datasets", "measure", "procedures", "report")

KEPT = """## PostgreSQL restore: load and swap window (`bench/restore_postgresql.py`)

| dataset | limit (median) | swap window median (max) |
|---|---|---|
| 1g | 18.3 s | 0.140 s (0.165 s) |

### Runs

Runs (1g): limit 15.95 / 22.71 / 18.34 s.

## Off-site push (bench/offsite.py)

| procedure | seconds |
|---|---|
| `opskit backup` with `OFFSITE` | 7.12 (6.29-8.44) |
"""


@pytest.fixture
def bench() -> Iterator[ModuleType]:
    """bench/bench.py imported as its scripts import each other (bench/ on the path)."""
    sys.path.insert(0, str(BENCH))
    try:
        import bench as script  # only with bench/ on the path

        yield script
    finally:
        sys.path.remove(str(BENCH))
        for name in BENCH_MODULES:
            sys.modules.pop(name, None)


def data(finished: str) -> dict[str, object]:
    """What bench.py has gathered when it writes, for a run that measured nothing."""
    args = {"runs": 1, "warmup": 0, "cli_runs": 1, "engines": []}
    machine = {"cpu": "cpu", "cores": 2, "ram_gib": 1.0, "kernel": "Linux", "loadavg_start": "0"}
    return {
        "started": "2026-12-02 06:00:00 +0000",
        "finished": finished,
        "duration_s": 60.0,
        "command": "bench/bench.py",
        "args": args,
        "machine": machine,
        "versions": {"opskit": "1"},
        "datasets": [],
        "notes": [],
    }


def test_a_rewrite_keeps_the_other_scripts_sections_once_and_replaces_its_own(
    bench: ModuleType, tmp_path: Path
) -> None:
    output = tmp_path / "RESULTS.md"
    args = argparse.Namespace(output=output, engines=[], no_peers=True)
    bench.write_outputs(data("2026-12-01 07:00:00 +0000"), [], args)
    output.write_text(output.read_text() + "\n" + KEPT)

    bench.write_outputs(data("2026-12-02 07:00:00 +0000"), [], args)
    bench.write_outputs(data("2026-12-03 07:00:00 +0000"), [], args)

    text = output.read_text()
    assert text.endswith("\n\n" + KEPT)
    assert text.count(KEPT) == 1
    assert text.count("\n## Targets\n") == 1
    assert "on 2026-12-03 07:00:00" in text
    assert "2026-12-01" not in text
    assert "2026-12-02 07:00" not in text
