"""SQLite restore against its limit, ``zstd -dc archive > file``: the goal is at most 4 times.

Usage (from the repository's root, with the project venv):

    .venv/bin/python bench/sqlite_restore.py [--size 1g] [--runs 3] [--work bench/.work]

Builds (or reuses) the benchmark's SQLite dataset (bench/datasets.py) and backs it up once
with ``opskit backup``. Then, interleaved for each run: the limit (``zstd -q -dc archive >
file``), the limit plus the fsync any durable restore needs, ``opskit restore --yes`` with
nobody holding the file (the checked copy is renamed into place), and ``opskit restore
--yes`` while another process holds the file open (SQLite's backup API copies it in place).
Prints the medians, each one's ratio to the limit's median, and the goal; then, measured
in this process on the restored file, what the checks cost. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import datasets
import measure
from common import BENCH, log

OPSKIT = Path(sys.executable).with_name("opskit")  # the venv running this script
GOAL = 4.0
# A site's worker: a connection that has read once and stays open.
HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1])
conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
print(flush=True)
time.sleep(3600)
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="1g", help="dataset size: 10m, 100m, 1g (default 1g)")
    p.add_argument("--runs", type=int, default=3, help="timed runs of each (default 3)")
    p.add_argument("--work", type=Path, default=BENCH / ".work", help="where the dataset lives")
    p.add_argument("--no-in-place", action="store_true", help="skip the held-open restore")
    args = p.parse_args(argv)
    datasets.parse_size(args.size)
    if args.runs < 1:
        p.error("--runs must be ≥ 1")
    args.work = args.work.resolve()
    return args


def timed(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> float:
    result = measure.run(argv, cwd=cwd, env=env, stderr_path=log)
    if not result.ok:
        sys.exit(f"{shlex.join(argv)} failed: {result.error or measure.last_line(log)}")
    return result.seconds


@contextlib.contextmanager
def held_open(path: Path) -> Iterator[None]:
    """Another process (a site's worker) with the database open for the block."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        holder.stdout.readline()  # connected
        yield
    finally:
        holder.kill()
        holder.wait()


def seconds_of(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def pragma(path: Path, name: str) -> Callable[[], object]:
    def run() -> object:
        uri = f"file:{path}?mode=ro&immutable=1"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            return conn.execute(f"PRAGMA {name}").fetchone()

    return run


def fsync_of(path: Path) -> Callable[[], object]:
    def run() -> object:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return None

    return run


def describe(name: str, runs: list[float], limit: float) -> str:
    median = statistics.median(runs)
    spread = f"{min(runs):.2f}\u2013{max(runs):.2f}"
    return f"  {name:<64} {median:6.2f} s ({spread})  {median / limit:5.2f}\u00d7"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    ds = datasets.build("sqlite", "opskit_bench", args.size, args.work)
    db = Path(ds.name)
    project = ds.project_dir
    folder = datasets.backup_dir(ds, "zstd")
    env = {**os.environ, "OPSKIT_BACKUP_DIR": str(folder), "OPSKIT_COMPRESS": "zstd"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    logs = args.work / "logs-sqlite-restore"
    timed([str(OPSKIT), "backup"], project, env, logs / "backup.err")
    archive = (folder / "latest.sqlite3.zst").resolve()
    scratch = db.with_name("limit.sqlite3")
    limit_sh = f"zstd -q -dc {shlex.quote(str(archive))} > {shlex.quote(str(scratch))}"
    restore = [str(OPSKIT), "restore", "--yes"]

    times: dict[str, list[float]] = {"limit": [], "limit_fsync": [], "rename": [], "in_place": []}
    for run in range(1, args.runs + 1):
        log(f"run {run} of {args.runs}")
        times["limit"].append(timed(["sh", "-c", limit_sh], project, env, logs / "limit.err"))
        scratch.unlink()
        start = time.perf_counter()
        subprocess.run(["sh", "-c", limit_sh], check=True)
        fsync_of(scratch)()
        times["limit_fsync"].append(time.perf_counter() - start)
        scratch.unlink()
        inode = db.stat().st_ino
        times["rename"].append(timed(restore, project, env, logs / "restore.err"))
        if db.stat().st_ino == inode:
            log("note: the restore did not rename (see logs-sqlite-restore)")
        if not args.no_in_place:
            with held_open(db):
                inode = db.stat().st_ino
                times["in_place"].append(timed(restore, project, env, logs / "in-place.err"))
            if db.stat().st_ino != inode:
                log("note: the held-open restore renamed")

    limit = statistics.median(times["limit"])
    size = db.stat().st_size
    print(
        f"\nSQLite {args.size} restore: {db} ({size:,} bytes), archive {archive.name}"
        f" ({archive.stat().st_size:,} bytes, zstd), {args.runs} run(s), median (min\u2013max),"
        " ratio to the limit:"
    )
    print(describe("limit: zstd -q -dc archive > file", times["limit"], limit))
    print(describe("limit + fsync of the file", times["limit_fsync"], limit))
    print(describe("opskit restore --yes (nobody has it open: renamed in)", times["rename"], limit))
    if times["in_place"]:
        label = "opskit restore --yes, file held open (backup API, in place)"
        print(describe(label, times["in_place"], limit))
    ratio = statistics.median(times["rename"]) / limit
    verdict = "met" if ratio <= GOAL else "NOT met"
    print(f"  goal: opskit restore ≤ {GOAL:g}\u00d7 the limit: {verdict} ({ratio:.2f}\u00d7)")
    checks = {
        "PRAGMA integrity_check (kept)": pragma(db, "integrity_check"),
        "PRAGMA quick_check (for comparison)": pragma(db, "quick_check"),
        "fsync of the restored file (cached, so ~0)": fsync_of(db),
    }
    print("where the time goes, measured here on the restored file:")
    for name, action in checks.items():
        print(f"  {name:<64} {seconds_of(action):6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
