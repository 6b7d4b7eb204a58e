"""Local media snapshots: per weekday, unchanged files hard-linked, restored as a full copy."""

from __future__ import annotations

import dataclasses
import filecmp
import os
from datetime import timedelta
from pathlib import Path

import pytest
from dbdata import adapter_for
from support.project import SUNDAY

from opskit.backup import run_backup
from opskit.config import Config, build_config
from opskit.engines import DbParams
from opskit.errors import ConfigError
from opskit.offsite.fetch import restore_local_media
from opskit.report import Report


def _media(root: Path) -> Path:
    (root / "uploads").mkdir(parents=True)
    (root / "uploads" / "a.txt").write_text("first\n")
    (root / "big.bin").write_bytes(os.urandom(200_000))
    os.symlink("big.bin", root / "alias.bin")
    return root


def test_unchanged_files_cost_nothing_and_live_edits_never_reach_a_snapshot(
    tmp_path: Path, config: Config, sqlite_db: DbParams
) -> None:
    adapter_for(sqlite_db).populate()
    media = _media(tmp_path / "site" / "media")
    cfg = dataclasses.replace(config, media_snapshots=(media,))
    dbs = {"default": sqlite_db}
    assert run_backup(cfg, dbs, ["default"], SUNDAY).exit_code == 0
    (media / "uploads" / "a.txt").write_text("second\n")
    report = run_backup(cfg, dbs, ["default"], SUNDAY + timedelta(days=1))
    assert report.exit_code == 0, report.failed()
    snaps = cfg.backup_dir / "media" / "media"
    sunday, monday = snaps / "0-Sunday", snaps / "1-Monday"
    assert (snaps / "latest").resolve() == monday
    # The unchanged file is one inode in both snapshots; the changed one has its own copy.
    assert (sunday / "big.bin").stat().st_ino == (monday / "big.bin").stat().st_ino
    assert (monday / "uploads" / "a.txt").read_text() == "second\n"
    assert (sunday / "uploads" / "a.txt").read_text() == "first\n"
    assert os.readlink(monday / "alias.bin") == "big.bin"
    # No snapshot shares an inode with the live folder: writing in place changes no snapshot.
    with (media / "big.bin").open("r+b") as fh:
        fh.write(b"overwritten in place")
    assert (sunday / "big.bin").read_bytes()[:20] != b"overwritten in place"

    report = Report("restore")
    notes = restore_local_media(cfg, "0-Sunday", SUNDAY + timedelta(days=1, hours=1), report)
    assert report.exit_code == 0, report.failed()
    cmp = filecmp.dircmp(media, sunday)
    assert not cmp.left_only
    assert not cmp.right_only
    assert not cmp.diff_files
    assert (media / "uploads" / "a.txt").read_text() == "first\n"
    assert (media / "big.bin").stat().st_ino != (sunday / "big.bin").stat().st_ino
    (previous,) = media.parent.glob("media.before-restore-*")
    assert (previous / "uploads" / "a.txt").read_text() == "second\n"
    assert f"rm -rf -- '{previous}'" in notes[0]


def test_media_snapshots_settings_are_checked(tmp_path: Path) -> None:
    def build(value: object, media_root: Path | None = None) -> Config:
        return build_config(
            project_dir=tmp_path,
            settings_module="s",
            settings_opskit={"MEDIA_SNAPSHOTS": value},
            media_root=media_root,
        )

    assert build(True, tmp_path / "m").media_snapshots == (tmp_path / "m",)
    assert build(["up"]).media_snapshots == (tmp_path / "up",)
    assert build(False).media_snapshots == ()
    with pytest.raises(ConfigError, match="MEDIA_SNAPSHOTS'] is True but the project has no"):
        build(True)
