"""A full disk: the backup folder on a 2 MB tmpfs. The dump fails; nothing earlier is lost."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbdata import adapter_for
from support.faultkit import (
    archive_of,
    assert_archives_verify,
    clean_env,
    fill,
    started_with,
    state,
    step_failures,
    temp_files,
    tmpfs,
)
from support.project import run_opskit, write_project

from opskit.engines import DbParams


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB file system for the backups."""
    with tmpfs(tmp_path / "disk", "2m") as folder:
        yield folder


# Every opskit run here is marked with this in its environment, and so are its children.
MARK = "FAULT_TEST_RUN"


def backup(site: Path, disk: Path) -> tuple[int, str]:
    env = clean_env(**{MARK: str(site)})
    done = run_opskit("--backup-dir", disk / "db_backups", "backup", cwd=site, env=env)
    return done.returncode, done.stderr


def backed_up(db: DbParams, tmp_path: Path, disk: Path) -> tuple[Path, Path, dict[str, str]]:
    """A project on ``db`` backed up once onto the disk: the project, its backup folder on the
    disk, and what that folder holds."""
    site = write_project(tmp_path / "site", {"default": db})
    code, stderr = backup(site, disk)
    assert code == 0, stderr
    backups = disk / "db_backups"
    return site, backups, state(backups)


def small_table(db: DbParams) -> None:
    adapter_for(db).execute("CREATE TABLE note (id INTEGER PRIMARY KEY, body TEXT)")
    adapter_for(db).execute(
        "INSERT INTO note (id, body) VALUES (?, ?)", params=[(1, "small"), (2, "earlier")]
    )


def add_random(db: DbParams, *sizes: int) -> None:
    """Add rows of random bytes, which no compressor can shrink."""
    adapter = adapter_for(db)
    blob = {"postgresql": "bytea", "mysql": "longblob"}.get(adapter.kind, "BLOB")
    adapter.execute(f"CREATE TABLE ballast (id INTEGER PRIMARY KEY, data {blob})")
    adapter.execute(
        "INSERT INTO ballast (id, data) VALUES (?, ?)",
        params=[(i, os.urandom(size)) for i, size in enumerate(sizes)],
    )


def test_a_dump_that_fills_the_disk_fails_and_leaves_the_earlier_archive(
    any_db: DbParams, tmp_path: Path, disk: Path
) -> None:
    small_table(any_db)
    site, backups, before = backed_up(any_db, tmp_path, disk)
    first = archive_of(backups)

    add_random(any_db, *[1 << 20] * 6)  # three times the disk
    code, stderr = backup(site, disk)

    assert code == 1, stderr
    assert "event=step_failed step=dump" in stderr
    assert "opskit backup: 1 error," in stderr
    assert temp_files(backups) == []
    assert state(backups) == before
    assert archive_of(backups) == first
    assert assert_archives_verify(backups) == 1
    # The dump tool was stopped, not left writing into a closed pipe.
    assert started_with(MARK, str(site)) == []
    assert f"no space left on the device of {backups}" in stderr
    assert "free space or set --backup-dir elsewhere" in stderr


def test_a_disk_without_room_for_last_nights_archive_is_refused_before_dumping(
    sqlite_db: DbParams, tmp_path: Path, disk: Path
) -> None:
    add_random(sqlite_db, 600_000)
    site, backups, before = backed_up(sqlite_db, tmp_path, disk)
    fill(disk, leave=100_000)

    code, stderr = backup(site, disk)

    assert code == 1, stderr
    assert "event=step_failed step=space" in stderr
    assert f"not enough free space in {backups}" in stderr
    assert "needed (the previous archive plus 10%)" in stderr
    assert "event=dump_started" not in stderr  # refused before any dump began
    assert temp_files(backups) == []
    assert state(backups) == before
    assert assert_archives_verify(backups) == 1


def test_a_mariadb_restore_whose_safety_copy_does_not_fit_changes_nothing(
    mysql_db: DbParams, tmp_path: Path, disk: Path
) -> None:
    small_table(mysql_db)
    site, backups, before = backed_up(mysql_db, tmp_path, disk)
    add_random(mysql_db, *[1 << 20] * 6)  # the safety copy of this cannot fit
    data = adapter_for(mysql_db)
    live = data.query("SELECT id, SHA2(data, 256) FROM ballast ORDER BY id")

    done = run_opskit(
        "--backup-dir", backups, "restore", "--yes", "--in-place", cwd=site, env=clean_env()
    )

    assert done.returncode == 1, done.stderr
    (line,) = step_failures(done.stderr)
    assert "step=load" in line
    assert f"no space left on the device of {backups}" in line
    assert "Traceback" not in done.stderr
    # The safety copy comes first: it failed, so the tables were never dropped.
    assert data.query("SELECT id, SHA2(data, 256) FROM ballast ORDER BY id") == live
    assert sorted(data.tables()) == ["ballast", "note"]
    assert temp_files(backups) == []
    assert state(backups) == before


def test_an_sqlite_restore_without_room_beside_the_database_changes_nothing(
    tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "dbdisk", "8m") as dbdisk:
        db = DbParams(
            alias="default",
            django_engine="django.db.backends.sqlite3",
            name=str(dbdisk / "db.sqlite3"),
        )
        small_table(db)
        add_random(db, 2_500_000)
        site = write_project(tmp_path / "site", {"default": db})
        done = run_opskit("backup", cwd=site, env=clean_env())
        assert done.returncode == 0, done.stderr
        data = adapter_for(db)
        data.execute("DELETE FROM ballast")
        with sqlite3.connect(db.name) as conn:
            conn.execute("VACUUM")
        conn.close()
        fill(dbdisk, leave=1_000_000)  # the 2.5 MB database cannot be written beside it
        before = data.query("SELECT * FROM note ORDER BY id"), data.query("SELECT * FROM ballast")
        backups = site / "db_backups"
        archives = state(backups)

        done = run_opskit("restore", "--yes", cwd=site, env=clean_env())

        after = data.query("SELECT * FROM note ORDER BY id"), data.query("SELECT * FROM ballast")
        assert after == before
        assert list(dbdisk.glob(".db.sqlite3.tmp-*")) == []
        assert state(backups) == archives
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        (line,) = step_failures(done.stderr)
        assert "step=load" in line
        assert f"no space left on the device of {dbdisk}" in line
