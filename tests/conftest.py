"""Fixtures: throwaway databases on the real servers, projects, and a way to run opskit."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from opskit.config import Config, build_config
from opskit.engines import DbParams

REQUIRE = os.environ.get("OPSKIT_REQUIRE_SERVICES") == "1"
PG = {"host": "127.0.0.1", "port": "5432", "user": "postgres"}
MY = {"host": "127.0.0.1", "port": "3306", "user": "root"}
OPSKIT = Path(sys.executable).with_name("opskit")
# Sunday 2026-11-22 at 02:00 local: the slot is 0-Sunday.
SUNDAY = datetime(2026, 11, 22, 2, 0).astimezone()


def unavailable(what: str) -> None:
    """Skip for a missing server, or fail when CI requires every service."""
    if REQUIRE:
        pytest.fail(f"{what} is required (OPSKIT_REQUIRE_SERVICES=1) but unavailable")
    pytest.skip(f"{what} unavailable")


def need_tools(*programs: str, package: str = "") -> None:
    """Skip unless every program is on PATH; fail instead under OPSKIT_REQUIRE_SERVICES=1.

    The one way a test says a tool is missing, so CI can require every tool alike.
    """
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        unavailable(f"{', '.join(missing)} (apt-get install {package or ' '.join(missing)})")


def psql(sql: str, db: str = "postgres", **params: str) -> str:
    conn = {**PG, **params}
    env = {**os.environ, "PGHOST": conn["host"], "PGPORT": conn["port"], "PGUSER": conn["user"]}
    done = subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(done.stderr)
    return done.stdout.strip()


def mysql(sql: str, db: str = "") -> str:
    argv = ["mariadb", "-h", MY["host"], "-P", MY["port"], "-u", MY["user"], "-N", "-B"]
    done = subprocess.run(
        [*argv, "-e", sql, *([db] if db else [])],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(done.stderr)
    return done.stdout.strip()


@pytest.fixture(scope="session")
def pg_server() -> None:
    if not shutil.which("psql"):
        unavailable("psql")
    try:
        psql("SELECT 1")
    except RuntimeError:
        unavailable("PostgreSQL on 127.0.0.1:5432")


@pytest.fixture(scope="session")
def mysql_server() -> None:
    if not shutil.which("mariadb"):
        unavailable("mariadb client")
    try:
        mysql("SELECT 1")
    except RuntimeError:
        unavailable("MariaDB on 127.0.0.1:3306")


def random_name(prefix: str = "opskit_t") -> str:
    return f"{prefix}_{secrets.token_hex(5)}"


@pytest.fixture
def pg_db(pg_server: None) -> Iterator[DbParams]:
    """A fresh PostgreSQL database, dropped afterwards with anything derived from it."""
    name = random_name()
    psql(f'CREATE DATABASE "{name}"')
    yield DbParams(
        alias="default",
        django_engine="django.db.backends.postgresql",
        name=name,
        user=PG["user"],
        host=PG["host"],
        port=PG["port"],
    )
    leftovers = psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{name}%'")
    for db in leftovers.split():
        psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


@pytest.fixture
def mysql_db(mysql_server: None) -> Iterator[DbParams]:
    """A fresh MariaDB database, dropped afterwards with the schemas restores derive from it."""
    name = random_name()
    mysql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    yield DbParams(
        alias="default",
        django_engine="django.db.backends.mysql",
        name=name,
        user=MY["user"],
        host=MY["host"],
        port=MY["port"],
    )
    for db in mysql(f"SHOW DATABASES LIKE '{name}%'").split():
        mysql(f"DROP DATABASE IF EXISTS `{db}`")


@pytest.fixture
def sqlite_db(tmp_path: Path) -> DbParams:
    """A fresh SQLite file (created by the first connection)."""
    return DbParams(
        alias="default",
        django_engine="django.db.backends.sqlite3",
        name=str(tmp_path / "site" / "db.sqlite3"),
    )


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """A Config whose backup and log folders live in the test's tmp dir."""
    (tmp_path / "site").mkdir(exist_ok=True)
    return build_config(
        project_dir=tmp_path / "site",
        settings_module="site_settings",
        environ={},
        flags={},
        secret_keys=("test-only",),
    )


def write_project(folder: Path, databases: dict[str, DbParams], opskit: str = "{}") -> Path:
    """Write a minimal Django project (manage.py and settings) using ``databases``."""
    folder.mkdir(parents=True, exist_ok=True)
    module = f"settings_{secrets.token_hex(4)}"
    entries = []
    for alias, db in databases.items():
        entries.append(
            f"    {alias!r}: {{'ENGINE': {db.django_engine!r}, 'NAME': {db.name!r},"
            f" 'USER': {db.user!r}, 'PASSWORD': {db.password!r}, 'HOST': {db.host!r},"
            f" 'PORT': {db.port!r}, 'OPTIONS': {db.options!r}}},"
        )
    # A MySQL project needs a driver to set Django up; PyMySQL stands in for mysqlclient.
    driver = "import pymysql\npymysql.install_as_MySQLdb()\n"
    needs_driver = any("mysql" in db.django_engine for db in databases.values())
    (folder / f"{module}.py").write_text(
        (driver if needs_driver else "") + "SECRET_KEY = 'test-only'\n"
        "USE_TZ = True\n"
        "INSTALLED_APPS = ['django.contrib.contenttypes', 'django.contrib.sessions']\n"
        "DATABASES = {\n" + "\n".join(entries) + "\n}\n"
        f"OPSKIT = {opskit}\n"
    )
    (folder / "manage.py").write_text(
        f"import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', '{module}')\n"
    )
    return folder


def run_opskit(
    *args: str | Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: int = 120,
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``opskit`` console script as a real process."""
    full_env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    full_env.update(env or {})
    return subprocess.run(
        [str(OPSKIT), *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture(params=["postgresql", "mysql", "sqlite"])
def any_db(request: pytest.FixtureRequest) -> DbParams:
    """The same test on a fresh PostgreSQL, MariaDB and SQLite database."""
    fixture = {"postgresql": "pg_db", "mysql": "mysql_db", "sqlite": "sqlite_db"}[request.param]
    db: DbParams = request.getfixturevalue(fixture)
    return db
