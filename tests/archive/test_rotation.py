"""Weekday rotation: names, the latest link, and failed runs that must not damage anything."""

from __future__ import annotations

import dataclasses
import os
import stat
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from dbdata import adapter_for
from support.mysql_lock import table_locked, waiting_on_the_lock
from support.project import SUNDAY
from support.waiting import wait_for

from opskit.archive import manifest as manifests
from opskit.archive import rotation
from opskit.archive import stream as archive
from opskit.backup import run_backup
from opskit.config import Config
from opskit.engines import DbParams
from opskit.errors import ConfigError
from opskit.report import Report


def backup(config: Config, db: DbParams, when: datetime = SUNDAY) -> Report:
    return run_backup(config, {db.alias: db}, [db.alias], when)


def state(folder: Path) -> dict[str, str]:
    """Every file in a backup folder with its content hash, and where latest points."""
    files = {
        p.name: (archive.sha256_file(p) if not p.is_symlink() else os.readlink(p))
        for p in sorted(folder.iterdir())
        if (p.is_file() or p.is_symlink()) and p.suffix != ".lock"  # the lock holds a pid
    }
    return files


@pytest.mark.parametrize(
    ("day", "slot"),
    [
        (22, "0-Sunday"),
        (23, "1-Monday"),
        (24, "2-Tuesday"),
        (25, "3-Wednesday"),
        (26, "4-Thursday"),
        (27, "5-Friday"),
        (28, "6-Saturday"),
    ],
)
def test_each_weekday_has_its_slot_name(day: int, slot: str) -> None:
    assert rotation.slot_for(datetime(2026, 11, day, 23, 59)) == slot


@pytest.mark.parametrize("text", ["1", "Monday", "monday", "mon", "1-Monday", " 1-monday "])
def test_weekday_sources_are_accepted_in_every_spelling(text: str) -> None:
    assert rotation.parse_slot(text) == "1-Monday"


@pytest.mark.parametrize("text", ["7", "Mondays", "", "-1", "latest"])
def test_a_bad_weekday_is_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ConfigError, match=r"not a weekday.*use latest, 0-6"):
        rotation.parse_slot(text)


def test_a_week_of_backups_fills_seven_slots_and_latest_follows(
    sqlite_db: DbParams, config: Config
) -> None:
    adapter_for(sqlite_db).populate()
    for offset in range(9):  # Sunday to the next Monday
        report = backup(config, sqlite_db, SUNDAY + timedelta(days=offset))
        assert report.exit_code == 0
    names = sorted(p.name for p in config.backup_dir.glob("*.zst"))
    assert names == sorted([f"{s}.sqlite3.zst" for s in rotation.SLOTS] + ["latest.sqlite3.zst"])
    link = config.backup_dir / "latest.sqlite3.zst"
    assert link.is_symlink()
    assert os.readlink(link) == "1-Monday.sqlite3.zst"
    for slot in rotation.SLOTS:
        manifest = manifests.read(config.backup_dir / f"{slot}.sqlite3.zst")
        assert manifest["engine"] == "sqlite"
        assert manifest["verified"] is True


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o000])
def test_backup_files_are_0600_and_folders_0700(
    sqlite_db: DbParams, config: Config, umask: int
) -> None:
    """Whatever the umask, every file a backup writes is 0600 and every folder it makes 0700."""
    adapter_for(sqlite_db).populate()
    other = dataclasses.replace(sqlite_db, alias="other")
    old = os.umask(umask)
    try:
        run_backup(config, {"default": sqlite_db, "other": other}, ["default", "other"], SUNDAY)
    finally:
        os.umask(old)
    for folder in (config.backup_dir, config.backup_dir / "other"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        files = [p for p in folder.iterdir() if p.is_file() and not p.is_symlink()]
        names = sorted(p.name for p in files)
        assert names == [
            ".opskit-backup.lock",
            ".opskit-folder.json",
            ".opskit-history.json",
            "0-Sunday.sqlite3.zst",
            "0-Sunday.sqlite3.zst.json",
        ]
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert (config.backup_dir / "other" / "latest.sqlite3.zst").exists()


def test_switching_compression_replaces_the_slot_and_the_latest_link(
    sqlite_db: DbParams, config: Config
) -> None:
    adapter_for(sqlite_db).populate()
    backup(config, sqlite_db)
    backup(dataclasses.replace(config, compress="gzip"), sqlite_db)
    names = sorted(p.name for p in config.backup_dir.iterdir() if not p.name.startswith("."))
    assert names == ["0-Sunday.sqlite3.gz", "0-Sunday.sqlite3.gz.json", "latest.sqlite3.gz"]


def test_a_failed_backup_leaves_earlier_archives_and_latest_untouched(
    pg_db: DbParams, config: Config
) -> None:
    adapter_for(pg_db).populate()
    assert backup(config, pg_db).exit_code == 0
    before = state(config.backup_dir)
    refused = dataclasses.replace(pg_db, user="no_such_role")  # the server turns it away
    report = backup(config, refused)  # same weekday slot as the good archive
    assert report.exit_code == 1
    assert report.failed()[0].name == "dump"
    assert "127.0.0.1" in report.failed()[0].reason
    assert state(config.backup_dir) == before


def test_stale_temp_files_of_dead_runs_are_removed_by_the_next_run(
    sqlite_db: DbParams, config: Config
) -> None:
    adapter_for(sqlite_db).populate()
    rotation.ensure_dir(config.backup_dir)
    stale = config.backup_dir / ".0-Sunday.sqlite3.zst.tmp-999999999"
    stale.write_bytes(b"partial")
    alive = config.backup_dir / f".1-Monday.sqlite3.zst.tmp-{os.getppid()}"
    alive.write_bytes(b"someone else's run")
    assert backup(config, sqlite_db).exit_code == 0
    assert not stale.exists()
    assert alive.exists()  # a running process's temp file is not ours to delete


def _children_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_line = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        comm = stat_line[stat_line.index("(") + 1 : stat_line.rindex(")")]
        ppid = int(stat_line[stat_line.rindex(")") + 2 :].split()[1])
        # Only the dump itself, not the --version/--help probes run before it.
        dumping = b"--single-transaction" in cmdline
        if comm == name and ppid == os.getpid() and dumping:
            found.append(int(entry.name))
    return found


def test_killing_the_dump_tool_mid_stream_fails_the_step_and_damages_nothing(
    mysql_db: DbParams, config: Config
) -> None:
    data = adapter_for(mysql_db)
    data.populate()
    data.execute("CREATE TABLE zz_locked (id int)", "INSERT INTO zz_locked VALUES (1)")
    assert backup(config, mysql_db).exit_code == 0
    before = state(config.backup_dir)

    # Hold a write lock on the last table: the dump streams the others, then waits on it.
    result: list[Report] = []
    worker = threading.Thread(target=lambda: result.append(backup(config, mysql_db)))
    with table_locked(mysql_db):
        worker.start()
        try:
            pids = wait_for(
                lambda: _children_named("mariadb-dump") or _children_named("mysqldump"),
                "the dump tool to start",
            )
            wait_for(lambda: waiting_on_the_lock(mysql_db), "the dump to wait on the locked table")
            temp = list(config.backup_dir.glob(".0-Sunday.sql.zst.tmp-*"))
            assert temp, "the backup should be writing its temp file"
            os.kill(pids[0], 9)
        finally:
            worker.join(60)
    report = result[0]
    assert report.exit_code == 1
    assert report.failed()[0].name == "dump"
    assert "killed by signal 9" in report.failed()[0].reason
    assert state(config.backup_dir) == before  # earlier archive, manifest, latest: identical
