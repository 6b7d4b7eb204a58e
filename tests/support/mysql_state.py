"""The whole state of a MariaDB schema, to compare before and after a restore, and helpers to
back up and restore through the engine alone (no CLI, no project).

A row count is not a restore test: ``state`` holds every row of every table (with the
history of system-versioned ones), AUTO_INCREMENT counters, sequences' state, the
definitions of tables, views, triggers, routines and events as information_schema and
SHOW CREATE give them, and the schema's character set and collation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import secrets
from collections.abc import Iterator
from typing import Any

import pymysql
from support.services import MY

# STAMP, Backup and content_of are this module's too: the tests import them from here.
from support.state import STAMP as STAMP
from support.state import Backup as Backup
from support.state import Through
from support.state import content_of as content_of

from opskit.engines import DbParams
from opskit.engines.mysql import MySQL

ROOT = {**MY, "port": int(MY["port"]), "password": ""}


@contextlib.contextmanager
def connect(
    database: str | None = None, autocommit: bool = True, **server: Any
) -> Iterator[pymysql.Connection[Any]]:
    params = {**ROOT, **server}
    conn = pymysql.connect(
        host=params["host"],
        port=int(params["port"]),
        user=params["user"],
        password=params["password"],
        database=database,
        charset="utf8mb4",
        autocommit=autocommit,
        max_allowed_packet=1 << 30,
        binary_prefix=True,
    )
    try:
        yield conn
    finally:
        conn.close()


def run(sql: str, database: str | None = None, **server: Any) -> list[tuple[Any, ...]]:
    """Run one or more statements as root; return the last result's rows."""
    with connect(database, **server) as conn, conn.cursor() as cur:
        rows: list[tuple[Any, ...]] = []
        for statement in split(sql):
            cur.execute(statement)
            rows = list(cur.fetchall())
        return rows


def split(sql: str) -> list[str]:
    """Split on ";" at line ends (test SQL only: bodies keep their inner ";" mid-line)."""
    return [s.strip() for s in re.split(r";\s*\n", sql + "\n") if s.strip()]


def schemas(**server: Any) -> set[str]:
    return {r[0] for r in run("SHOW DATABASES", **server)}


def drop_schemas(prefix: str, **server: Any) -> None:
    for name in schemas(**server):
        if name == prefix or name.startswith(prefix + "__"):
            run(f"DROP DATABASE IF EXISTS {q(name)}", **server)


def q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def lit(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _show(cur: Any, sql: str) -> tuple[Any, ...]:
    cur.execute(sql)
    return tuple(cur.fetchone())


def state(schema: str, **server: Any) -> dict[str, Any]:
    """Everything a restore must bring back, as comparable values."""
    with connect(schema, **server) as conn, conn.cursor() as cur:

        def rows(sql: str, *args: Any) -> list[tuple[Any, ...]]:
            cur.execute(sql, args)
            return [tuple(r) for r in cur.fetchall()]

        found: dict[str, Any] = {}
        found["schema"] = rows(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME"
            " FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
            schema,
        )
        tables = rows(
            "SELECT TABLE_NAME, TABLE_TYPE, ENGINE, AUTO_INCREMENT, TABLE_COLLATION,"
            " CREATE_OPTIONS, TABLE_COMMENT FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME",
            schema,
        )
        found["tables"] = tables
        data: dict[str, Any] = {}
        for name, kind, *_ in tables:
            if kind == "VIEW":
                data[name] = _show(cur, f"SHOW CREATE VIEW {q(name)}")
                continue
            data[name + " (create)"] = _show(cur, f"SHOW CREATE TABLE {q(name)}")
            if kind == "SEQUENCE":
                data[name] = rows(f"SELECT * FROM {q(name)}")
            elif kind == "SYSTEM VERSIONED":
                data[name] = sorted(
                    rows(f"SELECT *, ROW_START, ROW_END FROM {q(name)} FOR SYSTEM_TIME ALL"),
                    key=repr,
                )
            else:
                data[name] = sorted(rows(f"SELECT * FROM {q(name)}"), key=repr)
        found["data"] = data
        found["columns"] = rows(
            "SELECT TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, COLUMN_DEFAULT, IS_NULLABLE,"
            " COLUMN_TYPE, CHARACTER_SET_NAME, COLLATION_NAME, EXTRA, GENERATION_EXPRESSION"
            " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s"
            " ORDER BY TABLE_NAME, ORDINAL_POSITION",
            schema,
        )
        found["foreign_keys"] = rows(
            "SELECT CONSTRAINT_NAME, TABLE_NAME, REFERENCED_TABLE_NAME, UNIQUE_CONSTRAINT_SCHEMA,"
            " UPDATE_RULE, DELETE_RULE FROM information_schema.REFERENTIAL_CONSTRAINTS"
            " WHERE CONSTRAINT_SCHEMA = %s ORDER BY CONSTRAINT_NAME",
            schema,
        )
        found["triggers"] = rows(
            "SELECT TRIGGER_NAME, EVENT_MANIPULATION, EVENT_OBJECT_TABLE, ACTION_ORDER,"
            " ACTION_STATEMENT, ACTION_TIMING, SQL_MODE, DEFINER, CHARACTER_SET_CLIENT,"
            " COLLATION_CONNECTION, DATABASE_COLLATION FROM information_schema.TRIGGERS"
            " WHERE TRIGGER_SCHEMA = %s ORDER BY TRIGGER_NAME",
            schema,
        )
        found["views"] = rows(
            "SELECT TABLE_NAME, VIEW_DEFINITION, CHECK_OPTION, IS_UPDATABLE, DEFINER,"
            " SECURITY_TYPE, CHARACTER_SET_CLIENT, COLLATION_CONNECTION, ALGORITHM"
            " FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME",
            schema,
        )
        routines = rows(
            "SELECT ROUTINE_NAME, ROUTINE_TYPE, DTD_IDENTIFIER, ROUTINE_BODY, ROUTINE_DEFINITION,"
            " IS_DETERMINISTIC, SQL_DATA_ACCESS, SECURITY_TYPE, SQL_MODE, ROUTINE_COMMENT,"
            " DEFINER, CHARACTER_SET_CLIENT, COLLATION_CONNECTION, DATABASE_COLLATION"
            " FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s ORDER BY ROUTINE_NAME",
            schema,
        )
        found["routines"] = routines
        found["routines (create)"] = [
            _show(cur, f"SHOW CREATE {kind} {q(name)}") for name, kind, *_ in routines
        ]
        events = rows(
            "SELECT EVENT_NAME, DEFINER, TIME_ZONE, EVENT_BODY, EVENT_DEFINITION, EVENT_TYPE,"
            " EXECUTE_AT, INTERVAL_VALUE, INTERVAL_FIELD, SQL_MODE, STARTS, ENDS, STATUS,"
            " ON_COMPLETION, EVENT_COMMENT, CHARACTER_SET_CLIENT, COLLATION_CONNECTION,"
            " DATABASE_COLLATION FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s"
            " ORDER BY EVENT_NAME",
            schema,
        )
        found["events"] = events
        found["events (create)"] = [_show(cur, f"SHOW CREATE EVENT {q(e[0])}") for e in events]
        return found


def without_definers(found: dict[str, Any]) -> dict[str, Any]:
    """The state with every definer blanked (to compare a restore that redefined them)."""
    text = repr(found)
    text = re.sub(r"DEFINER=`[^`]*`@`[^`]*`", "DEFINER=?", text)
    text = re.sub(r"'[^'@]+@[^']+'", "'?@?'", text)
    return {"state": text}


# --- an app account, as Django uses ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class App:
    user: str
    password: str
    host: str = "%"

    @property
    def account(self) -> str:
        return f"{self.user}@{self.host}"


@contextlib.contextmanager
def app_user(database: str, grant_scratch: bool = True, **server: Any) -> Iterator[App]:
    """A user with a password and all rights on ``database`` (and its restore schemas)."""
    app = App(f"opskit_app_{secrets.token_hex(4)}", f"pw-{secrets.token_hex(8)}")
    who = f"{lit(app.user)}@'%'"
    pattern = database.replace("_", "\\_")
    run(f"CREATE USER {who} IDENTIFIED BY {lit(app.password)}", **server)
    try:
        run(f"GRANT ALL ON {q(pattern)}.* TO {who}", **server)
        if grant_scratch:
            run(f"GRANT ALL ON {q(pattern + chr(92) + '_' + chr(92) + '_%')}.* TO {who}", **server)
        yield app
    finally:
        run(f"DROP USER IF EXISTS {who}", **server)


def params(name: str, app: App | None = None, **server: Any) -> DbParams:
    conn = {**ROOT, **server}
    return DbParams(
        alias="default",
        django_engine="django.db.backends.mysql",
        name=name,
        user=app.user if app else conn["user"],
        password=app.password if app else conn["password"],
        host=conn["host"],
        port=str(conn["port"]),
    )


# --- backup and restore through the engine ----------------------------------------------------


_MYSQL = Through(MySQL)
backup = _MYSQL.backup
archive_with = _MYSQL.archive_with
context = _MYSQL.context
restore = _MYSQL.restore
