"""A MariaDB schema's catalog: its tables, and its triggers, views, routines and events as
definitions that can be saved (in the restore journal) and created again in another schema.

Triggers cannot follow a table into another schema and views cannot be renamed into one,
so a swap takes their definitions, and creates them again where they belong. Each
definition keeps what the server stored with the object (sql_mode, the client character
set and connection collation, the schema collation, an event's time zone), and is created
with ``EXECUTE IMMEDIATE`` from a hex literal: no client-side parsing, no delimiter games,
and the text reaches the server in the character set it was written in.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Callable, Iterable
from typing import Any

# run(sql, database) -> the client's --batch output; database "" = none.
Sql = Callable[[str, str], str]

_WORD = re.compile(r"^[A-Za-z0-9_]+$")
_DEFINER_HEAD = re.compile(
    r"^(CREATE (?:OR REPLACE )?(?:ALGORITHM=\w+ )?)DEFINER="
    r"(?:`(?:[^`]|``)*`@`(?:[^`]|``)*`|`(?:[^`]|``)*`|\S+)"
)


DENIED = re.compile(r"\b(1044|1045|1142|1227)\b|denied", re.I)  # the server's "may not"


def ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def text(value: str) -> str:
    """A string literal the server reads the same under any sql_mode and client charset."""
    return f"CONVERT(X'{value.encode('utf-8').hex()}' USING utf8mb4)" if value else "''"


def unescape(field: str) -> str:
    """Undo the client's --batch escaping of one field (\\t \\n \\0 \\\\)."""
    if "\\" not in field:
        return field
    table = {"t": "\t", "n": "\n", "0": "\0", "\\": "\\"}
    return re.sub(r"\\(.)", lambda m: table.get(m[1], "\\" + m[1]), field)


def unhex(value: str) -> str:
    return bytes.fromhex(value).decode("utf-8", "replace")


def grant_pattern(name: str) -> str:
    """`<name>\\_\\_%`: every schema a restore of ``name`` creates, as a GRANT pattern."""
    escaped = name.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
    return ident(escaped + "\\_\\_%")


def account_literal(user: str) -> str:
    """user@host (as CURRENT_USER() says it) -> 'user'@'host', as GRANT takes it."""
    who, _, host = user.rpartition("@")
    return f"'{who}'@'{host}'" if who else f"'{user}'"


def same_account(a: str, b: str) -> bool:
    ua, _, ha = a.rpartition("@")
    ub, _, hb = b.rpartition("@")
    return ua == ub and ha.lower() == hb.lower()


def charset_clause(charset: tuple[str, str]) -> str:
    return f" CHARACTER SET {charset[0]} COLLATE {charset[1]}" if all(charset) else ""


def drop_command(name: str) -> str:
    """The shell command that drops a schema."""
    return "mariadb -e " + shlex.quote(f"DROP DATABASE {ident(name)}")


def definer_clause(definer: str) -> str:
    """``user@host`` as information_schema writes it -> `user`@`host` (a role: `role`)."""
    user, sep, host = definer.rpartition("@")
    return f"{ident(user)}@{ident(host)}" if sep else ident(definer)


@dataclasses.dataclass(frozen=True)
class Definition:
    """One trigger, view, routine or event, ready to be created in a schema."""

    kind: str  # "trigger", "view", "procedure", "function", "package", "package body", "event"
    name: str
    sql: str  # the CREATE statement, names unqualified: it lands in the current schema
    definer: str = ""  # user@host
    sql_mode: str = ""
    client: str = ""  # character_set_client
    connection: str = ""  # collation_connection
    database: str = ""  # the schema's collation when it was created (not for views)
    time_zone: str = ""  # events
    table: str = ""  # triggers: the table it fires on

    def as_json(self) -> dict[str, str]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Definition:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: str(v) for k, v in data.items() if k in fields})

    def as_current_user(self) -> Definition:
        """The same object, defined by the account that creates it."""
        sql = _DEFINER_HEAD.sub(lambda m: m[1] + "DEFINER=CURRENT_USER", self.sql, count=1)
        return dataclasses.replace(self, sql=sql, definer="CURRENT_USER")

    def drop(self) -> str:
        return drop(self.kind, self.name)

    def create(self, schema_collation: str = "") -> list[str]:
        """The statements that create it in the current schema, as it was stored."""
        sets = [f"sql_mode = {text(self.sql_mode)}"]
        if _WORD.match(self.client):
            sets.append(f"character_set_client = {self.client}")
        if _WORD.match(self.connection):
            sets.append(f"collation_connection = {self.connection}")
        if self.time_zone:
            sets.append(f"time_zone = {text(self.time_zone)}")
        switch = (
            _WORD.match(self.database)
            and schema_collation
            and self.database.lower() != schema_collation.lower()
        )
        statements = ["SET SESSION " + ", ".join(sets)]
        if switch:  # as mariadb-dump does: the object keeps the collation it was made under
            statements.append(f"ALTER DATABASE COLLATE {self.database}")
        statements.append(f"EXECUTE IMMEDIATE {text(self.sql)}")
        if switch:
            statements.append(f"ALTER DATABASE COLLATE {schema_collation}")
        statements.append("SET NAMES utf8mb4")
        return statements


def _rows(out: str) -> list[list[str]]:
    return [line.split("\t") for line in out.splitlines() if line]


def tables(run: Sql, schema: str) -> list[str]:
    """Base tables, system-versioned tables and sequences (not views), by name."""
    out = run(
        "SELECT HEX(TABLE_NAME) FROM information_schema.TABLES"
        " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE <> 'VIEW' ORDER BY TABLE_NAME",
        schema,
    )
    return [unhex(h) for h in out.split()]


def schemas(run: Sql) -> list[str]:
    return [
        unhex(h)
        for h in run("SELECT HEX(SCHEMA_NAME) FROM information_schema.SCHEMATA", "").split()
    ]


def charset_of(run: Sql, schema: str) -> tuple[str, str]:
    """The schema's default character set and collation ("", "" if it does not exist)."""
    out = run(
        "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA"
        f" WHERE SCHEMA_NAME = {text(schema)}",
        "",
    ).split()
    return (out[0], out[1]) if len(out) == 2 else ("", "")


def sequence_defaults(run: Sql, schema: str, refers_to: str) -> list[list[str]]:
    """[table, column, default] of every column whose default names a sequence of ``refers_to``."""
    needle = ident(refers_to) + "."
    out = run(
        "SELECT HEX(TABLE_NAME), HEX(COLUMN_NAME), HEX(COLUMN_DEFAULT)"
        " FROM information_schema.COLUMNS"
        f" WHERE TABLE_SCHEMA = DATABASE() AND LOCATE({text(needle)}, COLUMN_DEFAULT) > 0",
        schema,
    )
    return [[unhex(t), unhex(c), unhex(d)] for t, c, d in _rows(out)]


def point_defaults(defaults: Iterable[list[str]], old: str, new: str) -> list[str]:
    """ALTER statements that make sequence defaults naming schema ``old`` name ``new``."""
    statements = []
    for table, column, default in defaults:
        expr = default.replace(ident(old) + ".", ident(new) + ".")
        statements.append(
            f"ALTER TABLE {ident(table)} ALTER COLUMN {ident(column)} SET DEFAULT {expr}"
        )
    return statements


def triggers(run: Sql, schema: str, on: Iterable[str] | None = None) -> list[Definition]:
    """The schema's triggers, in the order they fire (optionally only those on ``on``)."""
    out = run(
        "SELECT HEX(TRIGGER_NAME), HEX(EVENT_OBJECT_TABLE), ACTION_TIMING, EVENT_MANIPULATION,"
        " HEX(ACTION_STATEMENT), HEX(DEFINER), HEX(SQL_MODE), CHARACTER_SET_CLIENT,"
        " COLLATION_CONNECTION, DATABASE_COLLATION FROM information_schema.TRIGGERS"
        " WHERE TRIGGER_SCHEMA = DATABASE()"
        " ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER",
        schema,
    )
    wanted = set(on) if on is not None else None
    found = []
    for name, table, timing, event, body, definer, mode, client, conn, dbcoll in _rows(out):
        table_name = unhex(table)
        if wanted is not None and table_name not in wanted:
            continue
        who = unhex(definer)
        sql = (
            f"CREATE DEFINER={definer_clause(who)} TRIGGER {ident(unhex(name))} {timing} {event}"
            f" ON {ident(table_name)} FOR EACH ROW {unhex(body)}"
        )
        found.append(
            Definition(
                "trigger",
                unhex(name),
                sql,
                who,
                unhex(mode),
                client,
                conn,
                dbcoll,
                table=table_name,
            )
        )
    return found


def names(run: Sql, schema: str) -> list[tuple[str, str]]:
    """(kind, name) of every table, view, routine and event of the schema ("table" for
    base tables and sequences)."""
    out = run(
        "SELECT IF(TABLE_TYPE = 'VIEW', 'view', 'table'), HEX(TABLE_NAME)"
        " FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() UNION ALL"
        " SELECT LOWER(ROUTINE_TYPE), HEX(ROUTINE_NAME) FROM information_schema.ROUTINES"
        " WHERE ROUTINE_SCHEMA = DATABASE() UNION ALL"
        " SELECT 'event', HEX(EVENT_NAME) FROM information_schema.EVENTS"
        " WHERE EVENT_SCHEMA = DATABASE()",
        schema,
    )
    return [(kind, unhex(name)) for kind, name in _rows(out)]


def drop(kind: str, name: str) -> str:
    return f"DROP {kind.upper()} IF EXISTS {ident(name)}"


def objects(run: Sql, schema: str) -> tuple[list[Definition], list[str]]:
    """The schema's views, routines and events, and the routines whose text this account may
    not read (the server shows a routine's body only to its definer, or with SELECT on
    mysql.proc)."""
    listed = run(
        "SELECT 'view', HEX(TABLE_NAME), HEX(DEFINER) FROM information_schema.VIEWS"
        " WHERE TABLE_SCHEMA = DATABASE() UNION ALL"
        " SELECT LOWER(ROUTINE_TYPE), HEX(ROUTINE_NAME), HEX(DEFINER)"
        " FROM information_schema.ROUTINES"
        " WHERE ROUTINE_SCHEMA = DATABASE() UNION ALL"
        " SELECT 'event', HEX(EVENT_NAME), HEX(DEFINER) FROM information_schema.EVENTS"
        " WHERE EVENT_SCHEMA = DATABASE()",
        schema,
    )
    items = [(kind, unhex(name), unhex(who)) for kind, name, who in _rows(listed)]
    if not items:
        return [], []
    shows = "; ".join(f"SHOW CREATE {kind.upper()} {ident(name)}" for kind, name, _ in items)
    rows = [[unescape(f) for f in row] for row in _rows(run(shows, schema))]
    found, unreadable = [], []
    for (kind, name, who), row in zip(items, rows, strict=True):
        if kind == "view":
            _, sql, client, conn = row
            found.append(Definition(kind, name, sql, who, "", client, conn))
        elif kind == "event":
            _, mode, zone, sql, client, conn, dbcoll = row
            found.append(Definition(kind, name, sql, who, mode, client, conn, dbcoll, zone))
        else:
            _, mode, sql, client, conn, dbcoll = row
            if sql == "NULL":
                unreadable.append(f"{kind} {name} (definer {who})")
                continue
            found.append(Definition(kind, name, sql, who, mode, client, conn, dbcoll))
    return order_views(found), unreadable


def order_views(definitions: list[Definition]) -> list[Definition]:
    """Put views after the views they select from (others keep their order, views last)."""
    views = [d for d in definitions if d.kind == "view"]
    rest = [d for d in definitions if d.kind != "view"]
    names = {v.name for v in views}
    needs = {
        v.name: {n for n in names if n != v.name and ident(n) in v.sql.partition(" AS ")[2]}
        for v in views
    }
    ordered: list[Definition] = []
    placed: set[str] = set()
    while len(ordered) < len(views):
        ready = [v for v in views if v.name not in placed and needs[v.name] <= placed]
        if not ready:  # a cycle of names (a column called like a view): keep the dump's order
            ready = [v for v in views if v.name not in placed]
        for v in ready:
            ordered.append(v)
            placed.add(v.name)
    return rest + ordered


def create_all(definitions: Iterable[Definition], schema_collation: str) -> list[str]:
    statements: list[str] = []
    for d in definitions:
        statements += d.create(schema_collation)
    return statements


def script(statements: Iterable[str]) -> str:
    return "".join(s + ";\n" for s in statements)
