"""Client tools and servers: missing tools, too-old pg_dump, connection failures, in one line."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.project import SUNDAY, run_opskit, write_project
from support.services import mysql, psql

from opskit.backup import run_backup
from opskit.config import Config
from opskit.engines import DbParams, Tools, engine_for
from opskit.engines.tooling import (
    mysql_mismatch,
    mysql_series,
    pg_dump_problem,
    pg_server_major,
    pg_tool_major,
)
from opskit.report import Report


def backup(config: Config, db: DbParams) -> Report:
    return run_backup(config, {db.alias: db}, [db.alias], SUNDAY)


def failed_reason(report: Report, step: str = "dump") -> str:
    (failed,) = report.failed()
    assert failed.name == step
    assert "\n" not in failed.reason
    return failed.reason


# --- versions: pure functions on real version strings -------------------------------------------

PG_DUMP_VERSIONS = [
    ("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)", (15,)),
    ("pg_dump (PostgreSQL) 16.4 (Ubuntu 16.4-1.pgdg22.04+1)", (16,)),
    ("pg_dump (PostgreSQL) 12.0", (12,)),
    ("pg_dump (PostgreSQL) 17beta2", (17,)),
    ("pg_dump (PostgreSQL) 9.6.24", (9, 6)),
    ("pg_dump (PostgreSQL) 9.2.24", (9, 2)),
    ("not pg_dump at all", None),
]


@pytest.mark.parametrize(("text", "major"), PG_DUMP_VERSIONS)
def test_pg_dump_major_version_is_read_from_its_version_output(
    text: str, major: tuple[int, ...] | None
) -> None:
    assert pg_tool_major(text) == major


@pytest.mark.parametrize(
    ("num", "major"),
    [("150020", (15,)), ("160004", (16,)), ("100023", (10,)), ("90624", (9, 6)), ("x", None)],
)
def test_server_major_version_is_read_from_server_version_num(
    num: str, major: tuple[int, ...] | None
) -> None:
    assert pg_server_major(num) == major


def test_pg_dump_older_than_the_server_is_refused_with_the_package_to_install() -> None:
    problem = pg_dump_problem(
        "pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)", "160004", "db1:5432"
    )
    assert problem is not None
    assert problem.line() == (
        "pg_dump 15 cannot dump PostgreSQL 16 on db1:5432 (install postgresql-client-16 or set"
        " OPSKIT['PG_BIN_DIR'] to its bin folder (e.g. /usr/lib/postgresql/16/bin))"
    )


@pytest.mark.parametrize(
    ("tool", "num", "refused"),
    [
        ("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)", "150020", False),  # same major
        ("pg_dump (PostgreSQL) 16.4 (Ubuntu 16.4-1.pgdg22.04+1)", "150020", False),  # newer
        ("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)", "150003", False),  # minor
        ("pg_dump (PostgreSQL) 9.6.24", "100023", True),
        ("pg_dump (PostgreSQL) 9.6.24", "90624", False),
        ("pg_dump (PostgreSQL) 12.0", "130011", True),
        ("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)", "90124", True),  # 9.1: too old
        ("something unexpected", "160004", False),  # unknown: let pg_dump decide
    ],
)
def test_pg_dump_version_check(tool: str, num: str, refused: bool) -> None:
    assert (pg_dump_problem(tool, num, "h:5432") is not None) is refused


def test_the_installed_pg_dump_can_dump_the_running_server(pg_db: DbParams) -> None:
    versions = engine_for(pg_db, Tools()).versions(pg_db)
    assert versions["pg_dump"].startswith("pg_dump (PostgreSQL) ")
    num = psql("SHOW server_version_num")
    assert pg_dump_problem(versions["pg_dump"], num, "here") is None


MY_VERSIONS = [
    (
        "mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)",
        "mariadb",
        (10, 11),
    ),
    (
        "mariadb-dump from 11.4.2-MariaDB, client 10.19 for debian-linux-gnu (x86_64)",
        "mariadb",
        (11, 4),
    ),
    ("mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)", "mysql", (8, 0)),
    ("mysqldump  Ver 10.13 Distrib 5.7.44, for Linux (x86_64)", "mysql", (5, 7)),
    ("10.11.19-MariaDB-0+deb12u1", "mariadb", (10, 11)),
    ("8.0.36", "mysql", (8, 0)),
]


@pytest.mark.parametrize(("text", "flavour", "series"), MY_VERSIONS)
def test_mysql_flavour_and_series_are_read(
    text: str, flavour: str, series: tuple[int, int]
) -> None:
    assert mysql_series(text) == (flavour, series)


def test_mysql_version_mismatch_is_a_warning_text() -> None:
    tool = MY_VERSIONS[0][0]
    assert mysql_mismatch(tool, "10.11.6-MariaDB-0+deb12u1") == ""
    assert mysql_mismatch(tool, "8.0.36") == (
        "the dump tool is from MariaDB 10.11 but the server is MySQL 8.0"
    )


def test_a_real_mariadb_dump_matches_the_real_server(mysql_db: DbParams) -> None:
    versions = engine_for(mysql_db, Tools()).versions(mysql_db)
    tool = next(v for k, v in versions.items() if k != "server")
    assert mysql_mismatch(tool, versions["server"]) == ""


def test_a_too_old_pg_dump_is_refused_before_it_dumps(
    pg_db: DbParams, config: Config, tmp_path: Path
) -> None:
    """The one fake tool in the suite: a pg_dump that only says it is version 12.

    No PostgreSQL newer than the client can be installed here, so this script stands in for
    an old pg_dump; it records any call other than --version, which must never come.
    """
    bin_dir = tmp_path / "pg12" / "bin"
    bin_dir.mkdir(parents=True)
    calls = tmp_path / "dump-calls"
    script = bin_dir / "pg_dump"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then echo "pg_dump (PostgreSQL) 12.0"; exit 0; fi\n'
        f'echo "$@" >> {calls}\nexit 1\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    psql_path = shutil.which("psql")
    assert psql_path
    (bin_dir / "psql").symlink_to(psql_path)
    report = backup(dataclasses.replace(config, pg_bin_dir=bin_dir), pg_db)
    major = psql("SHOW server_version_num")[:-4]
    reason = failed_reason(report)
    assert reason.startswith(
        f"pg_dump 12 ({script}) cannot dump PostgreSQL {major} on 127.0.0.1:5432"
    )
    assert f"install postgresql-client-{major} or set OPSKIT['PG_BIN_DIR']" in reason
    assert not calls.exists()
    assert not list(config.backup_dir.rglob("*.sql*"))


# --- missing tools ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "setting", "wanted"),
    [
        ("pg_db", "PG_BIN_DIR", "pg_dump"),
        ("mysql_db", "MYSQL_BIN_DIR", "mariadb-dump or mysqldump"),
    ],
)
def test_a_bin_dir_without_the_tools_fails_the_dump_and_says_where_it_looked(
    fixture: str,
    setting: str,
    wanted: str,
    config: Config,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    db: DbParams = request.getfixturevalue(fixture)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    folder: dict[str, Any] = {setting.lower(): empty}
    reason = failed_reason(backup(dataclasses.replace(config, **folder), db))
    assert reason.startswith(f"{wanted} not found in {empty} (OPSKIT['{setting}'])")
    assert f"set OPSKIT['{setting}'] (or OPSKIT_{setting}) to the folder" in reason


def test_a_bin_dir_that_does_not_exist_is_named(
    pg_db: DbParams, config: Config, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-folder"
    reason = failed_reason(backup(dataclasses.replace(config, pg_bin_dir=missing), pg_db))
    assert f"pg_dump not found in {missing} (OPSKIT['PG_BIN_DIR'], which is not a folder)" in reason


@pytest.mark.parametrize(
    ("fixture", "wanted", "setting"),
    [
        ("pg_db", "pg_dump", "PG_BIN_DIR"),
        ("mysql_db", "mariadb-dump or mysqldump", "MYSQL_BIN_DIR"),
    ],
)
def test_a_path_without_the_tools_fails_the_backup_in_one_line(
    fixture: str, wanted: str, setting: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db: DbParams = request.getfixturevalue(fixture)
    site = write_project(tmp_path / "site", {"default": db})
    empty = tmp_path / "empty-path"
    empty.mkdir()
    result = run_opskit("backup", cwd=site, env={"PATH": str(empty)})
    assert result.returncode == 1, result.stderr
    assert f"{wanted} not found on PATH ({empty})" in result.stderr
    assert f"OPSKIT['{setting}']" in result.stderr


# --- connection failures ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"port": "1"}, "Connection refused (is the server running and listening on 127.0.0.1:1?)"),
        ({"name": "opskit_no_such_db"}, 'database "opskit_no_such_db" does not exist'),
        ({"user": "opskit_no_such_role"}, 'role "opskit_no_such_role" does not exist'),
    ],
)
def test_postgresql_connection_failures_name_database_user_host_and_port(
    pg_db: DbParams, config: Config, change: dict[str, Any], says: str
) -> None:
    db = dataclasses.replace(pg_db, **change)
    reason = failed_reason(backup(config, db))
    assert reason.startswith(
        f"cannot connect to database {db.name} (user {db.user} at 127.0.0.1:{db.port}): "
    )
    assert says in reason


def test_mariadb_unknown_database_as_root_says_so(mysql_db: DbParams, config: Config) -> None:
    db = dataclasses.replace(mysql_db, name="opskit_no_such_db")
    reason = failed_reason(backup(config, db))
    assert reason == (
        "cannot connect to database opskit_no_such_db (user root at 127.0.0.1:3306):"
        " Unknown database 'opskit_no_such_db' (create it, or fix NAME in settings.DATABASES)"
    )


@contextlib.contextmanager
def mariadb_user(db: DbParams, password: str) -> Iterator[DbParams]:
    user = f"opskit_p_{secrets.token_hex(4)}"
    mysql(
        f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}';"
        f" GRANT ALL ON `{db.name}`.* TO '{user}'@'%'"
    )
    try:
        yield dataclasses.replace(db, user=user, password=password)
    finally:
        mysql(f"DROP USER '{user}'@'%'")


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"port": "1"}, "Can't connect to server"),
        # Not root: the server does not say whether the database exists.
        ({"name": "opskit_no_such_db"}, "to database 'opskit_no_such_db' (create"),
        ({"password": "wrong-" + secrets.token_hex(6)}, "Access denied for user"),
    ],
)
def test_mariadb_connection_failures_name_everything_but_the_password(
    mysql_db: DbParams, config: Config, change: dict[str, Any], says: str
) -> None:
    right = "right-" + secrets.token_hex(6)
    with mariadb_user(mysql_db, right) as account:
        assert backup(config, account).exit_code == 0  # the account works as set up
        db = dataclasses.replace(account, **change)
        reason = failed_reason(backup(config, db))
    assert reason.startswith(
        f"cannot connect to database {db.name} (user {db.user} at 127.0.0.1:{db.port}): "
    )
    assert says in reason
    assert right not in reason
    assert db.password not in reason
