"""PostgreSQL test helpers: run SQL as any role, take a database's whole state (rows,
sequences, catalog objects, owners, ACLs, database properties), back up and restore with
the engine as the jobs do."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

from support.services import PG

# STAMP, Backup and content_of are this module's too: the tests import them from here.
from support.state import STAMP as STAMP
from support.state import Backup as Backup
from support.state import Through
from support.state import content_of as content_of

from opskit.engines import DbParams
from opskit.engines.postgresql import PostgreSQL

SERVER = PG


def env(db: str = "postgres", **server: str) -> dict[str, str]:
    """The environment psql and pg_dump reach ``db`` by (PGHOST, PGPORT, PGUSER, PGDATABASE)."""
    conn = {**SERVER, **server}
    return {
        **os.environ,
        "PGHOST": conn["host"],
        "PGPORT": conn["port"],
        "PGUSER": conn["user"],
        "PGDATABASE": db,
    }


def sql(query: str, db: str = "postgres", *, check: bool = True, **server: str) -> str:
    """Run SQL with psql (stdin, ON_ERROR_STOP); the database by PGDATABASE, never argv."""
    done = subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"],
        input=query,
        capture_output=True,
        text=True,
        env=env(db, **server),
        check=False,
    )
    if check and done.returncode:
        raise RuntimeError(done.stderr)
    return done.stdout.strip()


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def name(prefix: str = "opskit_pg") -> str:
    return f"{prefix}_{secrets.token_hex(5)}"


def databases(prefix: str, **server: str) -> list[str]:
    out = sql(
        "SELECT datname FROM pg_database WHERE starts_with(datname, " + lit(prefix) + ")",
        check=True,
        **server,
    )
    return sorted(out.splitlines())


@contextlib.contextmanager
def scratch_server_objects(*roles: str, dbs: tuple[str, ...] = (), **server: str) -> Iterator[None]:
    """Drop the databases (and every one derived from them) and then the roles, afterwards."""
    try:
        yield
    finally:
        for db in dbs:
            for found in databases(db, **server):
                sql(f"DROP DATABASE IF EXISTS {ident(found)} WITH (FORCE)", check=True, **server)
        for role in roles:
            sql(f"DROP ROLE IF EXISTS {ident(role)}", check=True, **server)


def params(db: str, user: str = "postgres", **server: str) -> DbParams:
    conn = {**SERVER, **server}
    return DbParams(
        alias="default",
        django_engine="django.db.backends.postgresql",
        name=db,
        user=user,
        host=conn["host"],
        port=conn["port"],
    )


_STATE = r"""
SELECT json_build_object(
 'relations', (SELECT json_agg(json_build_array(n.nspname, c.relname, c.relkind,
      pg_get_userbyid(c.relowner), (SELECT array_agg(a ORDER BY a::text) FROM
      unnest(c.relacl) a), obj_description(c.oid, 'pg_class'))
      ORDER BY n.nspname, c.relname)
   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'),
 'columns', (SELECT json_agg(json_build_array(c.relname, a.attname, format_type(a.atttypid,
      a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attacl::text[],
      a.attcollation::regcollation::text) ORDER BY c.relname, a.attnum)
   FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
   JOIN pg_namespace n ON n.oid = c.relnamespace
   LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE a.attnum > 0 AND NOT a.attisdropped AND n.nspname NOT IN ('pg_catalog',
      'information_schema') AND n.nspname NOT LIKE 'pg\_%'),
 'constraints', (SELECT json_agg(json_build_array(connamespace::regnamespace::text,
      conrelid::regclass::text, conname, pg_get_constraintdef(oid))
      ORDER BY connamespace::regnamespace::text, conname) FROM pg_constraint
   WHERE connamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)),
 'indexes', (SELECT json_agg(json_build_array(schemaname, indexname, indexdef)
      ORDER BY schemaname, indexname)
   FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog', 'information_schema')),
 'views', (SELECT json_agg(json_build_array(schemaname, viewname, definition)
      ORDER BY schemaname, viewname)
   FROM pg_views WHERE schemaname NOT IN ('pg_catalog', 'information_schema')),
 'functions', (SELECT json_agg(json_build_array(p.oid::regprocedure::text,
      pg_get_userbyid(p.proowner), p.proacl::text[], md5(pg_get_functiondef(p.oid)))
      ORDER BY p.oid::regprocedure::text)
   FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND p.prokind <> 'a'),
 'schemas', (SELECT json_agg(json_build_array(nspname, pg_get_userbyid(nspowner),
      (SELECT array_agg(a ORDER BY a::text) FROM unnest(nspacl) a),
      obj_description(oid, 'pg_namespace')) ORDER BY nspname)
   FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema')
   AND nspname NOT LIKE 'pg\_%'),
 'types', (SELECT json_agg(json_build_array(t.oid::regtype::text, t.typtype,
      pg_get_userbyid(t.typowner)) ORDER BY t.oid::regtype::text) FROM pg_type t
   JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname NOT IN ('pg_catalog',
      'information_schema') AND n.nspname NOT LIKE 'pg\_%' AND t.typtype IN ('d', 'e', 'r')),
 'default_acl', (SELECT json_agg(json_build_array(pg_get_userbyid(defaclrole),
      defaclnamespace::regnamespace::text, defaclobjtype, defaclacl::text[])
      ORDER BY defaclrole, defaclnamespace, defaclobjtype)
   FROM pg_default_acl),
 'extensions', (SELECT json_agg(json_build_array(extname, extversion) ORDER BY extname)
   FROM pg_extension),
 'triggers', (SELECT json_agg(json_build_array(tgrelid::regclass::text, tgname,
      pg_get_triggerdef(oid)) ORDER BY tgrelid, tgname) FROM pg_trigger WHERE NOT tgisinternal),
 'sequences', (SELECT json_agg(json_build_array(schemaname, sequencename, last_value)
      ORDER BY schemaname, sequencename) FROM pg_sequences),
 'large_objects', (SELECT json_agg(json_build_array(pg_get_userbyid(m.lomowner),
      md5(lo_get(m.oid))) ORDER BY m.oid) FROM pg_largeobject_metadata m)
)
"""

_DATABASE = r"""
SELECT json_build_object(
 'owner', pg_get_userbyid(d.datdba), 'encoding', pg_encoding_to_char(d.encoding),
 'collate', d.datcollate, 'ctype', d.datctype, 'provider', d.datlocprovider,
 'icu_locale', d.daticulocale, 'limit', d.datconnlimit, 'allow', d.datallowconn,
 'comment', shobj_description(d.oid, 'pg_database'),
 'acl', (SELECT array_agg(a ORDER BY a::text) FROM unnest(d.datacl) a),
 'settings', (SELECT json_object_agg(COALESCE(pg_get_userbyid(NULLIF(s.setrole, 0)), '*'),
      s.setconfig) FROM pg_db_role_setting s WHERE s.setdatabase = d.oid))
FROM pg_database d WHERE d.datname = {name}
"""


def rows(db: str, **server: str) -> dict[str, str]:
    """Every table's rows as one md5 (ordered by the row's text): equal means equal data."""
    tables = sql(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables"
        " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        db,
        check=True,
        **server,
    ).splitlines()
    if not tables:
        return {}
    query = " UNION ALL ".join(
        f"SELECT {lit(t)}, count(*)::text || ':' || COALESCE(md5(string_agg(r::text, '|'"
        f" ORDER BY r::text)), '') FROM {t} r"
        for t in tables
    )
    out = sql(query, db, check=True, **server)
    return dict(line.split("|", 1) for line in out.splitlines())


def state(db: str, **server: str) -> dict[str, Any]:
    """The whole of a database: its rows, catalog, owners, ACLs and database properties."""
    found: dict[str, Any] = json.loads(sql(_STATE, db, check=True, **server))
    found["rows"] = rows(db, **server)
    found["database"] = json.loads(sql(_DATABASE.format(name=lit(db)), check=True, **server))
    return found


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The parts of two states that differ (for a readable assertion)."""
    return {k: (before.get(k), after.get(k)) for k in before if before.get(k) != after.get(k)}


_PG = Through(PostgreSQL)
backup = _PG.backup
archive_with = _PG.archive_with
context = _PG.context
restore = _PG.restore
