"""The server or the tools are not there: a stopped server, an unknown database, no pg_dump.

Each failure is one counted error with a line that says what and where, and the archives
written before stay as they were.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from dbdata import adapter_for
from support.faultkit import (
    assert_archives_verify,
    clean_env,
    cluster,
    state,
    step_failures,
    temp_files,
)
from support.project import run_opskit, write_project

from opskit.engines import DbParams


@pytest.mark.postgresql  # a private server of its own
def test_a_stopped_server_fails_backup_and_restore_naming_host_and_port(tmp_path: Path) -> None:
    with cluster() as pg:
        pg.sql("CREATE DATABASE shop")
        db = pg.params("shop")
        adapter_for(db).populate()
        site = write_project(tmp_path / "site", {"default": db})
        done = run_opskit("backup", cwd=site, env=clean_env())
        assert done.returncode == 0, done.stderr
        backups = site / "db_backups"
        before = state(backups)

        pg.stop()
        backup = run_opskit("backup", cwd=site, env=clean_env())
        restore = run_opskit("restore", "--yes", cwd=site, env=clean_env())

    for done in (backup, restore):
        assert done.returncode == 1, done.stderr
        (line,) = step_failures(done.stderr)
        assert f"127.0.0.1:{pg.port}" in line, line
        assert re.search("connection refused", line, re.I), line
        assert "Traceback" not in done.stderr
    assert "step=dump" in step_failures(backup.stderr)[0]
    assert state(backups) == before
    assert temp_files(backups) == []
    assert assert_archives_verify(backups) == 1


def test_an_unknown_database_is_one_error_naming_it(pg_db: DbParams, tmp_path: Path) -> None:
    missing = dataclasses.replace(pg_db, alias="gone", name=f"{pg_db.name}_missing")
    site = write_project(tmp_path / "site", {"default": pg_db, "gone": missing})
    done = run_opskit("backup", cwd=site, env=clean_env())
    assert done.returncode == 1, done.stderr
    (line,) = step_failures(done.stderr)
    assert "database=gone" in line
    assert f'database "{missing.name}" does not exist' in line
    assert "127.0.0.1:5432" in line
    assert state(site / "db_backups" / "gone") == {}
    assert assert_archives_verify(site / "db_backups") == 1  # the good database's archive


@pytest.mark.parametrize("how", ["empty-PG_BIN_DIR", "PATH-without-pg_dump"])
def test_a_missing_pg_dump_is_one_error_with_the_install_hint(
    pg_db: DbParams, tmp_path: Path, how: str
) -> None:
    site = write_project(tmp_path / "site", {"default": pg_db})
    done = run_opskit("backup", cwd=site, env=clean_env())
    assert done.returncode == 0, done.stderr
    backups = site / "db_backups"
    before = state(backups)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    if how == "empty-PG_BIN_DIR":
        env = clean_env(OPSKIT_PG_BIN_DIR=str(empty))
    else:
        env = clean_env(PATH=str(empty))

    done = run_opskit("backup", cwd=site, env=env)

    assert done.returncode == 1, done.stderr
    (line,) = step_failures(done.stderr)
    assert "pg_dump not found" in line
    if how == "empty-PG_BIN_DIR":
        assert str(empty) in line
    assert "install" in line
    assert "PG_BIN_DIR" in line
    assert "Traceback" not in done.stderr
    assert state(backups) == before
    assert temp_files(backups) == []


def test_a_missing_mariadb_dump_is_one_error_with_the_install_hint(
    mysql_db: DbParams, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    site = write_project(tmp_path / "site", {"default": mysql_db})
    done = run_opskit("backup", cwd=site, env=clean_env(OPSKIT_MYSQL_BIN_DIR=str(empty)))
    assert done.returncode == 1, done.stderr
    (line,) = step_failures(done.stderr)
    assert "mariadb-dump or mysqldump not found" in line
    assert str(empty) in line
    assert "install" in line
    assert "MYSQL_BIN_DIR" in line
    assert temp_files(site / "db_backups") == []
