"""bench/bench.py runs end to end on a 10 MB dataset and writes the report a reader relies on.

No timing is asserted: only that every procedure ran (or says why it could not), that
its row has a time, that archives are not empty and that the Targets section is there.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.services import mysql, need_tools, psql, random_name

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "bench.py"
RESULTS = ROOT / "bench" / "RESULTS.md"

# The rows every run has, per engine and phase (PostgreSQL adds --format directory).
OPSKIT_BACKUPS = ["opskit_zstd", "opskit_gzip", "opskit_none"]
OPSKIT_RESTORES = ["opskit_restore_zstd", "opskit_restore_gzip"]
EXPECTED = {
    ("pg", "backup"): ["limit", "pg_dump_zstd", "pg_dump_pigz", "handbook", *OPSKIT_BACKUPS],
    ("pg", "restore"): ["restore_limit", "restore_handbook", *OPSKIT_RESTORES],
    ("mysql", "backup"): [
        "limit",
        "limit_opskit_flags",
        "dump_zstd",
        "dump_pigz",
        "handbook",
        *OPSKIT_BACKUPS,
    ],
    ("mysql", "restore"): ["restore_limit", "restore_handbook", *OPSKIT_RESTORES],
    ("sqlite", "backup"): ["limit", "handbook", *OPSKIT_BACKUPS],
    ("sqlite", "restore"): ["restore_limit", "restore_handbook", *OPSKIT_RESTORES],
}
NO_ARCHIVE = {"limit", "limit_opskit_flags"}  # the dump-to-/dev/null limits of pg and mysql
TITLES = {"pg": "PostgreSQL", "mysql": "MariaDB", "sqlite": "SQLite"}
TIME = re.compile(r"^\d+\.\d+ \(\d+\.\d+\u2013\d+\.\d+\)")


@pytest.fixture
def prefix(pg_server: None, mysql_server: None) -> Iterator[str]:
    """A database-name prefix unique to this run; its databases are dropped afterwards."""
    name = random_name("opskit_tb")
    yield name
    pattern = name.replace("_", "\\_") + "%"
    for db in psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{pattern}'").split():
        psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    for db in mysql(f"SHOW DATABASES LIKE '{pattern}'").split():
        mysql(f"DROP DATABASE IF EXISTS `{db}`")


def table_rows(markdown: str, heading: str) -> list[list[str]]:
    """The body rows of the table under ``### heading``, as lists of cells."""
    section = markdown.split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0]
    section = section.split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("| ")][1:]  # minus the header
    return [[c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]] for ln in lines]


def test_bench_smoke_writes_every_row_and_the_targets(prefix: str, tmp_path: Path) -> None:
    need_tools("zstd", "gzip", "pg_dump", "psql", "mariadb-dump", "mariadb")
    results_before = RESULTS.read_bytes() if RESULTS.exists() else None
    output = tmp_path / "R.md"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--size",
            "10m",
            "--runs",
            "1",
            "--warmup",
            "0",
            "--cli-runs",
            "2",
            "--no-peers",
            "--output",
            str(output),
            "--work",
            str(tmp_path / "work"),
            "--db-prefix",
            prefix,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    markdown = output.read_text()
    data = json.loads((tmp_path / "results.json").read_text())

    rows = {(r["engine"], r["phase"], r["key"]): r for r in data["rows"]}
    for (engine, phase), keys in EXPECTED.items():
        wanted = list(keys)
        if engine == "pg":
            wanted.append("opskit_directory" if phase == "backup" else "opskit_restore_directory")
        table = table_rows(markdown, f"{TITLES[engine]} 10m: {phase}")
        assert len(table) == len(wanted), (engine, phase, table)
        for key, cells in zip(wanted, table, strict=True):
            row = rows[(engine, phase, key)]
            assert cells[0] == row["label"].replace("|", "\\|")
            if row["skipped"]:  # only a tool missing on this machine may skip a row
                assert "not installed" in row["skipped"], row
                assert "pigz" in row["skipped"], row
                continue
            assert TIME.match(cells[1]), (engine, phase, key, cells[1])
            summary = row["summary"]
            assert summary["ok_runs"] == 1, row
            assert summary["median_s"] > 0, row
            assert summary["tree_peak_mb"] > 0, row
            if row["role"] == "opskit":
                assert summary["own_peak_mb"] > 0, row
            if phase == "backup" and key not in NO_ARCHIVE:
                assert summary["archive_mb"] > 0, row
                assert float(cells[5]) > 0, (engine, key, cells)

    cli = table_rows(markdown, "CLI")
    assert [c[0] for c in cli] == [
        "opskit --help",
        "opskit list (pg 10m project)",
        "opskit list (mysql 10m project)",
        "opskit list (sqlite 10m project)",
    ]
    assert all(TIME.match(c[1]) for c in cli), cli

    assert "\n## Targets\n" in markdown
    targets = markdown.split("\n## Targets\n", 1)[1]
    verdicts = re.findall(r"\| (PASS|FAIL|n/a) \|$", targets, flags=re.M)
    assert len(verdicts) == len(data["targets"]) >= 10
    for name in ("## Machine", "## Versions", "## Datasets", "## Method"):
        assert f"\n{name}\n" in markdown
    for ds in data["datasets"]:
        assert ds["size"] == "10m", ds
        assert 5e6 < ds["dump_bytes"] < 20e6, ds

    assert (RESULTS.read_bytes() if RESULTS.exists() else None) == results_before
