"""Maintenance around real SQLite restores: on for the swap (the whole load with --in-place),
off at the end and after SIGTERM; a SIGKILL (mid-load, or at the swap's kill points) leaves it
on until the restore's journal is resolved by ``opskit restore --recover``."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from dbdata import adapter_for
from support.faultkit import Run, add_big_sqlite_table, clean_env
from support.project import run_opskit, write_project
from support.waiting import wait_for

from opskit import maintenance
from opskit.engines import DbParams, journal


@pytest.fixture
def site(sqlite_db: DbParams, tmp_path: Path) -> Path:
    """A project whose SQLite database is big enough that a restore takes a moment; backed up."""
    adapter_for(sqlite_db).populate()
    add_big_sqlite_table(sqlite_db.name)
    folder = write_project(tmp_path / "project", {"default": sqlite_db})
    done = run_opskit("backup", cwd=folder, env=clean_env())
    assert done.returncode == 0, done.stderr
    return folder


def loading(db: DbParams) -> bool:
    """The restore's scratch file beside the database exists: the load has begun."""
    target = Path(db.name)
    return bool(list(target.parent.glob(f".{target.name}.tmp-*")))


def start_in_place_restore(site: Path, db: DbParams) -> Run:
    """Start ``opskit restore --in-place`` and freeze it in the middle of its load."""
    run = Run("restore", "--yes", "--in-place", cwd=site, env=clean_env())
    wait_for(lambda: loading(db) or run.proc.poll() is not None, "the load to start")
    run.signal(signal.SIGSTOP)
    assert run.proc.poll() is None, "the restore ended before it could be stopped"
    return run


def holds(site: Path) -> dict[str, int]:
    return {a: h.pid for a, h in maintenance.read(site / ".opskit").restores.items()}


def test_a_restore_in_place_holds_maintenance_and_releases_it(
    site: Path, sqlite_db: DbParams
) -> None:
    done = run_opskit("restore", "--yes", "--in-place", cwd=site, env=clean_env())
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in (site / "logs" / "opskit.json.log").open()]
    names = [e["event"] for e in events if e.get("database") == "default"]
    assert names.index("maintenance_on") < names.index("maintenance_released")
    assert maintenance.read(site / ".opskit").empty


def test_sigterm_mid_load_turns_maintenance_off_on_the_way_out(
    site: Path, sqlite_db: DbParams
) -> None:
    run = start_in_place_restore(site, sqlite_db)
    try:
        assert holds(site) == {"default": run.pid}
        assert not maintenance.Watcher(site / ".opskit").state().empty
        run.signal(signal.SIGTERM)
        run.signal(signal.SIGCONT)
        done = run.finish()
    finally:
        run.stop()
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert maintenance.read(site / ".opskit").empty
    assert journal.load(site / "db_backups") is None


def test_a_killed_restore_keeps_maintenance_on_until_recover(
    site: Path, sqlite_db: DbParams
) -> None:
    run = start_in_place_restore(site, sqlite_db)
    try:
        run.signal(signal.SIGKILL)
        run.signal(signal.SIGCONT)
        assert run.finish().returncode == -signal.SIGKILL
    finally:
        run.stop()
    assert holds(site) == {"default": run.pid}
    assert journal.load(site / "db_backups") is not None
    # Every web worker still serves the maintenance page, and a manual off is refused.
    assert not maintenance.Watcher(site / ".opskit").state().empty
    shown = run_opskit("maintenance", "status", cwd=site, env=clean_env()).stdout
    assert f"(pid {run.pid})" in shown
    assert "was killed and left its journal" in shown
    assert run_opskit("maintenance", "off", cwd=site, env=clean_env()).returncode == 1
    assert holds(site) == {"default": run.pid}

    done = run_opskit("restore", "--recover", cwd=site, env=clean_env())
    assert done.returncode == 0, done.stderr
    assert journal.load(site / "db_backups") is None
    assert maintenance.read(site / ".opskit").empty
    assert maintenance.Watcher(site / ".opskit").state().empty


def test_a_restore_by_swap_holds_maintenance_for_the_swap_only(
    site: Path, sqlite_db: DbParams
) -> None:
    done = run_opskit("restore", "--yes", cwd=site, env=clean_env())
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in (site / "logs" / "opskit.json.log").open()]
    mine = [e["event"] for e in events if e.get("database") == "default"]
    start = max(i for i, e in enumerate(mine) if e == "restore_started")
    after = mine[start:]
    assert after.index("maintenance_on") < after.index("maintenance_released")
    assert maintenance.read(site / ".opskit").empty


@pytest.mark.parametrize("point", ["sqlite:loaded", "sqlite:replaced"])
def test_killed_at_a_swap_step_maintenance_stays_on_until_recover(
    site: Path, sqlite_db: DbParams, point: str
) -> None:
    done = run_opskit("restore", "--yes", cwd=site, env=clean_env(OPSKIT_TEST_KILL_AT=point))
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert set(holds(site)) == {"default"}
    assert journal.load(site / "db_backups") is not None
    assert not maintenance.Watcher(site / ".opskit").state().empty
    done = run_opskit("restore", "--recover", cwd=site, env=clean_env())
    assert done.returncode == 0, done.stderr
    assert maintenance.read(site / ".opskit").empty
