"""Off-site push to a real restic repository: snapshots, tags, sidecar, and failures as a step."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from dbdata import adapter_for
from support.project import SUNDAY
from support.restic_repo import local_repo, plant_stale_lock, with_offsite
from support.services import unavailable

from opskit.archive import formats
from opskit.archive import stream as archive
from opskit.backup import run_backup
from opskit.config import Config
from opskit.engines import DbParams
from opskit.offsite.catalog import snapshots
from opskit.offsite.fetch import restore_database
from opskit.offsite.restic import Restic
from opskit.report import Report, StepFailed
from opskit.restore import RestoreOptions


def _backup(config: Config, db: DbParams, when: datetime = SUNDAY) -> Report:
    return run_backup(config, {db.alias: db}, [db.alias], when)


def from_offsite(cfg: Config, db: DbParams, snapshot: str, report: Report) -> None:
    """Restore ``db`` from the off-site ``snapshot``, an hour after the backup, with --drop-old."""
    restore_database(
        cfg,
        {db.alias: db},
        db.alias,
        snapshot,
        SUNDAY + timedelta(hours=1),
        report,
        RestoreOptions(drop_old=True),
    )


def _latest_verifies(config: Config) -> Path:
    """latest names tonight's archive, and it matches its signed manifest."""
    from opskit.archive import manifest as manifests

    latest = (config.backup_dir / "latest.sqlite3.zst").resolve()
    record = manifests.read(latest)
    manifests.check_signature(latest, record, config.signing_keys)
    formats.of(latest).check_checksum(latest, record)
    return latest


def test_push_makes_a_tagged_dump_snapshot_and_its_sidecar(
    tmp_path: Path, config: Config, sqlite_db: DbParams
) -> None:
    repo = local_repo(tmp_path)
    cfg = with_offsite(config, repo.settings(host="h1", project="site"))
    adapter_for(sqlite_db).populate()
    report = _backup(cfg, sqlite_db)
    assert report.exit_code == 0, report.failed()
    assert [s.name for s in report.steps].count("offsite") == 1
    snaps = repo.snapshots()
    kinds = sorted(t for s in snaps for t in s["tags"] if t.startswith("kind="))
    assert kinds == ["kind=dump", "kind=manifest"]
    dump = next(s for s in snaps if "kind=dump" in s["tags"])
    assert dump["hostname"] == "h1"
    assert {"opskit", "project=site", "db=default"} <= set(dump["tags"])
    assert dump["paths"] == ["/site/default.sqlite3"]
    runs = {t for s in snaps for t in s["tags"] if t.startswith("run=")}
    assert len(runs) == 1
    # The dump went uncompressed: it is the local archive's content, byte for byte.
    latest = next(cfg.backup_dir.glob("latest.*")).resolve()
    with archive.open_content(latest) as reader:
        content = reader.read(-1)
    assert repo.read("dump", dump["id"], "/site/default.sqlite3") == content
    side = json.loads(
        repo.restic("dump", "--tag", "kind=manifest", "latest", "/site/default.opskit.json").stdout
    )
    assert side["size"] == len(content)
    assert (
        side["manifest"]["sha256"]
        == json.loads(latest.with_name(latest.name + ".json").read_text())["sha256"]
    )


def test_restore_from_offsite_brings_back_the_pushed_state(
    tmp_path: Path, config: Config, any_db: DbParams
) -> None:
    repo = local_repo(tmp_path)
    cfg = with_offsite(config, repo.settings())
    data = adapter_for(any_db)
    data.populate()
    before = data.snapshot()
    assert _backup(cfg, any_db).exit_code == 0
    # The local archives are gone: only the off-site copy is left.
    for path in cfg.backup_dir.glob("*"):
        if path.is_file() or path.is_symlink():
            path.unlink()
    data.mutate()
    assert data.snapshot() != before
    report = Report("restore")
    from_offsite(cfg, any_db, "latest", report)
    assert report.exit_code == 0, report.failed()
    assert data.snapshot() == {**before, "sessions": 0}


def test_a_wrong_password_is_one_failed_step_and_latest_stays(
    tmp_path: Path, config: Config, sqlite_db: DbParams
) -> None:
    repo = local_repo(tmp_path)
    adapter_for(sqlite_db).populate()
    assert _backup(config, sqlite_db).exit_code == 0
    before = (config.backup_dir / "latest.sqlite3.zst").resolve()
    repo.password_file.write_text("not-the-password\n")
    cfg = with_offsite(config, repo.settings())
    report = _backup(cfg, sqlite_db, SUNDAY + timedelta(days=1))
    assert report.exit_code == 1
    (step,) = report.failed()
    assert step.name == "offsite"
    assert "wrong password" in step.reason
    assert "\n" not in step.reason
    # The new local archive committed and latest moved to it: the push is after that.
    now = _latest_verifies(config)
    assert now != before
    assert now.name.startswith("1-Monday")
    assert "not-the-password" not in step.reason


def test_a_missing_repository_and_a_stale_lock_fail_with_one_line(
    tmp_path: Path, config: Config, sqlite_db: DbParams
) -> None:
    adapter_for(sqlite_db).populate()
    repo = local_repo(tmp_path)
    missing = repo.settings(repository=str(tmp_path / "nowhere"), name="gone")
    cfg = with_offsite(config, missing, repo.settings(name="ok"))
    report = _backup(cfg, sqlite_db)
    assert report.exit_code == 1
    (step,) = report.failed()
    assert "gone" in step.reason
    assert "no restic repository" in step.reason
    _latest_verifies(config)
    # The other destination got its snapshot all the same.
    assert len(snapshots(Restic(cfg.offsite[1]), kind="dump")) == 1

    # A stale exclusive lock (a killed prune, say) is named as such.
    plant_stale_lock(repo)
    report = _backup(with_offsite(config, repo.settings()), sqlite_db, SUNDAY + timedelta(1))
    (step,) = report.failed()
    assert "locked" in step.reason
    assert "restic unlock" in step.reason
    assert _latest_verifies(config).name.startswith("1-Monday")


def test_a_full_repository_disk_is_one_failed_step(
    tmp_path: Path, config: Config, sqlite_db: DbParams
) -> None:
    """The repository on a 6 MB tmpfs; a 24 MB incompressible dump cannot fit."""
    import os
    import sqlite3
    import subprocess

    if os.geteuid() != 0:
        unavailable("root (to mount a tmpfs)")
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], check=False)
    if done.returncode:
        unavailable("a tmpfs mount")
    try:
        repo = local_repo(mnt)
        Path(sqlite_db.name).parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(sqlite_db.name) as conn:
            conn.execute("CREATE TABLE blob (data BLOB)")
            for _ in range(24):
                conn.execute("INSERT INTO blob VALUES (?)", (os.urandom(1 << 20),))
        # restic retries a failing write for minutes: the timeout bounds it, the cause stays.
        report = _backup(with_offsite(config, repo.settings(timeout=90)), sqlite_db)
        assert report.exit_code == 1
        (step,) = report.failed()
        assert step.name == "offsite", step.reason
        assert "is full" in step.reason, step.reason
        _latest_verifies(config)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_directory_archive_goes_as_its_folder_and_comes_back(
    tmp_path: Path, config: Config, pg_db: DbParams
) -> None:
    import dataclasses

    repo = local_repo(tmp_path)
    cfg = with_offsite(dataclasses.replace(config, format="directory"), repo.settings())
    data = adapter_for(pg_db)
    data.populate()
    before = data.snapshot()
    assert _backup(cfg, pg_db).exit_code == 0
    (dump,) = [s for s in repo.snapshots() if "kind=dump" in s["tags"]]
    assert dump["paths"][0].endswith("0-Sunday.pgdir")
    data.mutate()
    report = Report("restore")
    from_offsite(cfg, pg_db, dump["short_id"], report)
    assert report.exit_code == 0, report.failed()
    assert data.snapshot() == {**before, "sessions": 0}
    # The restored folder was a temporary one: nothing is left in the backup folder.
    assert not list(cfg.backup_dir.glob(".offsite-*"))


def test_a_repository_that_never_answers_is_cut_off_at_the_timeout(
    tmp_path: Path, config: Config, sqlite_db: DbParams
) -> None:
    import time

    repo = local_repo(tmp_path)
    adapter_for(sqlite_db).populate()
    # An "SFTP server" that never says a word: restic would wait for it forever.
    silent = repo.settings(
        repository="sftp:nobody@127.0.0.1:/nowhere", options={"sftp.command": "sleep 60"}, timeout=2
    )
    start = time.monotonic()
    report = _backup(with_offsite(config, silent), sqlite_db)
    assert time.monotonic() - start < 30
    (step,) = report.failed()
    assert "did not finish in 2 s" in step.reason, step.reason
    assert "timeout" in step.reason, step.reason
    _latest_verifies(config)


def test_a_stream_that_is_not_the_pushed_dump_commits_nothing(
    tmp_path: Path, config: Config, any_db: DbParams
) -> None:
    """A sidecar that records another sha256 (a forged or mixed-up one): the restore loads the
    whole stream, finds the hash wrong before it commits, and the live database stays."""
    import subprocess

    repo = local_repo(tmp_path)
    cfg = with_offsite(config, repo.settings(project="site"))
    data = adapter_for(any_db)
    data.populate()
    assert _backup(cfg, any_db).exit_code == 0
    data.mutate()
    changed = data.snapshot()
    (side,) = [s for s in repo.snapshots() if "kind=manifest" in s["tags"]]
    record = json.loads(repo.restic("dump", side["id"], side["paths"][0]).stdout)
    record["sha256"] = "0" * 64
    env = {"RESTIC_REPOSITORY": repo.repository, "RESTIC_PASSWORD_FILE": str(repo.password_file)}
    forged = ["--stdin", "--stdin-filename", "site/default.opskit.json"]
    forged += ["--host", side["hostname"], "--tag", ",".join(side["tags"])]
    subprocess.run(
        ["restic", "backup", *forged],
        input=json.dumps(record).encode(),
        env={**__import__("os").environ, **env},
        check=True,
        capture_output=True,
    )
    report = Report("restore")
    with pytest.raises(StepFailed):
        from_offsite(cfg, any_db, "latest", report)
    (step,) = report.failed()
    assert step.name == "load", step.reason
    assert "is not the dump that was pushed" in step.reason, step.reason
    assert data.snapshot() == changed
