"""Engine registry: pick the engine for a Django ENGINE string."""

from __future__ import annotations

from pathlib import Path

from opskit.engines.base import DbParams, Engine, Tools
from opskit.engines.mysql import MySQL
from opskit.engines.postgresql import PostgreSQL
from opskit.engines.sqlite import SQLite
from opskit.errors import UnsupportedEngine

# The last dotted part of Django's ENGINE, as used by Django itself and by GeoDjango.
VENDORS = {
    "postgresql": "postgresql",
    "postgresql_psycopg2": "postgresql",
    "postgis": "postgresql",
    "mysql": "mysql",
    "sqlite3": "sqlite",
    "spatialite": "sqlite",
}
SUPPORTED = "PostgreSQL (postgresql, postgis), MySQL/MariaDB (mysql), SQLite (sqlite3)"


def vendor_of(django_engine: str) -> str:
    """Return ``postgresql``, ``mysql`` or ``sqlite`` for a Django ENGINE string."""
    vendor = VENDORS.get(django_engine.rsplit(".", 1)[-1])
    if vendor is None:
        raise UnsupportedEngine(
            f"database engine {django_engine or '(none)'} is not supported",
            f"opskit backs up {SUPPORTED}",
        )
    return vendor


def engine_for(db: DbParams, tools: Tools, work_dir: Path | None = None) -> Engine:
    """Return the engine object for one database."""
    vendor = vendor_of(db.django_engine)
    if vendor == "postgresql":
        return PostgreSQL(tools.pg_bin_dir)
    if vendor == "mysql":
        return MySQL(tools.mysql_bin_dir)
    return SQLite(work_dir)


__all__ = ["SUPPORTED", "DbParams", "Engine", "Tools", "engine_for", "vendor_of"]
