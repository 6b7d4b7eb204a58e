"""The off-site commands as a user runs them: backup, offsite list, check, verify, restore."""

from __future__ import annotations

import filecmp
import json
import sqlite3
from pathlib import Path

from support.project import run_opskit, write_project
from support.restic_repo import local_repo

from opskit.engines import DbParams


def _project(tmp_path: Path, settings: dict[str, object]) -> tuple[Path, Path, Path]:
    site = tmp_path / "site"
    db = DbParams("default", "django.db.backends.sqlite3", str(site / "db.sqlite3"))
    write_project(site, {"default": db}, json.dumps({"OFFSITE": settings}).replace("true", "True"))
    media = site / "media"
    (media / "uploads").mkdir(parents=True)
    (media / "uploads" / "a.txt").write_text("first upload\n")
    (media / "b.bin").write_bytes(bytes(range(256)) * 1000)
    module = next(site.glob("settings_*.py"))
    with module.open("a") as fh:
        fh.write(f"MEDIA_ROOT = {str(media)!r}\n")
    with sqlite3.connect(db.name) as conn:
        conn.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO item (name) VALUES (?)", [(f"n{i}",) for i in range(500)])
    return site, Path(db.name), media


def _rows(path: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute("SELECT id, name FROM item ORDER BY id"))


def test_backup_list_check_verify_and_restore_database_and_media(tmp_path: Path) -> None:
    repo = local_repo(tmp_path)
    site, dbfile, media = _project(tmp_path, repo.settings(media=True, keep={"daily": 7}))
    done = run_opskit("backup", cwd=site)
    assert done.returncode == 0, done.stderr
    before_rows = _rows(dbfile)
    kept = tmp_path / "media-at-backup"
    import shutil

    shutil.copytree(media, kept)

    listed = run_opskit("offsite", "list", cwd=site)
    assert listed.returncode == 0, listed.stderr
    assert "default" in listed.stdout
    assert "media:media" in listed.stdout
    assert run_opskit("offsite", "list", "--all-hosts", "--json", cwd=site).returncode == 0

    checked = run_opskit("check", "--offsite", "--only", "settings", cwd=site)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "OK    offsite:offsite:default" in checked.stdout
    assert "OK    offsite:offsite:media:media" in checked.stdout

    verified = run_opskit("verify", "--offsite", "--read-data-subset", "1/7", cwd=site)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "sha256 matches" in verified.stdout

    # Change the data and the media, then bring both back from the repository.
    with sqlite3.connect(dbfile) as conn:
        conn.execute("DELETE FROM item WHERE id % 3 = 0")
        conn.execute("INSERT INTO item (name) VALUES ('new')")
    (media / "uploads" / "a.txt").write_text("changed\n")
    (media / "c.txt").write_text("added after the backup\n")
    (media / "b.bin").unlink()

    done = run_opskit("restore", "--from", "offsite", "latest", "--yes", cwd=site)
    assert done.returncode == 0, done.stderr
    assert _rows(dbfile) == before_rows

    done = run_opskit("restore", "--media", "--from", "offsite", cwd=site)
    assert done.returncode == 0, done.stderr
    assert "rm -rf -- " in done.stderr
    cmp = filecmp.dircmp(media, kept)
    assert not cmp.left_only
    assert not cmp.right_only
    assert not cmp.diff_files
    assert filecmp.cmp(media / "uploads" / "a.txt", kept / "uploads" / "a.txt", shallow=False)
    previous = next(site.glob("media.before-restore-*"))
    assert (previous / "c.txt").read_text() == "added after the backup\n"


def test_bad_offsite_settings_are_one_line_and_nothing_runs(tmp_path: Path) -> None:
    repo = local_repo(tmp_path)
    site, _, _ = _project(tmp_path, repo.settings(keep={"dayly": 7}))
    done = run_opskit("backup", cwd=site)
    assert done.returncode == 1
    assert "OPSKIT['OFFSITE']['keep']: 'dayly' is not a keep rule" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (site / "db_backups").exists()


def test_media_restore_without_snapshots_says_how_to_get_them(tmp_path: Path) -> None:
    repo = local_repo(tmp_path)
    site, _, media = _project(tmp_path, repo.settings(media=True))
    done = run_opskit("restore", "--media", cwd=site)
    assert done.returncode == 1
    assert "MEDIA_SNAPSHOTS" in done.stderr
    assert "--from offsite" in done.stderr
    assert (media / "uploads" / "a.txt").read_text() == "first upload\n"
