"""Retention keeps exactly the configured snapshots of this host and project; dedup works."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

from support.project import SUNDAY
from support.restic_repo import local_repo, with_offsite

from opskit.backup import run_backup
from opskit.config import Config
from opskit.engines import DbParams
from opskit.offsite.health import listing


def _fill(db: DbParams, rows: int = 20000) -> None:
    with sqlite3.connect(db.name) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS item (id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany(
            "INSERT INTO item (body) VALUES (?)", [(f"row {i} " + "x" * 80,) for i in range(rows)]
        )


def _change(db: DbParams, night: int, share: float = 0.01) -> None:
    """Change ``share`` of the rows, the recent ones (as a site's new and edited rows are)."""
    with sqlite3.connect(db.name) as conn:
        (count,) = conn.execute("SELECT count(*) FROM item").fetchone()
        first = count - int(count * share)
        conn.execute("UPDATE item SET body = ? WHERE id > ?", (f"night {night} " + "y" * 80, first))


def test_retention_keeps_exactly_the_policy_and_never_another_hosts(
    tmp_path: Path, config: Config, sqlite_db: DbParams
) -> None:
    repo = local_repo(tmp_path)
    _fill(sqlite_db, 2000)
    ours = with_offsite(config, repo.settings(host="web1", keep={"daily": 3}))
    theirs = with_offsite(config, repo.settings(host="web2", keep={"daily": 1}))
    other_project = with_offsite(config, repo.settings(host="web1", project="blog"))
    dbs = {"default": sqlite_db}
    for night in range(2):
        assert run_backup(theirs, dbs, ["default"], SUNDAY + timedelta(days=night)).exit_code == 0
    # web2 pushed with keep daily 1: of its own two nights, one is left.
    assert run_backup(other_project, dbs, ["default"], SUNDAY).exit_code == 0
    for night in range(5):
        when = SUNDAY + timedelta(days=night, minutes=night)
        report = run_backup(ours, dbs, ["default"], when)
        assert report.exit_code == 0, report.failed()
    web1 = repo.snapshots("--host", "web1", "--tag", "project=site")
    days = sorted(s["time"][:10] for s in web1 if "kind=dump" in s["tags"])
    assert days == ["2026-11-24", "2026-11-25", "2026-11-26"]
    assert len([s for s in web1 if "kind=manifest" in s["tags"]]) == 3
    web2 = repo.snapshots("--host", "web2")
    assert len([s for s in web2 if "kind=dump" in s["tags"]]) == 1
    blog = repo.snapshots("--tag", "project=blog")
    assert len([s for s in blog if "kind=dump" in s["tags"]]) == 1
    # offsite list --all-hosts: every host's and project's newest, one line each.
    rows, problems = listing(ours, all_hosts=True)
    assert not problems
    assert sorted((r["host"], r["project"], r["what"]) for r in rows) == [
        ("web1", "blog", "default"),
        ("web1", "site", "default"),
        ("web2", "site", "default"),
    ]
    newest = next(r for r in rows if r["host"] == "web1" and r["project"] == "site")
    assert newest["time"].startswith("2026-11-26")
    mine, _ = listing(ours)
    assert {r["host"] for r in mine} == {"web1"}
    assert len(mine) == 3


def test_a_night_with_one_percent_changed_rows_adds_a_fraction(
    tmp_path: Path, config: Config, sqlite_db: DbParams
) -> None:
    repo = local_repo(tmp_path)
    _fill(sqlite_db, 100_000)
    cfg = with_offsite(config, repo.settings())
    dbs = {"default": sqlite_db}
    first = run_backup(cfg, dbs, ["default"], SUNDAY)
    assert first.exit_code == 0
    _change(sqlite_db, 1)
    second = run_backup(cfg, dbs, ["default"], SUNDAY + timedelta(days=1))
    assert second.exit_code == 0
    pushed = second.details["default"]["offsite"]["offsite"]
    # Deduplication happens: far less than the dump itself is new (the bench measures it).
    assert pushed["added"] < pushed["pushed"] / 2, pushed
