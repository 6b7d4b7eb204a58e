"""The opskit CLI on MariaDB: flags of the swap, and a killed restore finished by the next run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.mysql_site import built_site, change, derived
from support.mysql_state import (
    App,
    params,
    run,
    state,
    without_definers,
)
from support.project import run_opskit, write_project

KILLED = -9


@pytest.fixture
def site(mysql_server: None, tmp_path: Path) -> Iterator[tuple[str, App, Path]]:
    """A project whose database is used by an app account without SUPER; backed up once."""
    with built_site(big=False) as (name, app):
        project = write_project(tmp_path / "site", {"default": params(name, app)})
        done = run_opskit("backup", cwd=project)
        assert done.returncode == 0, done.stderr
        yield name, app, project


def restore_killed_at(project: Path, step: str) -> None:
    """``opskit restore --definer current-user``, killed (SIGKILL) at ``step`` of the swap."""
    killed = run_opskit(
        "restore",
        "--yes",
        "--definer",
        "current-user",
        cwd=project,
        env={"OPSKIT_TEST_KILL_AT": f"mysql:{step}"},
    )
    assert killed.returncode == KILLED, killed.stderr


def restore_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if "restore:default" in line]


def test_without_definer_flag_the_cli_refuses_naming_objects_and_fix(
    site: tuple[str, App, Path],
) -> None:
    name, app, project = site
    change(name, app)
    before = state(name)
    done = run_opskit("restore", "--yes", cwd=project)
    assert done.returncode == 1
    assert "trigger child_ai (root@localhost)" in done.stderr
    assert "--definer=current-user" in done.stderr
    assert state(name) == before
    assert derived(name) == []


def test_definer_current_user_and_drop_old_restore_through_the_swap(
    site: tuple[str, App, Path],
) -> None:
    name, app, project = site
    restored = state(name)
    change(name, app)
    done = run_opskit("restore", "--yes", "--definer", "current-user", "--drop-old", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "event=swap_window" in done.stderr
    assert without_definers(state(name)) == without_definers(restored)
    assert derived(name) == []


def test_a_restore_killed_after_the_rename_is_finished_by_check_which_fails_once(
    site: tuple[str, App, Path],
) -> None:
    name, app, project = site
    restored = state(name)
    change(name, app)
    restore_killed_at(project, "renamed")
    assert (project / "db_backups" / ".opskit-restore-journal.json").exists()

    first = run_opskit("check", cwd=project)
    (line, *_) = restore_lines(first.stdout + first.stderr)
    assert "FAIL" in line, line
    assert "an unfinished restore was found" in line, line
    assert "finished the stopped restore" in line
    assert without_definers(state(name)) == without_definers(restored)

    again = run_opskit("check", cwd=project)
    lines = restore_lines(again.stdout + again.stderr)
    assert lines, lines
    assert not [x for x in lines if "FAIL" in x], lines
    assert [x for x in lines if "__pre_restore_" in x and "WARN" in x]
    assert derived(name) == [f"{name}__pre_restore_{killed_stamp(name)}"]


def killed_stamp(name: str) -> str:
    (previous,) = derived(name)
    return previous.rsplit("__pre_restore_", 1)[1]


def test_a_backup_after_a_restore_killed_mid_load_backs_up_the_unchanged_database(
    site: tuple[str, App, Path],
) -> None:
    name, app, project = site
    change(name, app)
    changed = state(name)
    restore_killed_at(project, "loaded")
    assert [s for s in derived(name) if "__opskit_restore_" in s]  # the killed run's scratch

    backup = run_opskit("backup", cwd=project)
    assert backup.returncode == 0, backup.stderr
    assert "event=restore_recovered" in backup.stderr
    assert derived(name) == []
    # What the backup holds is the database as it was, not a half-restored one.
    run("UPDATE parent SET name = 'after the backup'", name)
    done = run_opskit("restore", "--yes", "--definer", "current-user", "--drop-old", cwd=project)
    assert done.returncode == 0, done.stderr
    after = state(name)
    # A sequence's table collation is the schema's when it was created, which mariadb-dump
    # does not write (a sequence has no text column): it takes the collation at load time.
    for found in (after, changed):
        found["tables"] = [t[:4] + t[5:] if t[1] == "SEQUENCE" else t for t in found["tables"]]
    assert without_definers(after) == without_definers(changed)
