"""Bad input gets one line naming the problem and the fix, and the right exit status."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.project import OPSKIT, run_opskit, write_project

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
    assert "OPSKIT_BACKUP_DIR" in warning
    assert "OPSKIT_HC_<JOB>" in warning


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
        (
            "OPSKIT_HEALTHCHECKS_PING_URL",
            "hc-ping.com",
            "OPSKIT_HEALTHCHECKS_PING_URL='hc-ping.com' is not an http(s) URL",
        ),
        (
            "OPSKIT_MAINTENANCE_ALLOW_IPS",
            "10.0.0.0/33",
            "OPSKIT_MAINTENANCE_ALLOW_IPS: '10.0.0.0/33' is not an address or network",
        ),
    ],
)
def test_a_bad_variable_value_names_the_variable_in_one_line(
    site: Path, name: str, value: str, message: str
) -> None:
    done = run_opskit("backup", cwd=site, env={name: value})

    assert done.returncode == 1
    assert done.stderr.startswith(f"opskit: error: {message}")
    assert len(done.stderr.splitlines()) == 1
    assert "Traceback" not in done.stderr


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
    assert "relative to the" in done.stdout
    assert "cron.log" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("restore", "funday", "--yes"), "'funday' is not latest, a weekday"),
        (("restore", "/nowhere/x.sql.zst", "--yes"), "/nowhere/x.sql.zst does not exist"),
        (("restore", "gone.sqlite3.zst", "--yes"), "gone.sqlite3.zst does not exist"),
        (("verify", "/nowhere/x.sql.zst"), "/nowhere/x.sql.zst does not exist"),
    ],
)
def test_a_bad_source_exits_64_naming_it(site: Path, args: tuple[str, ...], message: str) -> None:
    done = run_opskit(*args, cwd=site)

    assert done.returncode == 64
    assert message in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("backup", "-q"), "-q is a global option: put it before 'backup'"),
        (("list", "--backup-dir", "x"), "--backup-dir is a global option: put it before 'list'"),
        (("cron", "install", "--mail-admins"), "--mail-admins is a global option: put it before"),
    ],
)
def test_a_global_option_after_the_subcommand_says_where_it_goes(
    site: Path, args: tuple[str, ...], message: str
) -> None:
    done = run_opskit(*args, cwd=site)

    assert done.returncode == 64
    assert message in done.stderr


def test_quiet_prints_nothing_when_all_is_well_and_verbose_times_each_step(site: Path) -> None:
    quiet = run_opskit("-q", "backup", cwd=site)
    verbose = run_opskit("-v", "backup", cwd=site)

    assert quiet.returncode == 0
    assert quiet.stdout == ""
    assert quiet.stderr == ""
    assert verbose.returncode == 0
    for step in ("lock", "dump", "verify", "rotate", "link-latest"):
        assert f"event=step_started job=backup step={step} database=default" in verbose.stderr
        finished = f"event=step_finished job=backup step={step} database=default ok duration="
        assert finished in verbose.stderr


def test_quiet_still_prints_errors(tmp_path: Path, sqlite_db: DbParams) -> None:
    site = write_project(tmp_path / "site", {"default": sqlite_db})  # no database file

    done = run_opskit("-q", "backup", cwd=site)

    assert done.returncode == 1
    assert "does not exist" in done.stderr
    assert "opskit backup: 1 error" in done.stderr


DRIVERLESS = """\
import sys
sys.modules['psycopg'] = sys.modules['psycopg2'] = None  # as if neither were installed
SECRET_KEY = 'test-only'
INSTALLED_APPS = ['django.contrib.contenttypes', 'django.contrib.auth', 'django.contrib.sessions']
DATABASES = {'default': {'ENGINE': 'django.db.backends.postgresql', 'NAME': 'x'}}
"""


@pytest.mark.parametrize("command", ["check", "clear-sessions"])
def test_a_missing_driver_names_the_package_and_this_environment(
    tmp_path: Path, command: str
) -> None:
    (tmp_path / "driverless.py").write_text(DRIVERLESS)
    done = run_opskit("--settings", "driverless", "--project-dir", tmp_path, command)

    assert done.returncode == 1
    assert "the PostgreSQL driver is not installed in" in done.stdout + done.stderr
    # The interpreter opskit runs on, as its console script names it (python, python3.13...).
    python = OPSKIT.read_text().splitlines()[0].removeprefix("#!")
    assert f"{python} -m pip install 'psycopg[binary]'" in done.stdout + done.stderr
    assert "fix the settings module" not in done.stdout + done.stderr


def test_a_package_missing_inside_the_settings_is_named(tmp_path: Path) -> None:
    (tmp_path / "needs_pkg.py").write_text("import whitenoise_not_here\n")

    done = run_opskit("--settings", "needs_pkg", "--project-dir", tmp_path, "list")

    assert done.returncode == 1
    assert "need the package 'whitenoise_not_here', which is not installed in" in done.stderr
    assert "--project-dir" not in done.stderr


def test_a_settings_module_that_is_not_there_still_says_check_settings(tmp_path: Path) -> None:
    done = run_opskit("--settings", "no_such_module", "--project-dir", tmp_path, "list")

    assert done.returncode == 1
    assert "cannot import settings 'no_such_module'" in done.stderr
    assert "check --settings and --project-dir" in done.stderr


def test_the_variables_of_the_commands_wrappers_are_not_typos(site: Path) -> None:
    wrappers = {"OPSKIT_BIN": "x", "OPSKIT_DATABASE": "default", "OPSKIT_PROJECT_DIR": str(site)}

    done = run_opskit("list", cwd=site, env=wrappers)

    assert done.returncode == 0
    assert "warning" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--cron-user", "opskit-no-such-user"), "no user 'opskit-no-such-user'"),
        (("--cron-d", "shop.site"), "bad cron.d file name 'shop.site'"),
    ],
)
def test_bad_check_cron_arguments_exit_64(site: Path, args: tuple[str, ...], message: str) -> None:
    done = run_opskit("check", "--cron", *args, cwd=site)

    assert done.returncode == 64
    assert message in done.stderr
