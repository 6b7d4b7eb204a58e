"""Test data that a backup must bring back identically, and snapshots to compare it by."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pymysql

from opskit.engines import DbParams

BIG_TEXT = "ünïcødé ✓ 日本語 🚀 " * 150_000  # ~4 MB: a large row
BLOB = bytes(range(256)) * 4096  # 1 MiB with every byte value
ROWS: list[tuple[Any, ...]] = [
    (
        "plain",
        b"\x00\x01\xff",
        None,
        {"a": [1, 2, {"b": None}]},
        datetime(2026, 3, 29, 0, 30, tzinfo=UTC),
    ),
    (
        "ünïcødé 日本語 🚀",
        BLOB,
        "NULL-free",
        {"emoji": "🚀", "n": 1.5},
        datetime(2026, 10, 25, 3, 59, 59, 123456, tzinfo=timezone(timedelta(hours=2))),
    ),
    ("quotes ' \" \\ \t\n line", b"", "tab\tnew\nline", [], None),
    ("big", None, BIG_TEXT, {"k": "v"}, datetime(1999, 12, 31, 23, 59, tzinfo=UTC)),
]


class Adapter:
    """Create the schema, change data and take snapshots on one engine."""

    kind = ""
    placeholder = "?"  # the driver's parameter marker; the SQL here is written with "?"
    doc_cast = ""  # what follows the ``doc`` parameter in an INSERT (PostgreSQL: ::jsonb)

    def __init__(self, db: DbParams) -> None:
        self.db = db

    def open(self) -> Any:
        """A new DB-API connection to the database."""
        raise NotImplementedError

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        """A connection, committed when the block ends without an error, always closed."""
        conn = self.open()
        try:
            yield conn
            conn.commit()
        finally:
            conn.close()

    def execute(self, *statements: str, params: list[tuple[Any, ...]] | None = None) -> None:
        with self.connect() as conn:
            cur = conn.cursor()
            for sql in statements:
                if params:
                    cur.executemany(sql.replace("?", self.placeholder), params)
                else:
                    cur.execute(sql)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            cur = conn.cursor()
            cur.execute(sql)
            return list(cur.fetchall())

    def tables(self) -> list[str]:
        raise NotImplementedError

    def counter(self) -> int:
        """Return the next id the auto-increment counter of ``item`` would give."""
        raise NotImplementedError

    def populate(self) -> None:
        self.create()
        self.insert(ROWS)
        # Advance the counter past the rows, as deletes and failed inserts do in real life.
        for _ in range(3):
            self.insert([("temp", None, None, {}, None)])
        self.execute("DELETE FROM item WHERE name = 'temp'")
        self.execute(
            "INSERT INTO django_session (session_key, session_data, expire_date) VALUES"
            " ('k1', 'secret-session', '2030-01-01 00:00:00')"
        )

    def create(self) -> None:
        raise NotImplementedError

    def insert(self, rows: list[tuple[Any, ...]]) -> None:
        self.execute(
            f"INSERT INTO item (name, data, note, doc, at) VALUES (?, ?, ?, ?{self.doc_cast}, ?)",
            params=[(n, d, t, json.dumps(j), self.at(a) if a else None) for n, d, t, j, a in rows],
        )

    def at(self, value: datetime) -> Any:
        """A zone-aware time as the ``at`` column takes it."""
        return value

    def mutate(self) -> None:
        """Change everything a restore must undo."""
        self.execute("UPDATE item SET name = 'changed', note = NULL")
        self.execute("DELETE FROM item WHERE name = 'changed' AND data IS NULL")
        self.insert([("new", b"new", "new", {"new": True}, None)] * 3)
        self.execute("CREATE TABLE extra (id INTEGER PRIMARY KEY)")

    def snapshot(self) -> dict[str, Any]:
        rows = []
        for row in self.query("SELECT id, name, data, note, doc, at FROM item ORDER BY id"):
            ident, name, data, note, doc, at = row
            if isinstance(doc, str):
                doc = json.loads(doc)
            if isinstance(at, str):
                at = datetime.fromisoformat(at)
            if isinstance(at, datetime) and at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
            rows.append((ident, name, bytes(data) if data is not None else None, note, doc, at))
        sessions = self.query("SELECT COUNT(*) FROM django_session")[0][0]
        return {
            "items": rows,
            "counter": self.counter(),
            "tables": sorted(self.tables()),
            "sessions": sessions,
        }


class PostgresAdapter(Adapter):
    kind = "postgresql"
    placeholder = "%s"
    doc_cast = "::jsonb"

    def open(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=self.db.host, port=self.db.port, user=self.db.user, dbname=self.db.name
        )

    def tables(self) -> list[str]:
        return [
            r[0] for r in self.query("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        ]

    def counter(self) -> int:
        last, called = self.query("SELECT last_value, is_called FROM item_id_seq")[0]
        return int(last) + (1 if called else 0)

    def create(self) -> None:
        self.execute(
            "CREATE TABLE item (id bigserial PRIMARY KEY, name text NOT NULL, data bytea,"
            " note text, doc jsonb, at timestamptz)",
            "CREATE TABLE django_session (session_key varchar(40) PRIMARY KEY,"
            " session_data text NOT NULL, expire_date timestamptz NOT NULL)",
        )


class MySQLAdapter(Adapter):
    kind = "mysql"
    placeholder = "%s"

    def open(self) -> pymysql.Connection[Any]:
        return pymysql.connect(
            host=self.db.host,
            port=int(self.db.port),
            user=self.db.user,
            password=self.db.password,
            database=self.db.name,
            charset="utf8mb4",
            max_allowed_packet=64 * 1024 * 1024,
        )

    def tables(self) -> list[str]:
        return [r[0] for r in self.query("SHOW TABLES")]

    def counter(self) -> int:
        create = self.query("SHOW CREATE TABLE item")[0][1]
        for part in create.split():
            if part.startswith("AUTO_INCREMENT="):
                return int(part.split("=")[1])
        return 1

    def create(self) -> None:
        self.execute(
            "CREATE TABLE item (id bigint AUTO_INCREMENT PRIMARY KEY, name varchar(200) NOT NULL,"
            " data longblob, note longtext, doc json, at datetime(6))"
            " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
            "CREATE TABLE django_session (session_key varchar(40) PRIMARY KEY,"
            " session_data longtext NOT NULL, expire_date datetime(6) NOT NULL)",
        )

    def at(self, value: datetime) -> datetime:
        # MySQL datetimes carry no zone: store UTC, as Django does with USE_TZ.
        return value.astimezone(UTC).replace(tzinfo=None)


class SQLiteAdapter(Adapter):
    kind = "sqlite"

    def open(self) -> sqlite3.Connection:
        Path(self.db.name).parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(self.db.name)

    def tables(self) -> list[str]:
        rows = self.query("SELECT name FROM sqlite_master WHERE type='table'")
        return [r[0] for r in rows if r[0] != "sqlite_sequence"]

    def counter(self) -> int:
        return int(self.query("SELECT seq FROM sqlite_sequence WHERE name='item'")[0][0]) + 1

    def create(self) -> None:
        self.execute(
            "CREATE TABLE item (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,"
            " data BLOB, note TEXT, doc TEXT, at TEXT)",
            "CREATE TABLE django_session (session_key varchar(40) PRIMARY KEY,"
            " session_data TEXT NOT NULL, expire_date TEXT NOT NULL)",
        )

    def at(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat()


def adapter_for(db: DbParams) -> Adapter:
    if "postgresql" in db.django_engine:
        return PostgresAdapter(db)
    if "mysql" in db.django_engine:
        return MySQLAdapter(db)
    return SQLiteAdapter(db)
