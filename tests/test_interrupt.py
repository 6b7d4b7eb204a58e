"""Ctrl-C during a backup: exit 130, the dump tool stopped, temp files gone, nothing damaged."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pymysql
from conftest import OPSKIT, write_project
from dbdata import adapter_for

from opskit import archive
from opskit.engines import DbParams


def _running(name: str) -> bool:
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == name:
                return True
        except OSError:
            continue
    return False


def test_ctrl_c_during_a_backup_exits_130_and_leaves_the_earlier_archive(
    mysql_db: DbParams, tmp_path: Path
) -> None:
    data = adapter_for(mysql_db)
    data.populate()
    data.execute("CREATE TABLE zz_locked (id int)")
    project = write_project(tmp_path / "site", {"default": mysql_db})
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    first = subprocess.run([OPSKIT, "backup"], cwd=project, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    backups = project / "db_backups"
    before = {p.name: archive.sha256_file(p) for p in backups.iterdir() if p.is_file()}

    locker = pymysql.connect(
        host=mysql_db.host, port=int(mysql_db.port), user=mysql_db.user, database=mysql_db.name
    )
    locker.cursor().execute("LOCK TABLES zz_locked WRITE")  # the dump blocks on this table
    try:
        proc = subprocess.Popen(
            [OPSKIT, "backup"], cwd=project, env=env, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 30
        while not list(backups.glob(".*.tmp-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(backups.glob(".*.tmp-*")), "the backup never started writing"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        locker.close()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert list(backups.glob(".*.tmp-*")) == []
    after = {p.name: archive.sha256_file(p) for p in backups.iterdir() if p.is_file()}
    assert after == before
    assert not _running("mariadb-dump")
