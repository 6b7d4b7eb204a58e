"""PostgreSQL restore: opskit's load into a scratch database against the bare pipeline, and
the swap window.

    .venv/bin/python bench/restore_postgresql.py [--size 100m] [--size 1g] [--runs 3]

For each size it builds (or reuses) an ``opskit_bench_pgswap_<size>`` database made on the
server with generate_series (an accounts table, a documents table with a JSON column and
indexes, a sequence), dumps it once with opskit's engine into a zstd -1 archive, then
alternates

* the limit: ``zstd -dc archive | psql --single-transaction`` into a fresh database, and
* opskit: ``PostgreSQL().restore`` of that archive over the dataset itself (scratch
  database with the recorded encoding and locale, opskit's BEGIN/COMMIT after the hash
  matched, database properties, the swap by rename, ``--drop-old``), while ``--sessions``
  idle client sessions (a site's connection pool) are connected to the live database,

and prints the load times, their ratio, and the swap window: seconds from the first to the
last statement that changes the live database (ALLOW_CONNECTIONS off, sessions ended, the
renames); the site's downtime; goal: at most 1 s at 1 GB. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime
from functools import partial
from pathlib import Path

from common import BENCH, alternate, timed  # common first: it puts tests/ on the path for support.*
from support.pg_state import env, params
from support.pg_state import sql as psql
from support.state import Backup, dump_to

from opskit.engines import DbParams
from opskit.engines.base import RestoreContext
from opskit.engines.postgresql import PostgreSQL

ROW_BYTES = 200  # on disk, per account row plus a tenth of a document row and indexes


def parse_size(size: str) -> int:
    units = {"k": 1e3, "m": 1e6, "g": 1e9}
    return int(float(size[:-1]) * units[size[-1].lower()])


def build(size: str) -> str:
    """The dataset, made on the server (fast); reused when it is there."""
    db = f"opskit_bench_pgswap_{size}"
    if psql(f"SELECT 1 FROM pg_database WHERE datname = '{db}'"):
        return db
    rows = parse_size(size) // ROW_BYTES
    print(f"building {db}: {rows:,} accounts, {rows // 10:,} documents", flush=True)
    psql(f'CREATE DATABASE "{db}"')
    psql(
        "CREATE TABLE account (id bigint PRIMARY KEY, balance int NOT NULL, filler text);\n"
        "INSERT INTO account SELECT g, (g * 7) % 1000, repeat(md5(g::text), 2)"
        f" FROM generate_series(1, {rows}) g;\n"
        "CREATE TABLE document (id bigint PRIMARY KEY, account_id bigint REFERENCES account,"
        " title text NOT NULL, body text NOT NULL, data jsonb NOT NULL);\n"
        "INSERT INTO document SELECT g, g * 10, 'Document ' || g,"
        " repeat('lorem ipsum dolor sit amet ', 8) || md5(g::text),"
        " jsonb_build_object('n', g, 'tags', jsonb_build_array('t' || g % 17, 't' || g % 31))"
        f" FROM generate_series(1, {rows // 10}) g;\n"
        "CREATE INDEX ON document (account_id);\n"
        "CREATE SEQUENCE ticket; SELECT setval('ticket', 12345);\n"
        "VACUUM ANALYZE;",
        db,
    )
    return db


def limit(path: Path, db: str) -> float:
    """zstd -dc archive | psql --single-transaction into a fresh database."""
    scratch = f"{db}__bench_limit"
    psql(f'DROP DATABASE IF EXISTS "{scratch}"')
    psql(f'CREATE DATABASE "{scratch}" TEMPLATE template0')
    psql("CHECKPOINT")
    start = time.monotonic()
    zstd = subprocess.Popen(["zstd", "-dc", str(path)], stdout=subprocess.PIPE)
    subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-o", "/dev/null"],
        stdin=zstd.stdout,
        env=env(scratch),
        check=True,
    )
    assert zstd.wait() == 0
    seconds = time.monotonic() - start
    psql(f'DROP DATABASE IF EXISTS "{scratch}"')
    return seconds


def idle_sessions(db: str, count: int) -> list[subprocess.Popen[bytes]]:
    """Clients connected to the live database, as a site's pool is, idle in a long query."""
    found = [
        subprocess.Popen(
            ["psql", "-X", "-q", "-c", "SELECT pg_sleep(3600)"],
            env=env(db),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        n = psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'")
        if int(n) >= count:
            break
        time.sleep(0.05)
    return found


def opskit(b: Backup, db: DbParams, sessions: int) -> dict[str, float]:
    """One restore through the engine: the load's seconds, the swap window, the total."""
    engine = PostgreSQL()
    found: dict[str, float] = {}

    engine.load = timed(engine.load, found, "load")  # type: ignore[method-assign]
    now = datetime.now().astimezone()
    ctx = RestoreContext(b.path.parent, now, drop_old=True, manifest=b.manifest)
    psql("CHECKPOINT")
    clients = idle_sessions(db.name, sessions)
    try:
        start = time.monotonic()
        engine.restore(db, b.opener(), ctx)
        found["total"] = time.monotonic() - start
    finally:
        for client in clients:
            client.kill()
            client.wait()
    window = next(m for n in ctx.notes if (m := re.search(r"for ([\d.]+) s \(swap window", n)))
    found["swap_window"] = float(window[1])
    return found


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", action="append", help="dataset size: 10m, 100m, 1g (repeatable)")
    p.add_argument("--runs", type=int, default=3, help="timed runs of each (default 3)")
    p.add_argument("--sessions", type=int, default=4, help="idle sessions on the live database")
    p.add_argument("--work", type=Path, default=BENCH / ".work")
    p.add_argument("--keep", action="store_true", help="keep the dataset afterwards")
    args = p.parse_args(argv)
    for size in args.size or ["100m"]:
        name = build(size)
        db = params(name)
        folder = args.work / "restore_postgresql"
        folder.mkdir(parents=True, exist_ok=True)
        b = dump_to(PostgreSQL(), db, folder / f"{db.name}.sql.zst")
        path, manifest = b.path, b.manifest
        size_db = int(psql(f"SELECT pg_database_size('{name}')"))
        print(
            f"\n{name}: database {size_db / 1e6:,.0f} MB, dump {manifest['raw_size'] / 1e6:,.0f}"
            f" MB, archive {manifest['size'] / 1e6:,.0f} MB, {args.sessions} idle sessions",
            flush=True,
        )
        runs = alternate(
            args.runs, partial(limit, path, name), partial(opskit, b, db, args.sessions)
        )
        lim, ld = statistics.median(runs.limits), statistics.median(runs.loads)
        windows = runs.windows
        print(
            f"  median: limit {lim:.2f} s, opskit load {ld:.2f} s, ratio x{ld / lim:.3f},"
            f" swap window {statistics.median(windows):.3f} s (max {max(windows):.3f} s;"
            f" goal <= 1 s), whole restore {statistics.median(runs.totals):.2f} s",
            flush=True,
        )
        path.unlink()
        if not args.keep:
            psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
