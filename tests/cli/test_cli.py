"""The opskit command line: usage errors, settings discovery, files, exit statuses."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import secrets
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from support.project import run_opskit
from support.services import mysql, psql

from opskit import __version__
from opskit.cli import cli
from opskit.config import DEFAULTS
from opskit.engines import DbParams


def _zone_off_utc() -> str:
    """A time zone whose date differs from UTC's right now, so a clock in the wrong zone shows."""
    return "Etc/GMT+12" if datetime.now(UTC).hour < 12 else "Pacific/Kiritimati"


ZONE = _zone_off_utc()


WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def today_slot(zone: str = ZONE) -> str:
    """The rotation slot of today in ``zone``, worked out independently of opskit."""
    n = datetime.now(ZoneInfo(zone)).isoweekday() % 7
    return f"{n}-{WEEKDAYS[n]}"


def sqlite_params(path: Path, alias: str = "default") -> DbParams:
    return DbParams(alias=alias, django_engine="django.db.backends.sqlite3", name=str(path))


def write_settings(
    folder: Path,
    databases: dict[str, DbParams],
    *,
    opskit: dict[str, Any] | None = None,
    module: str | None = None,
    manage: bool = True,
    zone: str = ZONE,
) -> str:
    """Write a settings module (with an explicit TIME_ZONE) and, optionally, manage.py."""
    folder.mkdir(parents=True, exist_ok=True)
    module = module or f"settings_{secrets.token_hex(4)}"
    dbs = {
        alias: {
            "ENGINE": db.django_engine,
            "NAME": db.name,
            "USER": db.user,
            "PASSWORD": db.password,
            "HOST": db.host,
            "PORT": db.port,
        }
        for alias, db in databases.items()
    }
    (folder / f"{module}.py").write_text(
        "SECRET_KEY = 'test-only'\n"
        "USE_TZ = True\n"
        f"TIME_ZONE = {zone!r}\n"
        "INSTALLED_APPS = []\n"
        f"DATABASES = {dbs!r}\n"
        f"OPSKIT = {opskit or {}!r}\n"
    )
    if manage:
        (folder / "manage.py").write_text(
            f"import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', '{module}')\n"
        )
    return module


def make_sqlite(path: Path, rows: list[tuple[int, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        conn.executemany("INSERT INTO item VALUES (?, ?)", rows)
    conn.close()


def read_items(path: Path) -> list[tuple[int, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT id, name FROM item ORDER BY id").fetchall()
    finally:
        conn.close()


def json_events(log_dir: Path) -> list[dict[str, Any]]:
    lines = (log_dir / "opskit.json.log").read_text().splitlines()
    return [json.loads(line) for line in lines]


ROWS = [(1, "alpha"), (2, "beta ünï"), (3, "gamma 'quoted'")]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A project folder with manage.py, settings and one SQLite database holding ROWS."""
    folder = tmp_path / "site"
    make_sqlite(folder / "db.sqlite3", ROWS)
    write_settings(folder, {"default": sqlite_params(folder / "db.sqlite3")})
    return folder


def backup_ok(site: Path, *args: str) -> str:
    """Run a backup of ``site``, assert it succeeded, and return the slot it should have used."""
    before = today_slot()
    result = run_opskit("--project-dir", site, "backup", *args, cwd=site.parent)
    assert result.returncode == 0, result.stderr
    return written_slot(site / "db_backups", before, today_slot())


def written_slot(folder: Path, before: str, after: str) -> str:
    """Today's slot; a run across midnight may use either day, but no other."""
    if before == after:
        return before
    return next((s for s in (before, after) if list(folder.glob(f"{s}.*"))), before)


# --- usage errors, help, version ------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "No such option '--bogus'"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["backup", "--compress", "xz"], "Invalid value for '--compress'"),
        (["restore", "--no-such-flag"], "No such option '--no-such-flag'"),
        (["list", "a", "b"], "Got unexpected extra arguments (a b)"),
    ],
)
def test_usage_errors_exit_64(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 64, result.output
    assert message in result.output
    assert "Usage: " in result.output


def test_usage_error_in_a_real_process_exits_64_before_touching_the_project(
    tmp_path: Path,
) -> None:
    result = run_opskit("backup", "--compress", "xz", cwd=tmp_path)
    assert result.returncode == 64
    assert "Invalid value for '--compress'" in result.stderr
    assert "'zstd', 'gzip', 'none'" in result.stderr
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no logs/, no db_backups/


def test_version_prints_the_package_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"opskit, version {__version__}\n"


def test_help_lists_backup_restore_and_list() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    commands = result.output.split("Commands:", 1)[1]
    names = {line.split()[0] for line in commands.splitlines() if line.strip()}
    assert {"backup", "restore", "list"} <= names
    assert "--project-dir" in result.output
    assert "--settings" in result.output


# --- SQLite end to end ------------------------------------------------------------------------

KEYVALUE = re.compile(
    r"^timestamp=\S+ level=(debug|info|warning|error|critical) event=\w+"
    r'( \w+=("([^"\\]|\\.)*"|\S*))*$'
)


def test_sqlite_backup_writes_archive_link_manifest_and_logs_then_restores(site: Path) -> None:  # noqa: PLR0915 — one end-to-end story: every file and log line of a backup, then its restore
    db = site / "db.sqlite3"
    slot = backup_ok(site)
    folder = site / "db_backups"
    archive = folder / f"{slot}.sqlite3.zst"
    manifest_file = folder / f"{slot}.sqlite3.zst.json"
    latest = folder / "latest.sqlite3.zst"

    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [
            archive.name,
            manifest_file.name,
            latest.name,
            ".opskit-backup.lock",
            ".opskit-folder.json",
            ".opskit-history.json",
        ]
    )
    assert latest.is_symlink()
    assert os.readlink(latest) == archive.name
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert stat.S_IMODE(manifest_file.stat().st_mode) == 0o600

    manifest = json.loads(manifest_file.read_text())
    assert manifest["engine"] == "sqlite"
    assert manifest["database"] == str(db)
    assert manifest["file"] == archive.name
    assert manifest["size"] == archive.stat().st_size
    assert manifest["verified"] is True
    assert manifest["opskit_version"] == __version__
    assert manifest["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()

    # Logs next to manage.py: JSON lines and key=value lines, ending with the summary event.
    events = json_events(site / "logs")
    assert events
    assert all("event" in e for e in events)
    finished = [e for e in events if e["event"] == "job_finished"]
    assert len(finished) == 1
    summary = finished[0]
    assert summary["job"] == "backup"
    assert summary["errors"] == 0
    assert summary["bytes"] == archive.stat().st_size
    assert isinstance(summary["duration"], int | float)
    assert summary["duration"] >= 0
    assert events[-1]["event"] == "job_finished"
    text_lines = (site / "logs" / "opskit.log").read_text().splitlines()
    assert len(text_lines) == len(events)
    for line in text_lines:
        assert KEYVALUE.match(line), line
    assert re.search(r"event=job_finished job=backup .*errors=0", text_lines[-1])

    # Change the data; restore --yes brings it back exactly.
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM item WHERE id = 1")
        conn.execute("INSERT INTO item VALUES (9, 'intruder')")
    conn.close()
    assert read_items(db) != ROWS
    result = run_opskit("--project-dir", site, "restore", "--yes", cwd=site.parent)
    assert result.returncode == 0, result.stderr
    assert read_items(db) == ROWS
    assert "opskit restore: 0 errors" in result.stderr

    listed = run_opskit("--project-dir", site, "list", "--json", cwd=site.parent)
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    assert [e["alias"] for e in entries] == ["default"]
    rows = entries[0]["archives"]
    assert len(rows) == 1
    assert rows[0]["file"] == str(archive)
    assert rows[0]["slot"] == slot
    assert rows[0]["latest"] is True
    assert rows[0]["status"] == "verified"
    assert rows[0]["size"] == archive.stat().st_size


def test_backup_prints_each_archive_and_a_summary_line(site: Path) -> None:
    result = run_opskit("--project-dir", site, "backup", cwd=site.parent)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith("default: ")
    assert Path(line.removeprefix("default: ")).is_file()
    assert re.search(r"^opskit backup: 0 errors, 1 database\(s\), [\d.]+ s$", result.stderr, re.M)


def test_switching_compression_replaces_the_archive_and_the_latest_link(site: Path) -> None:
    folder = site / "db_backups"
    slot = backup_ok(site)
    assert (folder / "latest.sqlite3.zst").is_symlink()

    slot = backup_ok(site, "--compress", "gzip")
    gz = folder / f"{slot}.sqlite3.gz"
    assert gz.is_file()
    assert os.readlink(folder / "latest.sqlite3.gz") == gz.name
    assert not (folder / "latest.sqlite3.zst").is_symlink()
    assert not (folder / "latest.sqlite3.zst").exists()
    assert not (folder / f"{slot}.sqlite3.zst").exists()
    assert gzip.decompress(gz.read_bytes()).startswith(b"SQLite format 3\x00")

    slot = backup_ok(site, "--compress", "none")
    plain = folder / f"{slot}.sqlite3"
    assert plain.read_bytes().startswith(b"SQLite format 3\x00")
    assert os.readlink(folder / "latest.sqlite3") == plain.name
    assert sorted(p.name for p in folder.glob("latest.*")) == ["latest.sqlite3"]
    assert not gz.exists()

    with sqlite3.connect(site / "db.sqlite3") as conn:
        conn.execute("DELETE FROM item")
    conn.close()
    result = run_opskit("--project-dir", site, "restore", "--yes", cwd=site.parent)
    assert result.returncode == 0, result.stderr
    assert read_items(site / "db.sqlite3") == ROWS


# --- finding the settings ---------------------------------------------------------------------


@pytest.fixture
def three_settings(tmp_path: Path) -> Path:
    """manage.py names settings_manage; settings_env and settings_flag sit beside it.

    Each module sends backups to its own ``from_<which>/`` folder, so the folder shows which
    settings a run used.
    """
    folder = tmp_path / "proj"
    db = sqlite_params(tmp_path / "data" / "db.sqlite3")
    make_sqlite(Path(db.name), ROWS)
    for which in ("manage", "env", "flag"):
        write_settings(
            folder,
            {"default": db},
            opskit={"BACKUP_DIR": f"from_{which}"},
            module=f"settings_{which}",
            manage=which == "manage",
        )
    return folder


def _backed_up_into(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("from_"))


def test_settings_come_from_manage_py_in_the_working_directory(three_settings: Path) -> None:
    result = run_opskit("backup", cwd=three_settings)
    assert result.returncode == 0, result.stderr
    assert _backed_up_into(three_settings) == ["from_manage"]
    assert (three_settings / "logs" / "opskit.json.log").is_file()


def test_settings_come_from_manage_py_in_project_dir(three_settings: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_opskit("--project-dir", three_settings, "backup", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert _backed_up_into(three_settings) == ["from_manage"]
    assert list(elsewhere.iterdir()) == []


def test_django_settings_module_beats_manage_py(three_settings: Path) -> None:
    env = {"DJANGO_SETTINGS_MODULE": "settings_env"}
    result = run_opskit("backup", cwd=three_settings, env=env)
    assert result.returncode == 0, result.stderr
    assert _backed_up_into(three_settings) == ["from_env"]


def test_settings_flag_beats_django_settings_module(three_settings: Path) -> None:
    env = {"DJANGO_SETTINGS_MODULE": "settings_env"}
    result = run_opskit("--settings", "settings_flag", "backup", cwd=three_settings, env=env)
    assert result.returncode == 0, result.stderr
    assert _backed_up_into(three_settings) == ["from_flag"]


def test_settings_flag_works_without_manage_py(three_settings: Path) -> None:
    (three_settings / "manage.py").unlink()
    result = run_opskit(
        "--project-dir", three_settings, "--settings", "settings_flag", "backup", cwd=Path("/")
    )
    assert result.returncode == 0, result.stderr
    assert _backed_up_into(three_settings) == ["from_flag"]


def test_without_manage_py_or_settings_it_fails_with_one_line(tmp_path: Path) -> None:
    result = run_opskit("backup", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("opskit: error: ")
    assert "manage.py" in lines[0]
    assert "--settings" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_a_settings_module_that_cannot_be_imported_fails_with_one_line(tmp_path: Path) -> None:
    result = run_opskit("--settings", "no_such_settings_module", "backup", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no_such_settings_module" in lines[0]
    assert "Traceback" not in result.stderr


# --- exit status = number of failed steps -----------------------------------------------------

PG_DOWN = DbParams(
    alias="pgdown",
    django_engine="django.db.backends.postgresql",
    name="nowhere",
    user="postgres",
    host="127.0.0.1",
    port="1",
)
ORACLE = DbParams(alias="legacy", django_engine="django.db.backends.oracle", name="orcl")


def _failed_steps(site: Path) -> dict[str, dict[str, Any]]:
    return {e["database"]: e for e in json_events(site / "logs") if e["event"] == "step_failed"}


def test_one_unreachable_database_of_two_exits_1_and_the_other_is_backed_up(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    make_sqlite(site / "db.sqlite3", ROWS)
    write_settings(site, {"default": sqlite_params(site / "db.sqlite3"), "pgdown": PG_DOWN})
    before = today_slot()
    result = run_opskit("--project-dir", site, "backup", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    slot = written_slot(site / "db_backups", before, today_slot())
    assert (site / "db_backups" / f"{slot}.sqlite3.zst").is_file()
    assert (site / "db_backups" / "latest.sqlite3.zst").exists()
    assert not list((site / "db_backups" / "pgdown").glob("*.sql*"))
    failed = _failed_steps(site)
    assert set(failed) == {"pgdown"}
    assert failed["pgdown"]["step"] == "dump"
    assert "nowhere" in failed["pgdown"]["reason"]
    assert "opskit backup: 1 error, 2 database(s)" in result.stderr
    assert result.stdout.splitlines() == [f"default: {site / 'db_backups' / f'{slot}.sqlite3.zst'}"]


def test_two_broken_databases_of_three_exit_2_and_name_the_unsupported_engine(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    make_sqlite(site / "db.sqlite3", ROWS)
    dbs = {"default": sqlite_params(site / "db.sqlite3"), "pgdown": PG_DOWN, "legacy": ORACLE}
    write_settings(site, dbs)
    result = run_opskit("--project-dir", site, "backup", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert (site / "db_backups" / "latest.sqlite3.zst").exists()
    failed = _failed_steps(site)
    assert set(failed) == {"pgdown", "legacy"}
    reason = failed["legacy"]["reason"]
    assert "django.db.backends.oracle" in reason
    for supported in ("postgresql", "mysql", "sqlite3"):
        assert supported in reason
    assert "\n" not in reason
    (summary,) = [e for e in json_events(site / "logs") if e["event"] == "job_finished"]
    assert summary["errors"] == 2
    assert "opskit backup: 2 errors, 3 database(s)" in result.stderr


# --- restore refusals -------------------------------------------------------------------------


def test_restore_without_yes_and_without_a_terminal_refuses_and_changes_nothing(
    site: Path,
) -> None:
    backup_ok(site)
    db = site / "db.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO item VALUES (9, 'kept')")
    conn.close()
    changed = read_items(db)
    result = run_opskit("--project-dir", site, "restore", cwd=site.parent)  # stdin: /dev/null
    assert result.returncode == 1, result.stderr
    assert "pass --yes" in result.stderr
    assert read_items(db) == changed
    (failed,) = [e for e in json_events(site / "logs") if e["event"] == "step_failed"]
    assert failed["step"] == "confirm"


def test_restore_of_a_missing_weekday_fails_with_one_line(site: Path) -> None:
    written = backup_ok(site)
    missing = next(s for s in ("3-Wednesday", "4-Thursday") if s != written)
    result = run_opskit("--project-dir", site, "restore", missing, "--yes", cwd=site.parent)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    reasons = [line for line in result.stderr.splitlines() if f"no {missing} backup" in line]
    assert len(reasons) == 1, result.stderr
    assert "opskit list" in reasons[0]
    assert read_items(site / "db.sqlite3") == ROWS


def test_restore_of_a_weekday_that_is_not_one_is_a_usage_error(site: Path) -> None:
    backup_ok(site)
    result = run_opskit("--project-dir", site, "restore", "Funday", "--yes", cwd=site.parent)
    assert result.returncode == 64
    assert "'Funday' is not latest, a weekday (0-6, Monday, mon, 1-Monday)" in result.stderr
    assert read_items(site / "db.sqlite3") == ROWS


# --- configuration precedence -----------------------------------------------------------------


def test_unknown_opskit_setting_fails_and_lists_the_valid_keys(tmp_path: Path) -> None:
    site = tmp_path / "site"
    make_sqlite(site / "db.sqlite3", ROWS)
    write_settings(
        site, {"default": sqlite_params(site / "db.sqlite3")}, opskit={"BACKUP_DIRS": "x"}
    )
    result = run_opskit("--project-dir", site, "backup", cwd=tmp_path)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "BACKUP_DIRS" in line
    for key in DEFAULTS:
        assert key in line
    assert not (site / "db_backups").exists()
    assert not (site / "x").exists()


def test_opskit_backup_dir_setting_puts_backups_there(tmp_path: Path) -> None:
    site = tmp_path / "site"
    make_sqlite(site / "db.sqlite3", ROWS)
    write_settings(
        site, {"default": sqlite_params(site / "db.sqlite3")}, opskit={"BACKUP_DIR": "elsewhere"}
    )
    result = run_opskit("--project-dir", site, "backup", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (site / "elsewhere" / "latest.sqlite3.zst").exists()
    assert not (site / "db_backups").exists()


def test_compress_environment_variable_overrides_settings(tmp_path: Path) -> None:
    site = tmp_path / "site"
    make_sqlite(site / "db.sqlite3", ROWS)
    write_settings(
        site, {"default": sqlite_params(site / "db.sqlite3")}, opskit={"COMPRESS": "none"}
    )
    result = run_opskit(
        "--project-dir", site, "backup", cwd=tmp_path, env={"OPSKIT_COMPRESS": "gzip"}
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (site / "db_backups").glob("latest.*")) == ["latest.sqlite3.gz"]


def test_compress_flag_overrides_environment(tmp_path: Path) -> None:
    site = tmp_path / "site"
    make_sqlite(site / "db.sqlite3", ROWS)
    write_settings(site, {"default": sqlite_params(site / "db.sqlite3")})
    env = {"OPSKIT_COMPRESS": "gzip"}
    result = run_opskit(
        "--project-dir", site, "backup", "--compress", "none", cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (site / "db_backups").glob("latest.*")) == ["latest.sqlite3"]


def test_backup_dir_env_overrides_settings_and_the_flag_overrides_env(tmp_path: Path) -> None:
    site = tmp_path / "site"
    make_sqlite(site / "db.sqlite3", ROWS)
    write_settings(
        site, {"default": sqlite_params(site / "db.sqlite3")}, opskit={"BACKUP_DIR": "from_set"}
    )
    from_env, from_flag = tmp_path / "from_env", tmp_path / "from_flag"
    env = {"OPSKIT_BACKUP_DIR": str(from_env)}

    result = run_opskit("--project-dir", site, "backup", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert (from_env / "latest.sqlite3.zst").exists()
    assert not (site / "from_set").exists()

    args = ("--project-dir", site, "--backup-dir", from_flag, "backup")
    result = run_opskit(*args, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert (from_flag / "latest.sqlite3.zst").exists()
    assert stat.S_IMODE(from_flag.stat().st_mode) == 0o700
    # The env folder still holds only the first run's archive.
    assert len(list(from_env.glob("*.sqlite3.zst.json"))) == 1


def test_a_relative_backup_dir_flag_is_relative_to_the_project_like_the_setting(
    site: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    result = run_opskit("--project-dir", site, "--backup-dir", "out", "backup", cwd=work)
    assert result.returncode == 0, result.stderr
    assert (site / "out" / "latest.sqlite3.zst").exists()
    assert not (work / "out").exists()


# --- choosing databases -----------------------------------------------------------------------


@pytest.fixture
def two_db_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    make_sqlite(site / "db.sqlite3", ROWS)
    make_sqlite(site / "other.sqlite3", [(7, "other")])
    write_settings(
        site,
        {
            "default": sqlite_params(site / "db.sqlite3"),
            "other": sqlite_params(site / "other.sqlite3", "other"),
        },
    )
    return site


def test_database_flag_backs_up_only_that_alias(two_db_site: Path) -> None:
    result = run_opskit(
        "--project-dir", two_db_site, "backup", "--database", "other", cwd=two_db_site.parent
    )
    assert result.returncode == 0, result.stderr
    folder = two_db_site / "db_backups"
    assert (folder / "other" / "latest.sqlite3.zst").exists()
    assert not list(folder.glob("*.sqlite3.zst"))
    assert result.stdout.startswith("other: ")
    assert "1 database(s)" in result.stderr


def test_unknown_database_alias_fails_and_lists_the_valid_ones(two_db_site: Path) -> None:
    result = run_opskit(
        "--project-dir", two_db_site, "backup", "--database", "nope", cwd=two_db_site.parent
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "'nope'" in line
    assert "default, other" in line
    assert not (two_db_site / "db_backups").exists()


def test_restore_of_an_unknown_alias_lists_the_valid_ones(two_db_site: Path) -> None:
    args = ("--project-dir", two_db_site, "restore", "--database", "nope", "--yes")
    result = run_opskit(*args, cwd=two_db_site.parent)
    assert result.returncode == 1
    assert "no database 'nope'" in result.stderr
    assert "default, other" in result.stderr


# --- real servers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "flags", "sep"),
    [
        pytest.param("pg_db", ["--drop-old"], "|", id="postgresql", marks=pytest.mark.postgresql),
        pytest.param("mysql_db", [], "\t", id="mysql", marks=pytest.mark.mysql),
    ],
)
def test_backup_and_restore_through_the_cli(
    tmp_path: Path, fixture: str, flags: list[str], sep: str, request: pytest.FixtureRequest
) -> None:
    db: DbParams = request.getfixturevalue(fixture)
    run_sql = psql if fixture == "pg_db" else mysql
    run_sql(
        "CREATE TABLE item (id int PRIMARY KEY, name text);"
        " INSERT INTO item VALUES (1, 'alpha'), (2, 'beta ünï');",
        db.name,
    )
    site = tmp_path / "site"
    write_settings(site, {"default": db})
    result = run_opskit("--project-dir", site, "backup", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (site / "db_backups" / "latest.sql.zst").exists()

    run_sql("DELETE FROM item WHERE id = 1; INSERT INTO item VALUES (3, 'gamma')", db.name)
    result = run_opskit("--project-dir", site, "restore", "--yes", *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = run_sql("SELECT id, name FROM item ORDER BY id", db.name)
    assert rows == f"1{sep}alpha\n2{sep}beta ünï"
