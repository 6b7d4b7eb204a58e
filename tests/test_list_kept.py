"""opskit list shows what restores kept, with its size and the command that removes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.project import run_opskit, write_project
from support.services import mysql, psql

from opskit.engines import DbParams


def restored(site: Path, *args: str) -> None:
    for step in (("backup",), ("restore", "--yes", *args)):
        done = run_opskit("--project-dir", site, *step)
        assert done.returncode == 0, done.stderr


@pytest.mark.postgresql
def test_list_shows_the_previous_database_a_postgresql_restore_kept(
    tmp_path: Path, pg_db: DbParams
) -> None:
    psql("CREATE TABLE item (id int PRIMARY KEY); INSERT INTO item VALUES (1)", db=pg_db.name)
    site = write_project(tmp_path / "site", {"default": pg_db})
    restored(site)

    listed = run_opskit("--project-dir", site, "list")
    as_json = json.loads(run_opskit("--project-dir", site, "list", "--json").stdout)

    assert listed.returncode == 0, listed.stderr
    [kept] = as_json[0]["kept"]
    assert kept["kind"] == "previous"
    assert kept["name"].startswith(f"{pg_db.name}__pre_restore_")
    assert kept["size"] > 0
    assert "DROP DATABASE" in kept["drop"]
    assert kept["name"] in kept["drop"]
    assert "kept by restores" in listed.stdout
    assert "remove each when no longer needed" in listed.stdout
    [row] = [line for line in listed.stdout.splitlines() if kept["name"] in line]
    assert row.split()[0] == "previous"
    assert kept["drop"] in row


@pytest.mark.mysql
def test_list_shows_mariadb_safety_copies_and_previous_schemas(
    tmp_path: Path, mysql_db: DbParams
) -> None:
    mysql("CREATE TABLE item (id int PRIMARY KEY); INSERT INTO item VALUES (1)", db=mysql_db.name)
    site = write_project(tmp_path / "site", {"default": mysql_db})
    restored(site, "--in-place")
    restored(site)

    as_json = json.loads(run_opskit("--project-dir", site, "list", "--json").stdout)
    listed = run_opskit("--project-dir", site, "list").stdout

    kinds = {k["kind"]: k for k in as_json[0]["kept"]}
    assert set(kinds) == {"previous", "safety-copy"}
    copy = kinds["safety-copy"]
    assert copy["name"].startswith("pre-restore-")
    assert copy["drop"].startswith("rm -- ")
    assert (site / "db_backups" / copy["name"]).is_file()
    assert copy["size"] > 0
    assert kinds["previous"]["name"].startswith(f"{mysql_db.name}__pre_restore_")
    for item in kinds.values():
        assert item["name"] in listed
        assert item["drop"] in listed
