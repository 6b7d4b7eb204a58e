"""Engine registry: pick the engine for a Django ENGINE string."""

from __future__ import annotations

import importlib
from pathlib import Path

from opskit.engines.base import DbParams, Engine, Tools
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


# Each vendor's module and class, imported only when a database of that vendor is used:
# the vendor modules import the archive and pipe modules, which must not import them back.
MODULES = {
    "postgresql": ("opskit.engines.postgresql", "PostgreSQL"),
    "mysql": ("opskit.engines.mysql", "MySQL"),
    "sqlite": ("opskit.engines.sqlite", "SQLite"),
}


def engine_for(db: DbParams, tools: Tools, work_dir: Path | None = None) -> Engine:
    """Return the engine object for one database."""
    vendor = vendor_of(db.django_engine)
    module, name = MODULES[vendor]
    cls = getattr(importlib.import_module(module), name)
    engine: Engine
    if vendor == "postgresql":
        engine = cls(tools.pg_bin_dir)
    elif vendor == "mysql":
        engine = cls(tools.mysql_bin_dir)
    else:
        engine = cls(work_dir)
    return engine


__all__ = ["SUPPORTED", "DbParams", "Engine", "Tools", "engine_for", "vendor_of"]
