"""commands/*.sh: the handbook's wrappers find the project and opskit and exec it faithfully."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from dbdata import adapter_for
from support.project import OPSKIT, run_opskit, write_project
from support.services import need_tools
from test_sessions import ROWS, migrate_sessions

from opskit.archive.rotation import slot_for
from opskit.engines import DbParams

COMMANDS = Path(__file__).resolve().parents[2] / "commands"
SCRIPTS = sorted(p.name for p in COMMANDS.glob("*.sh") if not p.name.startswith("_"))
# A stand-in opskit that shows how it was called: which binary, and with what arguments.
ECHO = '#!/bin/sh\nprintf "%s\\n" "$0" "$@"\n'


def sh(
    script: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a wrapper as cron would: a bare environment plus ``env``."""
    return subprocess.run(
        [str(script), *args],
        env={"PATH": "/usr/bin:/bin", "HOME": "/root", **(env or {})},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def site(tmp_path: Path, sqlite_db: DbParams) -> Path:
    """An SQLite project with one table of data and a copy of commands/."""
    project = write_project(tmp_path / "site", {"default": sqlite_db})
    with sqlite3.connect(sqlite_db.name) as db:
        db.execute("CREATE TABLE note (id INTEGER PRIMARY KEY, text TEXT)")
        db.execute("INSERT INTO note (text) VALUES ('keep me')")
    shutil.copytree(COMMANDS, project / "commands")
    return project


def fake_opskit(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "opskit").write_text(ECHO)
    (folder / "opskit").chmod(0o755)
    return folder / "opskit"


def test_handbook_scripts_are_all_there_executable_posix_sh() -> None:
    assert SCRIPTS == [
        "backup_mysql_db.sh",
        "backup_postgresql_db.sh",
        "clear_sessions.sh",
        "restore_mysql_db.sh",
        "restore_postgresql_db.sh",
    ]
    for name in SCRIPTS:
        script = COMMANDS / name
        assert os.access(script, os.X_OK), name
        assert script.read_text().startswith("#!/bin/sh\n"), name
        assert "\nset -eu\n" in script.read_text(), name


def test_shellcheck_finds_nothing() -> None:
    need_tools("shellcheck")
    scripts = sorted(str(p) for p in COMMANDS.glob("*.sh"))
    done = subprocess.run(["shellcheck", "-x", *scripts], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("name", ["backup_postgresql_db.sh", "backup_mysql_db.sh"])
def test_backup_script_writes_the_archive_and_exits_0(site: Path, name: str) -> None:
    done = sh(site / "commands" / name, env={"OPSKIT_BIN": str(OPSKIT)})

    assert done.returncode == 0, done.stderr
    assert (site / "db_backups" / "latest.sqlite3.zst").exists()
    assert done.stdout.startswith("default: ")


def test_backup_database_comes_from_opskit_database(site: Path) -> None:
    script = site / "commands" / "backup_postgresql_db.sh"

    done = sh(script, env={"OPSKIT_BIN": str(OPSKIT), "OPSKIT_DATABASE": "nope"})

    assert done.returncode == 1
    assert "no database 'nope'" in done.stderr


def test_restore_script_passes_arguments_and_exit_status_through(site: Path) -> None:
    sh(site / "commands" / "backup_postgresql_db.sh", env={"OPSKIT_BIN": str(OPSKIT)})
    restore = site / "commands" / "restore_postgresql_db.sh"

    ok = sh(restore, "latest", "--yes", env={"OPSKIT_BIN": str(OPSKIT)})
    assert ok.returncode == 0, ok.stderr

    # A weekday slot no backup has filled: opskit fails, and the script says the same.
    missing = slot_for(datetime.now().astimezone() + timedelta(days=3))
    direct = run_opskit("--project-dir", site, "restore", missing, "--yes")
    wrapped = sh(restore, missing, "--yes", env={"OPSKIT_BIN": str(OPSKIT)})
    assert direct.returncode not in (0, 64)
    assert wrapped.returncode == direct.returncode
    assert missing in wrapped.stderr


def test_restore_without_yes_refuses_when_cron_has_no_terminal(site: Path) -> None:
    sh(site / "commands" / "backup_mysql_db.sh", env={"OPSKIT_BIN": str(OPSKIT)})

    done = sh(site / "commands" / "restore_mysql_db.sh", env={"OPSKIT_BIN": str(OPSKIT)})

    assert done.returncode == 1
    assert "pass --yes" in done.stderr


def test_clear_sessions_script_removes_expired_sessions(site: Path, sqlite_db: DbParams) -> None:
    migrate_sessions(site)
    adapter_for(sqlite_db).execute(ROWS)

    done = sh(site / "commands" / "clear_sessions.sh", env={"OPSKIT_BIN": str(OPSKIT)})

    assert done.returncode == 0, done.stderr
    assert adapter_for(sqlite_db).query("SELECT session_key FROM django_session") == [("live",)]


def test_opskit_is_found_in_the_documented_order(tmp_path: Path) -> None:
    project = tmp_path / "site"
    shutil.copytree(COMMANDS, project / "commands")
    script = project / "commands" / "restore_mysql_db.sh"
    candidates = {
        "OPSKIT_BIN": fake_opskit(tmp_path / "explicit"),
        "VIRTUAL_ENV": fake_opskit(tmp_path / "active" / "bin"),
        ".venv": fake_opskit(project / ".venv" / "bin"),
        "venv": fake_opskit(project / "venv" / "bin"),
        "PATH": fake_opskit(tmp_path / "on-path"),
    }
    env = {
        "OPSKIT_BIN": str(candidates["OPSKIT_BIN"]),
        "VIRTUAL_ENV": str(tmp_path / "active"),
        "PATH": f"{tmp_path / 'on-path'}:/usr/bin:/bin",
    }
    for name, binary in candidates.items():
        done = sh(script, "1-Monday", "--yes", env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[0] == str(binary), name
        env.pop(name, None)
        if name in (".venv", "venv"):
            shutil.rmtree(binary.parent.parent)

    missing = sh(script, env=env)
    assert missing.returncode == 127
    assert "cannot find opskit" in missing.stderr


def test_arguments_reach_opskit_verbatim_after_project_dir(tmp_path: Path) -> None:
    project = tmp_path / "my site"
    shutil.copytree(COMMANDS, project / "commands")
    fake = fake_opskit(project / ".venv" / "bin")

    done = sh(project / "commands" / "restore_postgresql_db.sh", "a b", "--yes", "", "$HOME")

    assert done.stdout.splitlines() == [
        str(fake),
        "--project-dir",
        str(project),
        "restore",
        "a b",
        "--yes",
        "",
        "$HOME",
    ]


def test_project_dir_can_be_overridden(tmp_path: Path) -> None:
    fake = fake_opskit(tmp_path / "bin")
    env = {"OPSKIT_BIN": str(fake), "OPSKIT_PROJECT_DIR": "/srv/elsewhere"}

    done = sh(COMMANDS / "clear_sessions.sh", "--hc", "nightly", env=env)

    assert done.stdout.splitlines()[1:] == [
        "--project-dir",
        "/srv/elsewhere",
        "clear-sessions",
        "--hc",
        "nightly",
    ]
