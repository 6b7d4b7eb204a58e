"""``opskit maintenance on|off|status`` in a real project, as real processes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from support.project import run_opskit, write_project

from opskit import maintenance
from opskit.engines import DbParams


@pytest.fixture
def site(sqlite_db: DbParams, tmp_path: Path) -> Path:
    return write_project(tmp_path / "project", {"default": sqlite_db})


def status(site: Path) -> dict[str, object]:
    done = run_opskit("maintenance", "status", "--json", cwd=site)
    assert done.returncode == 0, done.stderr
    data: dict[str, object] = json.loads(done.stdout)
    return data


def test_on_off_and_status_round_trip(site: Path) -> None:
    assert status(site)["on"] is False
    assert run_opskit("maintenance", "status", cwd=site).stdout == "maintenance is off\n"
    done = run_opskit("maintenance", "on", "--message", "Back at 3 o'clock", cwd=site)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "maintenance on for the whole site until opskit maintenance off\n"
    state = maintenance.read(site / ".opskit")
    assert state.site is not None
    assert state.site.message == "Back at 3 o'clock"
    shown = run_opskit("maintenance", "status", cwd=site).stdout
    assert shown.startswith("on for the whole site since ")
    assert "Back at 3 o'clock" in shown
    done = run_opskit("maintenance", "off", cwd=site)
    assert (done.returncode, done.stdout) == (0, "maintenance off for the whole site\n")
    assert status(site)["on"] is False


def test_for_a_duration_sets_the_end_time(site: Path) -> None:
    before = time.time()
    assert run_opskit("maintenance", "on", "--for", "30m", cwd=site).returncode == 0
    state = maintenance.read(site / ".opskit")
    assert state.site is not None
    assert state.site.until is not None
    assert before + 1800 <= state.site.until <= time.time() + 1800


def test_a_path_switch_is_turned_off_on_its_own(site: Path) -> None:
    assert run_opskit("maintenance", "on", "--path", "/shop/", cwd=site).returncode == 0
    assert run_opskit("maintenance", "on", cwd=site).returncode == 0
    done = run_opskit("maintenance", "off", "--path", "/shop/", cwd=site)
    assert done.stdout == "maintenance off for /shop/; still on for the whole site\n"
    assert status(site)["paths"] == {}


def test_settings_choose_the_state_folder(sqlite_db: DbParams, tmp_path: Path) -> None:
    site = write_project(tmp_path / "p", {"default": sqlite_db}, opskit="{'STATE_DIR': 'var'}")
    assert run_opskit("maintenance", "on", cwd=site).returncode == 0
    assert (site / "var" / "maintenance.json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["on", "--for", "soon"], "is not a duration like 26h, 90m or 2d"),
        (["on", "--path", "shop"], "is not a URL path prefix like /shop/"),
        (["sideways"], "No such command 'sideways'"),
    ],
)
def test_usage_errors_exit_64(site: Path, args: list[str], message: str) -> None:
    done = run_opskit("maintenance", *args, cwd=site)
    assert done.returncode == 64
    assert message in done.stderr
    assert not (site / ".opskit").exists()


def test_off_refuses_to_drop_the_hold_of_an_unfinished_restore(site: Path) -> None:
    journal = site / "db_backups" / ".opskit-restore-journal.json"
    journal.parent.mkdir()
    journal.write_text("{}")
    maintenance.hold(site / ".opskit", "default", journal)
    done = run_opskit("maintenance", "off", cwd=site)
    assert done.returncode == 1
    assert "maintenance stays on: a restore of 'default'" in done.stderr
    assert "opskit restore --recover --database default" in done.stderr
    assert status(site)["on"] is True
    assert run_opskit("maintenance", "off", "--force", cwd=site).returncode == 0
    assert status(site)["on"] is False
