"""Databases on the shared PostgreSQL server as the tests' projects name them, and their removal
with everything a restore derived from them."""

from __future__ import annotations

from support.services import PG, psql

from opskit.engines import DbParams


def shared_pg(name: str) -> DbParams:
    """Database ``name`` on the shared PostgreSQL server, as a project names it."""
    return DbParams(
        alias="default",
        django_engine="django.db.backends.postgresql",
        name=name,
        user=PG["user"],
        host=PG["host"],
        port=PG["port"],
    )


def drop_pg_databases(name: str) -> None:
    """Drop ``name`` and every database a restore derived from it on the shared server."""
    for db in psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{name}%'").split():
        psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
