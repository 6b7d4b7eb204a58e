"""Fixtures: throwaway databases on the real servers, projects, and a way to run opskit."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.services import MY, mysql, psql, random_name, unavailable
from support.shared_pg import drop_pg_databases, shared_pg

from opskit.config import Config, build_config
from opskit.engines import DbParams

# The fixtures that reach the shared servers, and the marker each gives a test that uses
# them (its own fixtures, theirs, or one it asks for by name in a parameter).
SERVER_MARKERS = {
    "pg_server": "postgresql",
    "pg_db": "postgresql",
    "mysql_server": "mysql",
    "mysql_db": "mysql",
}
# any_db's parameters that are a server (its third, sqlite, is a file).
ANY_DB_SERVERS = {"postgresql", "mysql"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a server, so ``-m "not postgresql and not mysql"`` is the
    fast lane; tests that start a private server say so with the marker themselves."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        params = dict(callspec.params) if callspec is not None else {}
        names |= {value for value in params.values() if isinstance(value, str)}
        wanted = {SERVER_MARKERS[name] for name in names & SERVER_MARKERS.keys()}
        if params.get("any_db") in ANY_DB_SERVERS:
            wanted.add(params["any_db"])
        for marker in sorted(wanted - {mark.name for mark in item.iter_markers()}):
            item.add_marker(marker)


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


@pytest.fixture
def pg_db(pg_server: None) -> Iterator[DbParams]:
    """A fresh PostgreSQL database, dropped afterwards with anything derived from it."""
    name = random_name()
    psql(f'CREATE DATABASE "{name}"')
    yield shared_pg(name)
    drop_pg_databases(name)


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


@pytest.fixture(params=["postgresql", "mysql", "sqlite"])
def any_db(request: pytest.FixtureRequest) -> DbParams:
    """The same test on a fresh PostgreSQL, MariaDB and SQLite database."""
    fixture = {"postgresql": "pg_db", "mysql": "mysql_db", "sqlite": "sqlite_db"}[request.param]
    db: DbParams = request.getfixturevalue(fixture)
    return db
