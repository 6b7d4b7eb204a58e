"""Bad input gets one line naming the problem and the fix, and the right exit status."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_opskit, write_project

from opskit.engines import DbParams


@pytest.fixture
def site(tmp_path: Path, sqlite_db: DbParams) -> Path:
    folder = write_project(tmp_path / "site", {"default": sqlite_db})
    (folder / "db.sqlite3").touch()
    return folder


def test_a_typo_in_an_opskit_variable_is_a_warning_listing_the_valid_ones(site: Path) -> None:
    done = run_opskit("list", cwd=site, env={"OPSKIT_BACKUPDIR": "/x", "OPSKIT_HC_BACKUP": ""})

    assert done.returncode == 0, done.stderr
    [warning] = [line for line in done.stderr.splitlines() if "warning" in line]
    assert warning.startswith("opskit: warning: unknown environment variable OPSKIT_BACKUPDIR")
    assert "OPSKIT_BACKUP_DIR" in warning and "OPSKIT_HC_<JOB>" in warning


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("OPSKIT_ZSTD_LEVEL", "abc", "OPSKIT_ZSTD_LEVEL='abc' is not a whole number"),
        (
            "OPSKIT_PROGRESS_DELAY",
            "soon",
            "OPSKIT_PROGRESS_DELAY='soon' is not a number of seconds",
        ),
        ("OPSKIT_LOCK_WAIT", "-1", "OPSKIT_LOCK_WAIT='-1' is not a number of seconds"),
        ("OPSKIT_STRICT_PING", "maybe", "OPSKIT_STRICT_PING='maybe' is not yes or no"),
        ("OPSKIT_COMPRESS", "lz4", "OPSKIT_COMPRESS: unknown compression 'lz4'"),
    ],
)
def test_a_bad_variable_value_names_the_variable_in_one_line(
    site: Path, name: str, value: str, message: str
) -> None:
    done = run_opskit("backup", cwd=site, env={name: value})

    assert done.returncode == 1
    assert done.stderr.startswith(f"opskit: error: {message}")
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_bad_setting_value_names_the_setting(tmp_path: Path, sqlite_db: DbParams) -> None:
    site = write_project(tmp_path / "site", {"default": sqlite_db}, "{'ZSTD_LEVEL': 'x'}")

    done = run_opskit("backup", cwd=site)

    assert done.returncode == 1
    assert done.stderr.startswith("opskit: error: OPSKIT['ZSTD_LEVEL']='x' is not a whole number")


@pytest.mark.parametrize("how", ["flag", "variable", "setting"])
def test_a_relative_backup_dir_is_relative_to_the_project_however_it_is_given(
    tmp_path: Path, sqlite_db: DbParams, how: str
) -> None:
    opskit = "{'BACKUP_DIR': 'kept'}" if how == "setting" else "{}"
    site = write_project(tmp_path / "site", {"default": sqlite_db}, opskit)
    (site / "db.sqlite3").touch()
    flag = ("--backup-dir", "kept") if how == "flag" else ()
    env = {"OPSKIT_BACKUP_DIR": "kept"} if how == "variable" else {}

    # Run from elsewhere: the current folder does not matter.
    done = run_opskit("--project-dir", site, *flag, "backup", cwd=tmp_path, env=env)

    assert done.returncode == 0, done.stderr
    assert len(list((site / "kept").glob("?-*.sqlite3.zst"))) == 1
    assert not (tmp_path / "kept").exists()


@pytest.mark.parametrize("command", ["backup", "list", "verify"])
def test_database_option_has_help(command: str) -> None:
    done = run_opskit(command, "--help")

    assert "An alias of settings.DATABASES" in done.stdout


def test_global_folder_options_say_more_than_the_default() -> None:
    done = run_opskit("--help")

    assert "Folder for the archives" in done.stdout
    assert "relative to the" in done.stdout and "cron.log" in done.stdout
