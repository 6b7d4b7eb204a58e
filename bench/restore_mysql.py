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
from pathlib import Path
from typing import Any

import datasets  # bench/ is on the path: it is this script's folder

from opskit import files
from opskit.archive import pipes
from opskit.archive import stream as archive
from opskit.engines import DbParams
from opskit.engines.base import RestoreContext
from opskit.engines.mysql import MySQL
from opskit.engines.mysql import swap as mysql_swap
from opskit.engines.mysql.dump import DumpObserver

BENCH = Path(__file__).resolve().parent


def params(name: str) -> DbParams:
    return DbParams(
        alias="default",
        django_engine="django.db.backends.mysql",
        name=name,
        user=datasets.MY["user"],
        host=datasets.MY["host"],
        port=datasets.MY["port"],
    )


def make_archive(db: DbParams, folder: Path) -> tuple[Path, dict[str, Any]]:
    """Dump with opskit's engine (its flags, its observer) into a zstd -1 archive."""
    engine = MySQL()
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{db.name}.sql.zst"
    observer = DumpObserver()  # what engine.observer() returns, typed
    props = engine.properties(db)
    with engine.dump(db, ()) as stream:

        class Watched:
            def read(self, size: int = -1) -> bytes:
                data = stream.read(size)
                observer.feed(data)
                return data

        written = archive.write_stream(Watched(), final, "zstd", 1)  # type: ignore[arg-type]
    files.commit(written.path, final)
    manifest = {
        "engine": "mysql",
        "database": db.name,
        "size": written.size,
        "sha256": written.sha256,
        "raw_size": written.raw_size,
        "properties": {**props, **observer.result()},
    }
    return final, manifest


def limit(path: Path, db: DbParams) -> float:
    """zstd -dc archive | mariadb into an empty schema: the time the load itself takes."""
    scratch = f"{db.name}__bench_limit"
    datasets.mysql(f"DROP DATABASE IF EXISTS `{scratch}`")
    datasets.mysql(f"CREATE DATABASE `{scratch}` CHARACTER SET utf8mb4")
    conn = ["-h", db.host, "-P", db.port, "-u", db.user]
    start = time.monotonic()
    zstd = subprocess.Popen(["zstd", "-dc", str(path)], stdout=subprocess.PIPE)
    subprocess.run(["mariadb", *conn, f"--database={scratch}"], stdin=zstd.stdout, check=True)
    assert zstd.wait() == 0
    seconds = time.monotonic() - start
    datasets.mysql(f"DROP DATABASE IF EXISTS `{scratch}`")
    return seconds


def opskit(path: Path, manifest: dict[str, Any], db: DbParams) -> dict[str, float]:
    """One restore through the engine; the load's and the swap's seconds, and the total."""
    engine = MySQL()
    found: dict[str, float] = {}
    load_into = engine.load_into
    replace = mysql_swap.Swap.replace_objects

    def timed_load(*args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        try:
            return load_into(*args, **kwargs)
        finally:
            found["load"] = time.monotonic() - start

    def timed_replace(self: mysql_swap.Swap, fresh: bool = False) -> None:
        replace(self, fresh)
        if self.window:
            found["swap_window"] = self.window[1] - self.window[0]

    engine.load_into = timed_load  # type: ignore[method-assign]
    mysql_swap.Swap.replace_objects = timed_replace  # type: ignore[method-assign]
    try:
        ctx = RestoreContext(work_dir=path.parent, now=datetime.now().astimezone(), drop_old=True)
        ctx.manifest = manifest
        expect = pipes.Expect(manifest["size"], manifest["sha256"])
        start = time.monotonic()
        engine.restore(db, pipes.opener(path, expect=expect), ctx)
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
        path, manifest = make_archive(db, args.work / "restore_mysql")
        print(
            f"\n{ds.name}: dump {manifest['raw_size'] / 1e6:,.0f} MB,"
            f" archive {manifest['size'] / 1e6:,.0f} MB, tables {ds.tables}"
        )
        limits, loads, windows, totals = [], [], [], []
        for run in range(1, args.runs + 1):
            limits.append(limit(path, db))
            got = opskit(path, manifest, db)
            loads.append(got["load"])
            windows.append(got["swap_window"])
            totals.append(got["total"])
            print(
                f"  run {run}: limit {limits[-1]:.2f} s, opskit load {loads[-1]:.2f} s"
                f" (x{loads[-1] / limits[-1]:.3f}), swap window {windows[-1]:.3f} s,"
                f" whole restore {totals[-1]:.2f} s"
            )
        lim, load = statistics.median(limits), statistics.median(loads)
        print(
            f"  median: limit {lim:.2f} s, opskit load {load:.2f} s, ratio x{load / lim:.3f}"
            f" (goal <= 1.1), swap window {statistics.median(windows):.3f} s (goal <= 1 s),"
            f" whole restore {statistics.median(totals):.2f} s"
        )
        path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
