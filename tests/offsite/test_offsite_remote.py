"""Off-site over the network: SFTP on a real OpenSSH server, S3 on moto; faults and secrets."""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from dbdata import adapter_for
from hcserver import HCServer
from support.project import SUNDAY, run_opskit, write_project
from support.restic_repo import with_offsite
from support.servers import S3, CmdlineSampler, Sshd, running_s3, running_sshd
from support.waiting import wait_for

from opskit.archive import formats
from opskit.archive import manifest as manifests
from opskit.backup import run_backup
from opskit.config import Config
from opskit.engines import DbParams
from opskit.offsite.fetch import restore_database
from opskit.report import Report
from opskit.restore import RestoreOptions


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    with running_sshd(tmp_path) as server:
        yield server


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3]:
    with running_s3(tmp_path) as server:
        yield server


def _big(db: DbParams, megabytes: int) -> None:
    """Incompressible rows, so that the push takes a while and fills several packs."""
    Path(db.name).parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(db.name) as conn:
        conn.execute("CREATE TABLE blob (id INTEGER PRIMARY KEY, data BLOB)")
        for _ in range(megabytes):
            conn.execute("INSERT INTO blob (data) VALUES (?)", (os.urandom(1 << 20),))


def test_sftp_round_trip(tmp_path: Path, config: Config, sqlite_db: DbParams, sshd: Sshd) -> None:
    repo = sshd.repo(tmp_path / "sftp-repo", tmp_path / "secrets").init()
    cfg = with_offsite(config, repo.settings())
    data = adapter_for(sqlite_db)
    data.populate()
    before = data.snapshot()
    report = run_backup(cfg, {"default": sqlite_db}, ["default"], SUNDAY)
    assert report.exit_code == 0, report.failed()
    data.mutate()
    report = Report("restore")
    restore_database(
        cfg,
        {"default": sqlite_db},
        "default",
        "2026-11-22",
        SUNDAY + timedelta(hours=1),
        report,
        RestoreOptions(drop_old=True),
    )
    assert report.exit_code == 0, report.failed()
    assert data.snapshot() == {**before, "sessions": 0}


def test_sshd_stopped_mid_push_fails_the_step_only(
    tmp_path: Path, config: Config, sqlite_db: DbParams, sshd: Sshd
) -> None:
    folder = tmp_path / "sftp-repo"
    repo = sshd.repo(folder, tmp_path / "secrets").init()
    cfg = with_offsite(config, repo.settings())
    _big(sqlite_db, 48)
    packs_before = len(list((folder / "data").rglob("*")))

    def cut_when_uploading() -> None:
        wait_for(
            lambda: len(list((folder / "data").rglob("*"))) > packs_before,
            "restic to upload a pack",
            60,
        )
        sshd.stop()

    cutter = threading.Thread(target=cut_when_uploading)
    with CmdlineSampler() as sampler:
        cutter.start()
        report = run_backup(cfg, {"default": sqlite_db}, ["default"], SUNDAY)
        cutter.join()
    assert report.exit_code == 1
    (step,) = report.failed()
    assert step.name == "offsite"
    assert "\n" not in step.reason
    assert "cannot reach" in step.reason, step.reason
    # The local archive is committed, verified, and latest names it.
    latest = config.backup_dir / "latest.sqlite3.zst"
    assert latest.resolve().name == "0-Sunday.sqlite3.zst"
    formats.of(latest.resolve()).check_checksum(latest.resolve(), manifests.read(latest.resolve()))
    # restic never ran with a secret on its command line.
    assert sampler.restic_lines(), "no restic process was seen"
    assert not [line for line in sampler.seen if repo.password in line]
    # No half snapshot: once the server is back, the repository holds no dump.
    sshd.start()
    assert not [s for s in repo.snapshots() if "kind=dump" in s["tags"]]


def _site(tmp_path: Path, db: DbParams, offsite: dict[str, object], hc: HCServer) -> Path:
    settings = {
        "OFFSITE": offsite,
        "HEALTHCHECKS": {"backup": str(uuid.UUID(int=7))},
        "HEALTHCHECKS_PING_URL": hc.url,
    }
    return write_project(tmp_path / "site", {"default": db}, repr(settings))


def test_s3_push_keeps_its_keys_out_of_argv_logs_and_pings(
    tmp_path: Path, sqlite_db: DbParams, s3: S3
) -> None:
    repo = s3.repo("opskit-bucket", tmp_path / "secrets").init()
    adapter_for(sqlite_db).populate()
    with HCServer() as hc:
        site = _site(tmp_path, sqlite_db, repo.settings(keep={"last": 2}), hc)
        with CmdlineSampler() as sampler:
            done = run_opskit("backup", cwd=site)
        assert done.returncode == 0, done.stderr
        bodies = b"".join(p.body for p in hc.pings)
    assert len([s for s in repo.snapshots() if "kind=dump" in s["tags"]]) == 1
    assert sampler.restic_lines(), "no restic process was seen"
    logs = b"".join(p.read_bytes() for p in (site / "logs").iterdir())
    for secret in (s3.secret, repo.password):
        assert not [line for line in sampler.seen if secret in line]
        assert secret.encode() not in logs
        assert secret.encode() not in bodies
        assert secret not in done.stderr + done.stdout
    # The off-site copy restores through the command line too.
    adapter_for(sqlite_db).mutate()
    done = run_opskit("restore", "--from", "offsite", "latest", "--yes", cwd=site)
    assert done.returncode == 0, done.stderr


def test_a_missing_bucket_is_one_failed_step_reported_in_the_ping(
    tmp_path: Path, sqlite_db: DbParams, s3: S3
) -> None:
    repo = s3.repo("no-such-bucket", tmp_path / "secrets")  # never initialised
    adapter_for(sqlite_db).populate()
    with HCServer() as hc:
        site = _site(tmp_path, sqlite_db, repo.settings(), hc)
        done = run_opskit("backup", cwd=site)
        pings = hc.pings
    assert done.returncode == 1, done.stderr
    assert pings[-1].path.endswith("/1")
    body = pings[-1].body.decode()
    assert "step_failed" in body
    assert "offsite" in body
    assert "bucket" in body
    assert s3.secret not in body
    lines = [line for line in done.stderr.splitlines() if "step_failed" in line]
    assert len(lines) == 1, lines
    assert "the bucket of offsite" in lines[0], lines
    assert (site / "db_backups" / "latest.sqlite3.zst").resolve().is_file()
