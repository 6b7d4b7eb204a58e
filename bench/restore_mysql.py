"""MariaDB restore: opskit's load into a scratch schema against the bare pipeline, and the swap.

    .venv/bin/python bench/restore_mysql.py [--size 100m] [--size 1g] [--runs 3]

For each size it builds (or reuses) the benchmark's ``opskit_bench_<size>`` MariaDB dataset
(bench/datasets.py), dumps it once with opskit's engine into a zstd archive, then alternates

* the limit: ``zstd -dc archive | mariadb --database=<empty schema>``, and
* opskit: ``MySQL().restore`` of that archive over the dataset itself (through a scratch
  schema, sandboxed client, dump rewriting, one RENAME, objects, drop of the previous
  schema with --drop-old),

and prints the load times, their ratio (goal: at most 1.1) and the swap window (seconds
from the first to the last statement that changed the live schema; goal: at most 1 s at
1 GB). Nothing here asserts: the figures are for a human to read.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from datetime import datetime
from functools import partial
from pathlib import Path

import datasets  # bench/ is on the path: it is this script's folder
from common import BENCH, alternate, timed
from support.mysql_state import params
from support.state import Backup, dump_to

from opskit.engines import DbParams
from opskit.engines.base import RestoreContext
from opskit.engines.mysql import MySQL
from opskit.engines.mysql import swap as mysql_swap


def limit(path: Path, db: DbParams) -> float:
    """zstd -dc archive | mariadb into an empty schema: the time the load itself takes."""
    scratch = f"{db.name}__bench_limit"
    datasets.mysql_create(scratch)
    conn = ["-h", db.host, "-P", db.port, "-u", db.user]
    start = time.monotonic()
    zstd = subprocess.Popen(["zstd", "-dc", str(path)], stdout=subprocess.PIPE)
    subprocess.run(["mariadb", *conn, f"--database={scratch}"], stdin=zstd.stdout, check=True)
    assert zstd.wait() == 0
    seconds = time.monotonic() - start
    datasets.mysql_drop(scratch)
    return seconds


def opskit(b: Backup, db: DbParams) -> dict[str, float]:
    """One restore through the engine; the load's and the swap's seconds, and the total."""
    engine = MySQL()
    found: dict[str, float] = {}
    replace = mysql_swap.Swap.replace_objects

    def timed_replace(self: mysql_swap.Swap, fresh: bool = False) -> None:
        replace(self, fresh)
        if self.window:
            found["swap_window"] = self.window[1] - self.window[0]

    engine.load_into = timed(engine.load_into, found, "load")  # type: ignore[method-assign]
    mysql_swap.Swap.replace_objects = timed_replace  # type: ignore[method-assign]
    try:
        now = datetime.now().astimezone()
        ctx = RestoreContext(b.path.parent, now, drop_old=True, manifest=b.manifest)
        start = time.monotonic()
        engine.restore(db, b.opener(), ctx)
        found["total"] = time.monotonic() - start
    finally:
        mysql_swap.Swap.replace_objects = replace  # type: ignore[method-assign]
    return found


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", action="append", help="dataset size: 10m, 100m, 1g (repeatable)")
    p.add_argument("--runs", type=int, default=3, help="timed runs of each (default 3)")
    p.add_argument("--work", type=Path, default=BENCH / ".work")
    p.add_argument("--db-prefix", default="opskit_bench")
    args = p.parse_args(argv)
    for size in args.size or ["100m"]:
        ds = datasets.build_mysql(args.db_prefix, size, args.work)
        db = params(ds.name)
        folder = args.work / "restore_mysql"
        folder.mkdir(parents=True, exist_ok=True)
        b = dump_to(MySQL(), db, folder / f"{db.name}.sql.zst")
        path, manifest = b.path, b.manifest
        print(
            f"\n{ds.name}: dump {manifest['raw_size'] / 1e6:,.0f} MB,"
            f" archive {manifest['size'] / 1e6:,.0f} MB, tables {ds.tables}"
        )
        runs = alternate(args.runs, partial(limit, path, db), partial(opskit, b, db))
        lim, load = statistics.median(runs.limits), statistics.median(runs.loads)
        print(
            f"  median: limit {lim:.2f} s, opskit load {load:.2f} s, ratio x{load / lim:.3f}"
            f" (goal <= 1.1), swap window {statistics.median(runs.windows):.3f} s (goal <= 1 s),"
            f" whole restore {statistics.median(runs.totals):.2f} s"
        )
        path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
