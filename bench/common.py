"""What the bench scripts share: where things are, and the tests' helpers on the path.

Every bench script runs as a script (``cd bench && ../.venv/bin/python restore_mysql.py``
or ``.venv/bin/python bench/bench.py``), so ``bench/`` is on ``sys.path`` and this module
is imported first. It puts ``tests/`` there too: the bench scripts reach the servers with
the tests' own helpers (``support.services``: PG, MY, psql, mysql; ``support.pg_state``;
``support.state``: dump an archive through an engine) rather than with copies of them.
They need the project venv with its test extra (``pip install -e '.[test]'``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
TESTS = ROOT / "tests"

if str(TESTS) not in sys.path:
    sys.path.append(str(TESTS))


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def timed(call: Callable[..., Any], found: dict[str, float], key: str) -> Callable[..., Any]:
    """``call``, recording in ``found[key]`` the seconds each call takes (failed ones too)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        try:
            return call(*args, **kwargs)
        finally:
            found[key] = time.monotonic() - start

    return run


@dataclass
class Runs:
    """The seconds of each run of a restore benchmark, limit and opskit alternating."""

    limits: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    windows: list[float] = field(default_factory=list)
    totals: list[float] = field(default_factory=list)


def alternate(
    runs: int, limit: Callable[[], float], opskit: Callable[[], dict[str, float]]
) -> Runs:
    """Run the limit, then opskit's restore (its load, swap window, total), ``runs`` times;
    print each run's figures as it ends."""
    found = Runs()
    for run in range(1, runs + 1):
        found.limits.append(limit())
        got = opskit()
        found.loads.append(got["load"])
        found.windows.append(got["swap_window"])
        found.totals.append(got["total"])
        print(
            f"  run {run}: limit {found.limits[-1]:.2f} s, opskit load {found.loads[-1]:.2f} s"
            f" (x{found.loads[-1] / found.limits[-1]:.3f}), swap window"
            f" {found.windows[-1]:.3f} s, whole restore {found.totals[-1]:.2f} s",
            flush=True,
        )
    return found
