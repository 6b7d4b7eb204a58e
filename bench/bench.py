"""Benchmark opskit's backup and restore against the limit, the handbook and django-dbbackup.

Usage (normally through ``bench/run``, which prepares the venvs and tools):

    .venv/bin/python bench/bench.py [--size 100m --size 1g] [--runs 3]
        [--engines pg,mysql,sqlite] [--no-peers] [--output bench/RESULTS.md]
        [--work bench/.work] [--db-prefix opskit_bench]

Writes RESULTS.md (tables and targets) and ``results.json`` (every measurement) beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import measure
import procedures
import report
from common import BENCH, ROOT, log
from support.services import mysql, psql

ENGINES = ("pg", "mysql", "sqlite")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", action="append", help="dataset size: 10m, 100m, 1g (repeatable)")
    p.add_argument("--runs", type=int, default=3, help="timed runs per procedure (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes first (default 1)")
    p.add_argument("--cli-runs", type=int, default=10, help="runs of each CLI row (default 10)")
    p.add_argument("--engines", default=",".join(ENGINES), help="pg,mysql,sqlite (default all)")
    p.add_argument("--no-peers", action="store_true", help="skip django-dbbackup")
    p.add_argument("--output", type=Path, default=BENCH / "RESULTS.md")
    p.add_argument("--work", type=Path, default=BENCH / ".work")
    p.add_argument("--db-prefix", default="opskit_bench", help="database name prefix")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per run (default 3600)")
    args = p.parse_args(argv)
    args.size = args.size or ["100m", "1g"]
    for size in args.size:
        datasets.parse_size(size)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(args.engines) - set(ENGINES)
    if unknown:
        p.error(f"unknown engine(s) {', '.join(sorted(unknown))}; use {','.join(ENGINES)}")
    if not args.db_prefix.replace("_", "").isalnum():
        p.error("--db-prefix: letters, digits and _ only")
    if args.runs < 1 or args.cli_runs < 1 or args.warmup < 0:
        p.error("--runs and --cli-runs must be ≥ 1, --warmup ≥ 0")
    args.work = args.work.resolve()
    args.output = args.output.resolve()
    return args


# --------------------------------------------------------------------------- facts


def _out(argv: list[str], env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    except OSError:
        return "not installed"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0].strip() if text else "?"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        kb = int(next(ln for ln in f if ln.startswith("MemTotal")).split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": kb / 1024 / 1024,
        "kernel": f"{platform.system()} {platform.release()}",
        "loadavg_start": loadavg(),
    }


def opskit_source_hash() -> str:
    """A fingerprint of opskit's source, to tell whether it changed during the run."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "opskit").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def loadavg() -> str:
    """The 1/5/15-minute load averages: other work on the machine skews the timings."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def versions(opskit: Path, peers: bool) -> dict[str, str]:
    def sql(fn: Callable[[str], str], query: str) -> str:
        try:
            return fn(query)
        except (RuntimeError, OSError) as exc:
            return f"unavailable ({str(exc)[:80]})"

    py = sys.executable
    v = {
        "PostgreSQL server": sql(psql, "SHOW server_version"),
        "pg_dump": _out(["pg_dump", "--version"]),
        "psql": _out(["psql", "--version"]),
        "MariaDB server": sql(mysql, "SELECT VERSION()"),
        "mariadb-dump": _out(["mariadb-dump", "--version"]),
        "SQLite (Python's sqlite3)": _out(
            [py, "-c", "import sqlite3; print(sqlite3.sqlite_version)"]
        ),
        "zstd": _out(["zstd", "--version"]),
        "pigz": _out(["pigz", "--version"]),
        "gzip": _out(["gzip", "--version"]),
        "Python": platform.python_version(),
        "Django (opskit venv)": _out([py, "-c", "import django; print(django.__version__)"]),
        "zstandard (opskit venv)": _out(
            [py, "-c", "import zstandard; print(zstandard.__version__)"]
        ),
        "opskit": _out([str(opskit), "--version"]),
        "opskit source (sha256 of opskit/**/*.py, at the start)": opskit_source_hash(),
    }
    dbb = str(procedures.DBBACKUP_PYTHON)
    if peers:
        v["django-dbbackup"] = _out(
            [dbb, "-c", "import importlib.metadata as m; print(m.version('django-dbbackup'))"]
        )
        v["Django (dbbackup venv)"] = _out([dbb, "-c", "import django; print(django.__version__)"])
    return v


# --------------------------------------------------------------------------- running


def run_procedure(proc: procedures.Procedure, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    stderr_path = args.work / "logs" / f"{tag}.{proc.key}.stderr"
    try:
        if proc.before:
            proc.before()
    except Exception as exc:  # a failed setup is a failed run, recorded
        return measure.RunResult(False, 0.0, 0, None, 0, -1, f"setup failed: {exc}").as_json()
    result = measure.run(
        proc.argv,
        cwd=proc.cwd,
        env=proc.env,
        stderr_path=stderr_path,
        track_leader=proc.python_leader,
        timeout=args.timeout,
    )
    if result.ok and proc.archive:
        result.archive_bytes = proc.archive()
    try:
        if proc.after:
            proc.after()
    except Exception as exc:
        result.ok = False
        result.error = f"cleanup failed: {exc}"
    return result.as_json()


def run_interleaved(
    procs: list[procedures.Procedure],
    rows: list[report.Row],
    args: argparse.Namespace,
    tag: str,
) -> None:
    active = [(p, r) for p, r in zip(procs, rows, strict=True) if not r.skipped]
    runs = max((p.runs or args.runs) for p, _ in active) if active else 0
    for n in range(args.warmup + runs):
        warm = n < args.warmup
        for proc, row in active:
            if not warm and len(row.runs) >= (proc.runs or args.runs):
                continue
            result = run_procedure(proc, args, tag)
            (row.warmups if warm else row.runs).append(result)
            status = f"{result['seconds']:.3f}s" if result["ok"] else f"FAILED {result['error']}"
            what = "warm-up" if warm else f"run {n - args.warmup + 1}"
            log(f"{tag} {proc.key}: {what}: {status}")


def make_rows(procs: list[procedures.Procedure], engine: str, size: str) -> list[report.Row]:
    rows = []
    for p in procs:
        missing = p.missing()
        if p.role == "peer" and not procedures.DBBACKUP_PYTHON.exists():
            missing.append(str(procedures.DBBACKUP_PYTHON))
        rows.append(
            report.Row(
                engine,
                size,
                p.phase,
                p.key,
                p.label,
                p.role,
                p.mode,
                skipped=f"{', '.join(missing)} not installed" if missing else "",
            )
        )
    return rows


def write_outputs(data: dict[str, Any], rows: list[report.Row], args: argparse.Namespace) -> None:
    targets = report.evaluate(rows, args.engines, not args.no_peers)
    data["targets"] = [t.as_json() for t in targets]
    data["rows"] = [r.as_json() for r in rows]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    before = args.output.read_text() if args.output.exists() else ""
    args.output.write_text(report.keeping_others(report.markdown(data, rows, targets), before))
    args.output.with_name("results.json").write_text(json.dumps(data, indent=1) + "\n")


def interrupted(signum: int, frame: object) -> None:
    """End the command being measured with the benchmark, then exit 128 + signal."""
    del frame
    measure.end_current()
    log(f"interrupted by signal {signum}")
    sys.exit(128 + signum)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    started = time.time()
    args.work.mkdir(parents=True, exist_ok=True)
    opskit = Path(sys.executable).with_name("opskit")
    if not opskit.exists():
        print(f"bench: {opskit} not found; run bench/run (it installs opskit)", file=sys.stderr)
        return 2
    env = procedures.base_env()
    if not args.no_peers and not procedures.DBBACKUP_PYTHON.exists():
        print(
            f"bench: {procedures.DBBACKUP_PYTHON} missing (bench/run makes it); "
            "the django-dbbackup rows are marked not run",
            file=sys.stderr,
        )
    ctx = procedures.Context(
        opskit=opskit,
        prefix=args.db_prefix,
        work=args.work,
        peers=not args.no_peers,
        directory_format=procedures.opskit_has_directory_format(opskit, env),
        base_env=env,
    )
    data: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(started)),
        "command": "bench/bench.py " + shlex.join(argv),
        "args": {
            "sizes": args.size,
            "runs": args.runs,
            "warmup": args.warmup,
            "cli_runs": args.cli_runs,
            "engines": args.engines,
            "peers": not args.no_peers,
            "db_prefix": args.db_prefix,
            "work": str(args.work),
            "opskit_directory_format": ctx.directory_format,
        },
        "machine": machine(),
        "versions": versions(opskit, not args.no_peers),
        "datasets": [],
        "notes": [],
    }
    if not ctx.directory_format:
        data["notes"].append(
            "`opskit backup --help` lists no `--format` option: the directory-format rows "
            "were not run."
        )
    rows: list[report.Row] = []
    built: list[datasets.Dataset] = []
    for size in sorted(args.size, key=datasets.parse_size):
        for engine in args.engines:
            tag = f"{engine}_{size}"
            try:
                ds = datasets.build(engine, args.db_prefix, size, args.work)
            except (RuntimeError, OSError) as exc:
                log(f"{tag}: dataset failed: {exc}")
                data["notes"].append(f"{tag}: the dataset could not be built: {exc}")
                continue
            log(f"{tag}: dataset {ds.name}: {ds.dump_bytes / 1e6:.1f} MB")
            built.append(ds)
            data["datasets"].append(ds.as_json())
            procs = procedures.procedures_for(ctx, ds)
            for phase in ("backup", "restore"):
                part = [p for p in procs if p.phase == phase]
                part_rows = make_rows(part, engine, size)
                rows += part_rows
                run_interleaved(part, part_rows, args, tag)
                write_outputs({**data, "finished": "(running)", "duration_s": 0.0}, rows, args)
            if not procedures.still_intact(ds):
                data["notes"].append(f"{tag}: the dataset was not intact after the restores")
    cli = procedures.cli_procedures(ctx, built, args.cli_runs)
    cli_rows = make_rows(cli, "cli", "-")
    rows += cli_rows
    run_interleaved(cli, cli_rows, args, "cli")
    finished = time.time()
    data["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(finished))
    data["duration_s"] = finished - started
    data["machine"]["loadavg_end"] = loadavg()
    source_hash = opskit_source_hash()
    if source_hash != data["versions"]["opskit source (sha256 of opskit/**/*.py, at the start)"]:
        data["notes"].append(
            f"opskit's source changed while the benchmark ran (now {source_hash}): "
            "rows measured at different times may have run different code."
        )
    write_outputs(data, rows, args)
    log(f"wrote {args.output} and results.json in {(finished - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
