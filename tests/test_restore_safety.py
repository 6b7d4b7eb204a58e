"""Restore refuses bad archives before touching anything, and a failed load changes nothing."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from dbdata import adapter_for
from support.project import SUNDAY

from opskit import files
from opskit.archive import manifest as manifests
from opskit.archive import stream as archive
from opskit.backup import run_backup
from opskit.config import Config
from opskit.engines import DbParams
from opskit.report import Report, StepFailed
from opskit.restore import RestoreOptions, restore_archive

KEYS = ("test-only",)  # the conftest config's signing key


def good_backup(config: Config, db: DbParams) -> Path:
    adapter_for(db).populate()
    assert run_backup(config, {db.alias: db}, [db.alias], SUNDAY).exit_code == 0
    return next(config.backup_dir.glob("latest.*")).resolve()


def attempt(config: Config, db: DbParams, source: str | Path) -> Report:
    report = Report("restore")
    with contextlib.suppress(StepFailed):
        restore_archive(config, {db.alias: db}, db.alias, str(source), SUNDAY, report)
    return report


def copy_with_manifest(path: Path, folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    copy = folder / path.name
    shutil.copy(path, copy)
    shutil.copy(manifests.path_of(path), manifests.path_of(copy))
    return copy


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def wrong_checksum(path: Path) -> None:
    """A manifest that is signed but names other content (as bad memory or a bug could)."""
    manifest = manifests.read(path)
    manifest["sha256"] = "0" * 64
    manifests.write(manifests.sign(manifest, KEYS), manifests.path_of(path))


def edited_manifest(path: Path) -> None:
    """A manifest changed by someone without the project's key."""
    manifest = manifests.read(path)
    manifest["sha256"] = "0" * 64
    manifests.path_of(path).write_text(json.dumps(manifest))


def no_manifest(path: Path) -> None:
    manifests.path_of(path).unlink()


@pytest.mark.parametrize(
    ("damage", "step", "message"),
    [
        # The sha256 of a stream archive is taken as it is loaded: nothing is committed.
        (flip_byte, "load", "truncated or corrupt|changed while it was read"),
        (truncate, "verify", "truncated or replaced"),
        (empty, "verify", "truncated or replaced"),
        (wrong_checksum, "load", "changed while it was read"),
        (edited_manifest, "verify", "has a bad signature"),
        (no_manifest, "verify", "has no manifest"),
    ],
)
def test_a_damaged_archive_is_refused_and_the_database_is_unchanged(
    any_db: DbParams,
    config: Config,
    tmp_path: Path,
    damage: Callable[[Path], None],
    step: str,
    message: str,
) -> None:
    """Whatever is wrong with an archive or its manifest, the live database stays as it was."""
    latest = good_backup(config, any_db)
    bad = copy_with_manifest(latest, tmp_path / "bad")
    damage(bad)
    data = adapter_for(any_db)
    data.mutate()
    before = data.snapshot()
    report = attempt(config, any_db, bad)
    assert report.exit_code == 1
    assert report.failed()[0].name == step
    assert re.search(message, report.failed()[0].reason)
    assert data.snapshot() == before


def test_an_archive_of_another_engine_is_refused(
    sqlite_db: DbParams, pg_db: DbParams, config: Config
) -> None:
    latest = good_backup(config, sqlite_db)
    data = adapter_for(pg_db)
    data.populate()
    before = data.snapshot()
    report = attempt(config, pg_db, latest)
    assert report.exit_code == 1
    assert "is a sqlite backup but 'default' is postgresql" in report.failed()[0].reason
    assert data.snapshot() == before


def content_of(path: Path) -> bytes:
    with archive.open_content(path) as reader:
        return reader.read(-1)


def consistent_archive(like: Path, folder: Path, content: bytes) -> Path:
    """Write an archive + manifest that match each other, holding ``content``."""
    folder.mkdir(exist_ok=True)
    final = folder / like.name
    written = archive.write_stream(io.BytesIO(content), final, "zstd")
    files.commit(written.path, final)
    manifest = manifests.read(like)
    manifest.update(size=written.size, sha256=written.sha256, raw_size=written.raw_size)
    manifests.write(manifests.sign(manifest, KEYS), manifests.path_of(final))
    return final


def test_a_load_that_fails_part_way_leaves_the_database_as_it_was(
    any_db: DbParams, config: Config, tmp_path: Path
) -> None:
    latest = good_backup(config, any_db)
    content = bytearray(content_of(latest))
    if adapter_for(any_db).kind == "sqlite":
        # Junk after an SQLite file still opens, so damage pages inside it instead.
        content[4096:8192] = b"\xde\xad" * 2048
    else:
        # Most of the SQL runs, then it breaks.
        content += b"\nTHIS IS NOT SQL;\n"
    bad = consistent_archive(latest, tmp_path / "bad", bytes(content))
    data = adapter_for(any_db)
    data.mutate()
    before = data.snapshot()
    report = attempt(config, any_db, bad)
    assert report.exit_code == 1
    assert report.failed()[0].name == "load"
    assert data.snapshot() == before


def test_postgresql_restore_keeps_the_replaced_database_until_told_to_drop_it(
    pg_db: DbParams, config: Config
) -> None:
    from support.services import psql

    good_backup(config, pg_db)
    report = Report("restore")
    notes = restore_archive(config, {"default": pg_db}, "default", "latest", SUNDAY, report)
    assert report.exit_code == 0
    old = f"{pg_db.name}__pre_restore_20261122020000"
    assert psql(f"SELECT count(*) FROM pg_database WHERE datname = '{old}'") == "1"
    assert any(old in note and "DROP DATABASE" in note for note in notes)


def test_mysql_restore_writes_a_verified_safety_copy_first(
    mysql_db: DbParams, config: Config
) -> None:
    good_backup(config, mysql_db)
    report = Report("restore")
    in_place = RestoreOptions(in_place=True)
    dbs = {"default": mysql_db}
    notes = restore_archive(config, dbs, "default", "latest", SUNDAY, report, in_place)
    assert report.exit_code == 0
    safety = config.backup_dir / "pre-restore-20261122020000.sql.zst"
    assert manifests.read(safety)["sha256"] == archive.sha256_file(safety)
    assert any(str(safety) in note for note in notes)
    # A safety copy is not a rotation slot: latest still points at the nightly archive.
    assert (config.backup_dir / "latest.sql.zst").resolve().name == "0-Sunday.sql.zst"


def test_restoring_a_weekday_picks_that_slot(sqlite_db: DbParams, config: Config) -> None:
    data = adapter_for(sqlite_db)
    data.populate()
    run_backup(config, {"default": sqlite_db}, ["default"], SUNDAY)
    data.execute("DELETE FROM item")
    run_backup(config, {"default": sqlite_db}, ["default"], SUNDAY.replace(day=23))
    assert attempt(config, sqlite_db, "0-Sunday").exit_code == 0
    assert len(data.snapshot()["items"]) == 4
    assert attempt(config, sqlite_db, "Monday").exit_code == 0
    assert data.snapshot()["items"] == []
