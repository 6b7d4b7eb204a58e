"""A backup's commit survives a kill at every instant; the next run finishes or undoes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from dbdata import adapter_for
from support.project import run_opskit, write_project
from support.sites import backed_up_site

from opskit.archive import manifest as manifests
from opskit.archive import rotation
from opskit.archive import stream as archive
from opskit.engines import DbParams

POINTS = ("backup:manifest-pending", "backup:archive-renamed", "backup:manifest-renamed")


def project(tmp_path: Path, db: DbParams, opskit: str = "{}") -> Path:
    return write_project(tmp_path / "project", {"default": db}, opskit)


def killed_backup(site: Path, point: str) -> subprocess.CompletedProcess[str]:
    done = run_opskit("backup", cwd=site, env={"OPSKIT_TEST_KILL_AT": point})
    assert done.returncode == -signal.SIGKILL, done.stderr
    return done


def slot_archive(site: Path) -> Path:
    (latest,) = (site / "db_backups").glob("latest.*")
    return latest.resolve()


def verifies(site: Path) -> subprocess.CompletedProcess[str]:
    return run_opskit("verify", cwd=site)


@pytest.mark.parametrize("point", POINTS)
def test_a_kill_at_each_commit_point_leaves_a_slot_that_verifies_or_is_finished_next_run(
    sqlite_db: DbParams, tmp_path: Path, point: str
) -> None:
    """Killed anywhere in the commit, the slot is the old pair, or the next run completes it."""
    data = adapter_for(sqlite_db)
    site = backed_up_site(tmp_path / "project", sqlite_db)
    old = manifests.read(slot_archive(site))
    data.mutate()
    changed = data.snapshot()
    killed_backup(site, point)  # the same day: the slot that latest points at is replaced
    now = slot_archive(site)
    if point == "backup:manifest-pending":
        # Nothing was renamed: the previous archive and its manifest are as they were.
        assert manifests.read(now)["sha256"] == old["sha256"] == archive.sha256_file(now)
        assert verifies(site).returncode == 0
    # The next run completes (or sweeps) what was left, then backs up again.
    done = run_opskit("backup", cwd=site)
    assert done.returncode == 0, done.stderr
    if point == "backup:archive-renamed":
        assert "interrupted_commit" in done.stderr
        assert "completed the commit" in done.stderr
    assert verifies(site).returncode == 0
    leftovers = [p.name for p in (site / "db_backups").iterdir() if ".tmp-" in p.name]
    assert leftovers == []
    data.execute("DELETE FROM item")  # restore must bring back the state of the last backup
    assert run_opskit("restore", "--yes", cwd=site).returncode == 0
    assert data.snapshot() == {**changed, "sessions": 0}  # session data is never backed up


def test_a_restore_first_finishes_a_commit_cut_between_its_two_renames(
    sqlite_db: DbParams, tmp_path: Path
) -> None:
    """A restore right after such a kill restores the new archive, not a refused slot."""
    data = adapter_for(sqlite_db)
    site = backed_up_site(tmp_path / "project", sqlite_db)
    data.mutate()
    changed = data.snapshot()
    killed_backup(site, "backup:archive-renamed")
    assert verifies(site).returncode == 1  # new archive beside the old manifest, until finished
    data.execute("DELETE FROM item")
    done = run_opskit("restore", "--yes", cwd=site)
    assert done.returncode == 0, done.stderr
    assert "completed the commit" in done.stderr
    assert data.snapshot() == {**changed, "sessions": 0}  # session data is never backed up


@pytest.mark.parametrize("point", [*POINTS, "backup:old-folder-aside"])
def test_a_directory_archive_swap_never_leaves_the_slot_empty(
    pg_db: DbParams, tmp_path: Path, point: str
) -> None:
    """A folder archive is swapped in one step; the sweep never deletes the good previous one."""
    data = adapter_for(pg_db)
    site = backed_up_site(tmp_path / "project", pg_db, "{'FORMAT': 'directory'}")
    slot = slot_archive(site)
    before = manifests.read(slot)["sha256"]
    data.mutate()
    if point == "backup:old-folder-aside":
        # The two-rename fallback, for file systems without renameat2(RENAME_EXCHANGE).
        folder = site / "db_backups"
        new = folder / ".0-new.pgdir"
        new.mkdir()
        (new / "toc.dat").write_bytes(b"new")
        script = (
            "import sys; from pathlib import Path; from opskit.archive import rotation;"
            "rotation._exchange = None; rotation.exchange(Path(sys.argv[1]), Path(sys.argv[2]))"
        )
        env = {**os.environ, "OPSKIT_TEST_KILL_AT": point}
        exchange = subprocess.run(
            [sys.executable, "-c", script, str(new), str(slot)], env=env, check=False
        )
        assert exchange.returncode == -signal.SIGKILL
        assert not slot.exists()  # killed between the two renames
        assert rotation.recover_commits(folder)  # puts the old folder back
        assert slot.is_dir()
        assert manifests.read(slot)["sha256"] == before
        assert verifies(site).returncode == 0
        return
    killed_backup(site, point)
    assert slot.is_dir()
    done = run_opskit("backup", cwd=site)
    assert done.returncode == 0, done.stderr
    assert verifies(site).returncode == 0
    names = [p.name for p in (site / "db_backups").iterdir()]
    assert [n for n in names if ".tmp-" in n] == []


def test_switching_formats_deletes_only_files_that_opskit_manifests_name(
    sqlite_db: DbParams, tmp_path: Path
) -> None:
    """Files shaped like another format of the slot survive unless opskit's manifest names them."""
    adapter_for(sqlite_db).populate()
    site = project(tmp_path, sqlite_db)
    folder = site / "db_backups"
    folder.mkdir(mode=0o700)
    assert run_opskit("backup", "--compress", "gzip", cwd=site).returncode == 0
    # The slot is the weekday in the project's TIME_ZONE, as the backup saw it.
    slot = (folder / "latest.sqlite3.gz").readlink().name.removesuffix(".sqlite3.gz")
    assert slot in rotation.SLOTS
    assert (folder / f"{slot}.sqlite3.gz").is_file()
    theirs = [folder / f"{slot}.sqlite3.bak", folder / f"{slot}.tar"]
    for path in theirs:
        path.write_bytes(b"my own copy, not an opskit archive")
    done = run_opskit("backup", cwd=site)  # zstd: the .gz that opskit wrote goes
    assert done.returncode == 0, done.stderr
    assert not (folder / f"{slot}.sqlite3.gz").exists()
    assert not (folder / f"{slot}.sqlite3.gz.json").exists()
    for path in theirs:
        assert path.read_bytes() == b"my own copy, not an opskit archive"
    assert "unknown_file_kept" in done.stderr


def test_a_pending_manifest_that_does_not_match_is_swept_not_used(
    sqlite_db: DbParams, tmp_path: Path
) -> None:
    """A dead run's pending manifest is applied only if it describes the archive in the slot."""
    site = backed_up_site(tmp_path / "project", sqlite_db)
    slot = slot_archive(site)
    good = manifests.read(slot)
    forged = dict(good, sha256="1" * 64)
    pending = slot.with_name(f".{slot.name}.json.tmp-999999999-abcd1234")
    pending.write_text(json.dumps(forged))
    assert rotation.recover_commits(slot.parent) == []
    assert manifests.read(slot)["sha256"] == good["sha256"]
    assert rotation.remove_stale_tmp(slot.parent) == [pending]
