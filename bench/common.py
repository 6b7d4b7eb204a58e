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
