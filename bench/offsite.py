"""Off-site push: repository growth per night against one local archive, and the push's cost.

    .venv/bin/python bench/offsite.py [--rows 100000] [--nights 7] [--runs 3] [--only growth|cost]

It builds a PostgreSQL database with a Django-like table (``app_document``: a title, a body
that is half random hex and half repeated words, a JSON object, a time), about 1 KB a row,
then for each of two patterns of change runs ``--nights`` nights of ``run_backup`` with an
``OFFSITE`` local-folder restic repository (fresh per pattern):

* ``recent``: each night 1% of the rows change, the most recent ones (as on a site where
  new and edited content is mostly recent);
* ``scattered``: each night 1% of the rows change, spread evenly over the whole table.

Per night it prints the local archive's size (zstd), the repository's growth on disk (du of
the folder: restic's compressed, encrypted packs and indexes), that growth as a share of the
local archive (goal: at most 20% after the first night), and restic's ``data_added``.

Then the push's cost, on the last night's archive: ``opskit backup`` with and without
``OFFSITE`` (the difference is what the push adds), against ``zstd -dc archive | restic
backup --stdin`` alone (the limit: restic's own work on the same bytes), each ``--runs``
times, interleaved, medians. Nothing here asserts; the figures are for a human to read.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import common  # noqa: F401  (imported for its effect: tests/ on the path for support.*)
from support.services import PG, psql

from opskit.backup import run_backup
from opskit.config import Config, build_config
from opskit.engines import DbParams
from opskit.offsite.settings import parse

START = datetime(2026, 11, 1, 2, 0).astimezone()


def build(name: str, rows: int) -> None:
    psql(f'DROP DATABASE IF EXISTS "{name}"')
    psql(f'CREATE DATABASE "{name}"')
    psql(
        "CREATE TABLE app_document (id bigserial PRIMARY KEY, title text, body text,"
        " meta jsonb, updated timestamptz);"
        "INSERT INTO app_document (title, body, meta, updated)"
        " SELECT 'Document ' || i, "
        " md5(random()::text) || md5(random()::text) || md5(random()::text)"
        " || md5(random()::text) || md5(random()::text) || md5(random()::text)"
        " || md5(random()::text) || md5(random()::text) || ' '"
        " || repeat('lorem ipsum dolor sit amet ', 18),"
        " jsonb_build_object('n', i, 'tag', 't' || (i % 50)),"
        " now() - (i || ' minutes')::interval"
        f" FROM generate_series(1, {rows}) AS i",
        name,
    )
    psql("VACUUM ANALYZE app_document", name)


def change(name: str, pattern: str, night: int, rows: int) -> None:
    share = rows // 100
    where = f"id > {rows - share}" if pattern == "recent" else f"id % 100 = {night % 100}"
    psql(
        f"UPDATE app_document SET body = md5(random()::text) || md5(random()::text)"
        f" || ' night {night} ' || repeat('lorem ipsum dolor sit amet ', 18),"
        f" updated = now() WHERE {where}",
        name,
    )


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def restic_env(repo: Path, password: Path) -> dict[str, str]:
    return {**os.environ, "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD_FILE": str(password)}


def config_for(work: Path, repo: Path | None, password: Path) -> Config:
    config = build_config(
        project_dir=work, settings_module="bench", environ={}, flags={}, secret_keys=("bench",)
    )
    if repo is None:
        return config
    value = {"repository": str(repo), "password_file": str(password), "host": "bench"}
    return dataclasses.replace(config, offsite=parse(value, project_dir=work))


def nights(db: DbParams, pattern: str, count: int, rows: int, work: Path) -> list[dict[str, int]]:
    repo = work / f"repo-{pattern}"
    password = work / "restic.pass"
    subprocess.run(
        ["restic", "init", "-q"], env=restic_env(repo, password), check=True, capture_output=True
    )
    config = config_for(work / pattern, repo, password)
    found = []
    for night in range(count):
        if night:
            change(db.name, pattern, night, rows)
        before = du(repo)
        report = run_backup(config, {"default": db}, ["default"], START + timedelta(days=night))
        if report.exit_code:
            sys.exit(f"backup failed: {[s.reason for s in report.failed()]}")
        detail = report.details["default"]
        pushed = detail["offsite"]["offsite"]
        found.append(
            {
                "night": night + 1,
                "archive": int(detail["bytes"]),
                "raw": int(detail["raw_bytes"]),
                "growth": du(repo) - before,
                "data_added": int(pushed["added"]),
            }
        )
    return found


def timed(argv: list[str] | str, env: dict[str, str], shell: bool = False) -> float:
    start = time.monotonic()
    subprocess.run(argv, env=env, check=True, capture_output=True, shell=shell)
    return time.monotonic() - start


def push_cost(db: DbParams, runs: int, work: Path) -> dict[str, list[float]]:
    password = work / "restic.pass"
    repo = work / "repo-cost"
    subprocess.run(
        ["restic", "init", "-q"], env=restic_env(repo, password), check=True, capture_output=True
    )
    plain = config_for(work / "cost-plain", None, password)
    pushing = config_for(work / "cost-push", repo, password)
    times: dict[str, list[float]] = {"backup": [], "backup+push": [], "restic alone": []}
    # One untimed pass each, so that the repository already holds the data (a nightly run).
    run_backup(pushing, {"default": db}, ["default"], START)
    for n in range(runs + 1):
        when = START + timedelta(days=n)
        t0 = time.monotonic()
        run_backup(plain, {"default": db}, ["default"], when)
        t1 = time.monotonic()
        run_backup(pushing, {"default": db}, ["default"], when)
        t2 = time.monotonic()
        archive = next((work / "cost-plain" / "db_backups").glob("latest.*")).resolve()
        alone = timed(
            f"zstd -dc '{archive}' | restic backup -q --stdin --stdin-filename bench/default.sql",
            restic_env(repo, password),
            shell=True,
        )
        if n:  # the first round is a warm-up
            times["backup"].append(t1 - t0)
            times["backup+push"].append(t2 - t1)
            times["restic alone"].append(alone)
    return times


def mb(n: float) -> str:
    return f"{n / 1e6:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--nights", type=int, default=7)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--only", choices=["growth", "cost"], help="Measure only the growth or only the cost."
    )
    args = parser.parse_args()
    name = f"opskit_bench_offsite_{os.getpid()}"
    db = DbParams(
        "default", "django.db.backends.postgresql", name, PG["user"], "", PG["host"], PG["port"]
    )
    work = Path(tempfile.mkdtemp(prefix="opskit-bench-offsite-"))
    (work / "restic.pass").write_text(os.urandom(16).hex() + "\n")
    os.environ["RESTIC_CACHE_DIR"] = str(work / "cache")
    try:
        print(f"# off-site push: {args.rows:,} rows, {args.nights} nights, {args.runs} runs")
        version = subprocess.run(["restic", "version"], capture_output=True, text=True, check=True)
        print(f"restic: {version.stdout.strip()}")
        for pattern in ("recent", "scattered") if args.only != "cost" else ():
            build(name, args.rows)
            rows = nights(db, pattern, args.nights, args.rows, work)
            print(f"\n## 1% of rows changed per night, {pattern}\n")
            print(
                "| night | dump MB | local archive MB | repository growth MB | growth / archive"
                " | restic data_added MB |"
            )
            print("|---|---|---|---|---|---|")
            for r in rows:
                share = r["growth"] / r["archive"] if r["archive"] else 0
                print(
                    f"| {r['night']} | {mb(r['raw'])} | {mb(r['archive'])} | {mb(r['growth'])}"
                    f" | {share:.0%} | {mb(r['data_added'])} |"
                )
            later = [r["growth"] / r["archive"] for r in rows[1:]]
            if later:
                median = statistics.median(later)
                print(f"\nnights 2-{len(rows)}: median growth {median:.0%} of one local archive")
        if args.only == "growth":
            return
        build(name, args.rows)
        times = push_cost(db, args.runs, work)
        print("\n## time added by the push (seconds, median (min-max))\n")
        print("| procedure | seconds |")
        print("|---|---|")
        for what, values in times.items():
            low, high = min(values), max(values)
            print(f"| {what} | {statistics.median(values):.2f} ({low:.2f}-{high:.2f}) |")
        added = statistics.median(times["backup+push"]) - statistics.median(times["backup"])
        alone = statistics.median(times["restic alone"])
        print(
            f"\npush adds {added:.2f} s to the backup; restic backup --stdin alone takes"
            f" {alone:.2f} s (x{added / alone:.2f})"
        )
    finally:
        psql(f'DROP DATABASE IF EXISTS "{name}"')
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
