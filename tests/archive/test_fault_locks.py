"""Two runs of one job on one database: the second fails fast naming the first, or waits.

A MariaDB dump is held in the middle of its run by a table lock the test holds (the technique
of test_interrupt.py), so "the first run is still going" is a fact, not a race.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbdata import adapter_for
from support.faultkit import (
    Run,
    assert_archives_verify,
    children,
    clean_env,
    holds_open,
    running,
    sigkill,
    state,
    step_failures,
    temp_files,
)
from support.mysql_lock import table_locked
from support.project import run_opskit, write_project
from support.waiting import wait_for

from opskit.engines import DbParams

DUMPS = ("mariadb-dump", "mysqldump")


@pytest.fixture
def site(mysql_db: DbParams, tmp_path: Path) -> Path:
    """A MariaDB project, backed up once, with a table the test can lock."""
    data = adapter_for(mysql_db)
    data.populate()
    data.execute("CREATE TABLE zz_locked (id int)", "INSERT INTO zz_locked VALUES (1)")
    site = write_project(tmp_path / "site", {"default": mysql_db})
    done = run_opskit("backup", cwd=site, env=clean_env())
    assert done.returncode == 0, done.stderr
    return site


def dumping(run: Run) -> int:
    """Wait until ``run``'s dump tool is streaming (not one of its --version probes)."""
    (dump,) = wait_for(
        lambda: [
            p for p in children(run.pid) if p.comm in DUMPS and "--single-transaction" in p.argv
        ],
        "the dump tool to start",
    )
    return dump.pid


@contextlib.contextmanager
def held_at_its_dump(site: Path, db: DbParams, *args: str) -> Iterator[Run]:
    """``opskit *args`` (a backup, or an in-place restore's safety copy) with its dump tool
    waiting on the locked table, its lock held, for the block. Stopped if the block fails;
    else the caller lets it finish."""
    with table_locked(db):
        first = Run(*args, cwd=site)
        try:
            dumping(first)
            yield first
        except BaseException:
            first.stop()
            raise


def test_a_second_backup_fails_fast_naming_the_first_which_succeeds(
    site: Path, mysql_db: DbParams
) -> None:
    backups = site / "db_backups"
    before = state(backups)
    with held_at_its_dump(site, mysql_db, "backup") as first:
        first_temp = wait_for(lambda: temp_files(backups), "the first run's temp file")
        second = run_opskit("backup", cwd=site, env=clean_env(), timeout=30)
        assert temp_files(backups) == first_temp  # the second run did not touch it
        assert state(backups) == before
    done = first.finish()

    assert second.returncode == 1, second.stderr
    (line,) = step_failures(second.stderr)
    assert "step=lock" in line
    assert f"another opskit backup of 'default' is running (pid {first.pid})" in line
    assert "--lock-wait" in line
    assert "event=dump_started" not in second.stderr
    assert done.returncode == 0, done.stderr
    assert temp_files(backups) == []
    assert assert_archives_verify(backups) == 1


def test_with_lock_wait_the_second_backup_waits_for_the_first_and_succeeds(
    site: Path, mysql_db: DbParams
) -> None:
    backups = site / "db_backups"
    with held_at_its_dump(site, mysql_db, "backup") as first:
        second = Run("backup", "--lock-wait", "30", cwd=site)
        try:
            wait_for(
                lambda: any(holds_open(second.pid, p) for p in backups.glob(".opskit-*.lock")),
                "the second run to wait on the lock",
            )
            assert not [p for p in children(second.pid) if p.comm in DUMPS]
        except BaseException:
            second.stop()
            raise
    first_done = first.finish()
    second_done = second.finish()

    assert first_done.returncode == 0, first_done.stderr
    assert second_done.returncode == 0, second_done.stderr
    assert step_failures(second_done.stderr) == []
    assert temp_files(backups) == []
    assert assert_archives_verify(backups) == 1


def test_the_lock_of_a_killed_backup_does_not_block_the_next_one(
    site: Path, mysql_db: DbParams
) -> None:
    backups = site / "db_backups"
    before = state(backups)
    with table_locked(mysql_db):
        killed = Run("backup", cwd=site)
        try:
            orphan = dumping(killed)
            dead_temp = wait_for(lambda: temp_files(backups), "the temp file")
            killed.signal(signal.SIGKILL)
            assert killed.finish().returncode == -signal.SIGKILL
            # Its dump tool lives on (stopped here): it must not hold the lock for its parent.
            with contextlib.suppress(ProcessLookupError):
                os.kill(orphan, signal.SIGSTOP)
        finally:
            killed.stop()
    try:
        assert state(backups) == before
        assert temp_files(backups) == dead_temp
        (lock,) = backups.glob(".opskit-backup*.lock")
        assert lock.read_text().split()[0] == str(killed.pid)  # a dead pid stays in the file

        done = run_opskit("backup", cwd=site, env=clean_env(), timeout=60)

        assert done.returncode == 0, done.stderr
        assert "another opskit backup" not in done.stderr
        assert temp_files(backups) == []  # the killed run's temp file was swept
        assert assert_archives_verify(backups) == 1
    finally:
        sigkill(orphan)
    wait_for(lambda: not running(orphan), "the orphaned dump tool to end")


def assert_refused_for(second: subprocess.CompletedProcess[str], first: Run) -> None:
    """``second`` failed its one step, naming the restore ``first`` that holds the lock."""
    assert second.returncode == 1, second.stderr
    (line,) = step_failures(second.stderr)
    assert f"another opskit restore of 'default' is running (pid {first.pid})" in line


def test_a_second_restore_of_the_same_database_is_refused_while_the_first_runs(
    site: Path, mysql_db: DbParams
) -> None:
    data = adapter_for(mysql_db)
    data.mutate()
    backups = site / "db_backups"
    with held_at_its_dump(site, mysql_db, "restore", "--yes", "--in-place") as first:
        before = data.snapshot()
        second = run_opskit("restore", "--yes", cwd=site, env=clean_env(), timeout=30)
        assert data.snapshot() == before
    done = first.finish()

    assert_refused_for(second, first)
    assert done.returncode == 0, done.stderr
    assert temp_files(backups) == []


def test_a_backup_is_refused_while_a_restore_of_the_same_database_runs(
    site: Path, mysql_db: DbParams
) -> None:
    # A backup taken mid-restore would dump a half-loaded database and could become latest.
    data = adapter_for(mysql_db)
    data.mutate()
    backups = site / "db_backups"
    before = state(backups)
    with held_at_its_dump(site, mysql_db, "restore", "--yes", "--in-place") as first:
        second = run_opskit("backup", cwd=site, env=clean_env(), timeout=30)
    done = first.finish()

    assert_refused_for(second, first)
    assert done.returncode == 0, done.stderr
    # The refused backup touched no archive (the restore adds only its safety copy).
    after = state(backups)
    assert {k: v for k, v in after.items() if k in before} == before
