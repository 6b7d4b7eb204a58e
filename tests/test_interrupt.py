"""Signals during a backup: exit 128+N, the dump tool stopped, temp files gone, nothing lost."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from dbdata import adapter_for
from hcserver import HCServer
from support.mysql_lock import table_locked, waiting_on_the_lock
from support.project import OPSKIT, write_project
from support.waiting import wait_for

from opskit.archive import stream as archive
from opskit.engines import DbParams


def _dumping(name: str, database: str) -> bool:
    """Tell whether a ``name`` process is dumping ``database`` (other tests dump others)."""
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or (entry / "comm").read_text().strip() != name:
                continue
            if database.encode() in (entry / "cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


CHECK = "5b8c1d2e-3f40-4a51-8b62-7c9d0e1f2a3b"


def files(folder: Path) -> dict[str, str]:
    """Every archive and manifest with its hash (the lock file holds a pid, so not it)."""
    return {p.name: archive.sha256_file(p) for p in folder.iterdir() if p.suffix != ".lock"}


@pytest.mark.parametrize(
    ("signum", "status", "said"),
    [
        (signal.SIGINT, 130, "interrupted (SIGINT)"),
        (signal.SIGTERM, 143, "stopped by SIGTERM"),
        (signal.SIGHUP, 129, "stopped by SIGHUP"),
    ],
)
def test_a_signal_during_a_backup_exits_128_plus_n_and_leaves_the_earlier_archive(
    mysql_db: DbParams, tmp_path: Path, signum: int, status: int, said: str
) -> None:
    data = adapter_for(mysql_db)
    data.populate()
    data.execute("CREATE TABLE zz_locked (id int)")
    with HCServer() as hc:
        settings = {"HEALTHCHECKS": {"backup": CHECK}, "HEALTHCHECKS_PING_URL": hc.url}
        project = write_project(tmp_path / "site", {"default": mysql_db}, opskit=repr(settings))
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        first = subprocess.run([OPSKIT, "backup"], cwd=project, env=env, capture_output=True)
        assert first.returncode == 0, first.stderr
        backups = project / "db_backups"
        before = files(backups)

        with table_locked(mysql_db):  # the dump blocks on this table
            proc = subprocess.Popen(
                [OPSKIT, "backup"], cwd=project, env=env, stderr=subprocess.PIPE, text=True
            )
            wait_for(lambda: list(backups.glob(".*.tmp-*")), "the backup to start writing")
            wait_for(lambda: waiting_on_the_lock(mysql_db), "the dump to wait on the locked table")
            proc.send_signal(signum)
            _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == status, stderr
    assert said in stderr
    # The final ping reports the same status, so the check goes red with the reason.
    last = hc.requests[-1]
    assert last.path == f"/{CHECK}/{status}"
    assert last.rid == hc.requests[-2].rid
    assert said.encode() in last.body
    assert list(backups.glob(".*.tmp-*")) == []
    assert files(backups) == before
    assert not _dumping("mariadb-dump", mysql_db.name)
