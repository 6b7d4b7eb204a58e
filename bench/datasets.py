"""Benchmark datasets: a PostgreSQL, a MariaDB and an SQLite database of a given dump size.

Each dataset is built once and kept: a ``bench_meta`` table records the size key and
``VERSION``; a dataset whose meta matches is reused, anything else is dropped and
rebuilt. ``bench_meta`` is written last, so a build that was interrupted is redone.

Sizes are the size of a plain-SQL dump (``pg_dump`` plain, ``mariadb-dump``) or, for
SQLite, of the database file. About half of it comes from a pgbench-like accounts table
(very compressible), half from a Django-like ``app_document`` table with text, JSON
and a partly random, partly repetitive blob, so that zstd -3 gets a ratio of about 3-5.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import log  # common first: it puts tests/ on the path for support.*
from support.services import MY, PG, mysql, psql

VERSION = "3"

# Calibrated bytes per row in the plain dump (or the SQLite file): used only to pick
# row counts; the real size is measured after the build and reported.
PG_ACCOUNT_BYTES = 95
PG_DOC_BYTES = 1516
MY_ACCOUNT_BYTES = 101
MY_DOC_BYTES = 815
SQLITE_ACCOUNT_BYTES = 97
SQLITE_DOC_BYTES = 685

PG_DUMP_FLAGS = ["--format=plain", "--clean", "--if-exists", "--no-owner", "--no-privileges"]
MY_DUMP_FLAGS = ["--single-transaction", "--routines", "--triggers"]

_UNITS = {"k": 10**3, "m": 10**6, "g": 10**9}


def parse_size(key: str) -> int:
    """``1g`` -> 1.05e9 bytes, ``100m`` -> 1.05e8: the middle of "1.0-1.1 GB"."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg])", key.strip().lower())
    if not match:
        raise ValueError(f"size {key!r}: expected a number and k, m or g (10m, 100m, 1g)")
    return int(float(match.group(1)) * _UNITS[match.group(2)] * 1.05)


@dataclass
class Dataset:
    engine: str  # "pg", "mysql" or "sqlite"
    size: str
    name: str  # database name, or the SQLite file's path
    project_dir: Path
    reused: bool = False
    build_seconds: float = 0.0
    dump_bytes: int = 0  # plain dump size (SQLite: the file's size)
    tables: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def settings_module(self) -> str:
        return "bench_settings"

    @property
    def dbbackup_settings_module(self) -> str:
        return "bench_dbbackup_settings"

    def as_json(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "size": self.size,
            "name": self.name,
            "project_dir": str(self.project_dir),
            "reused": self.reused,
            "build_seconds": round(self.build_seconds, 1),
            "dump_bytes": self.dump_bytes,
            "tables": self.tables,
        }


# --------------------------------------------------------------------------- helpers


def pg_env() -> dict[str, str]:
    return {**os.environ, "PGHOST": PG["host"], "PGPORT": PG["port"], "PGUSER": PG["user"]}


def pg_dump_argv(db: str) -> list[str]:
    return ["pg_dump", "-h", PG["host"], "-p", PG["port"], "-U", PG["user"], *PG_DUMP_FLAGS, db]


def my_dump_argv(db: str) -> list[str]:
    conn = ["-h", MY["host"], "-P", MY["port"], "-u", MY["user"]]
    return ["mariadb-dump", *conn, *MY_DUMP_FLAGS, db]


def stream_size(argv: list[str], env: dict[str, str] | None = None) -> int:
    """Run ``argv`` and count the bytes it writes to stdout (nothing is kept)."""
    total = 0
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1 << 20):
            total += len(chunk)
        err = proc.stderr.read() if proc.stderr else b""
    if proc.returncode:
        raise RuntimeError(f"{argv[0]} failed: {err.decode(errors='replace').strip()}")
    return total


def _meta_matches(meta: dict[str, str], size: str) -> bool:
    return meta.get("size") == size and meta.get("version") == VERSION and "dump_bytes" in meta


def _meta_of(lines: str) -> dict[str, str]:
    """``bench_meta`` read as ``key=value`` lines."""
    return dict(line.split("=", 1) for line in lines.splitlines() if "=" in line)


def _meta_rows(size: str, dump_bytes: str) -> list[tuple[str, str]]:
    """What ``bench_meta`` records, written last: a build that stopped before is redone."""
    built = time.strftime("%Y-%m-%dT%H:%M:%S")
    return [("size", size), ("version", VERSION), ("dump_bytes", dump_bytes), ("built", built)]


def _meta_values(size: str, dump_bytes: int) -> str:
    """``bench_meta``'s rows as an SQL VALUES list."""
    return ", ".join(f"('{key}', '{value}')" for key, value in _meta_rows(size, str(dump_bytes)))


def _row_counts(size: str, account_bytes: int, doc_bytes: int) -> tuple[int, int]:
    """How many accounts and documents make about half and half of ``size``."""
    target = parse_size(size)
    accounts = max(1000, target // 2 // account_bytes)
    docs = max(100, (target - accounts * account_bytes) // doc_bytes)
    return accounts, docs


def _ranges(total: int, chunk: int) -> Iterator[tuple[int, int]]:
    """1 to ``total`` in pieces of ``chunk``: the first and last number of each."""
    for first in range(1, total + 1, chunk):
        yield first, min(total, first + chunk - 1)


def _build_or_reuse(ds: Dataset, meta: dict[str, str], fill: Callable[[], int]) -> None:
    """Reuse the server's dataset when its meta matches, else ``fill`` it (its dump's size)."""
    start = time.monotonic()
    if _meta_matches(meta, ds.size):
        ds.reused = True
        ds.dump_bytes = int(meta["dump_bytes"])
    else:
        ds.dump_bytes = fill()
    ds.build_seconds = time.monotonic() - start


def _tables(listing: str, count: Callable[[str], str]) -> dict[str, dict[str, int]]:
    """Rows and bytes of each table, from ``name bytes`` lines and a row counter."""
    found = {}
    for line in listing.splitlines():
        name, nbytes = line.split()
        found[name] = {"rows": int(count(name)), "bytes": int(nbytes)}
    return found


# --------------------------------------------------------------------------- PostgreSQL

PG_DOC_TABLE = """
CREATE TABLE app_document (
    id bigserial PRIMARY KEY,
    title varchar(200) NOT NULL,
    body text NOT NULL,
    data jsonb NOT NULL,
    blob bytea,
    created timestamptz NOT NULL
)"""

# Text: repeated words plus md5 hex; JSON: a few keys; bytea: 512 pseudo-random bytes
# (sha512 of the id, incompressible) and 60 repetitive bytes.
PG_DOC_INSERT = """
INSERT INTO app_document (title, body, data, blob, created)
SELECT
  'Document ' || i || ': ' || (ARRAY['quarterly report', 'meeting notes', 'invoice',
      'contract draft', 'release plan', 'incident review'])[1 + i % 6],
  repeat((ARRAY['lorem ipsum dolor sit amet ', 'the quick brown fox jumps over the lazy dog ',
      'customer asked about the delivery date ', 'please review the attached figures '])
      [1 + i % 4], 2 + i % 4) || md5(i::text) || ' ' || md5((i * 7)::text),
  jsonb_build_object('n', i, 'status', (ARRAY['draft', 'review', 'published', 'archived'])
      [1 + i % 4], 'score', round((random() * 100)::numeric, 2),
      'tags', jsonb_build_array('t' || (i % 17), 't' || (i % 31)), 'ref', md5((i * 13)::text)),
  sha512(int8send(i)) || sha512(int8send(-i)) || sha512(int8send(i + 1000000000))
      || sha512(int8send(i + 2000000000)) || sha512(int8send(i + 3000000000))
      || sha512(int8send(i + 4000000000)) || sha512(int8send(i + 5000000000))
      || sha512(int8send(i + 6000000000)) || decode(repeat('00ff10', 20), 'hex'),
  timestamptz '2020-01-01 00:00+00' + i * interval '37 seconds'
FROM generate_series({start}, {stop}) AS i"""


def _pg_meta(db: str) -> dict[str, str]:
    if not psql(f"SELECT 1 FROM pg_database WHERE datname = '{db}'"):
        return {}
    try:
        return _meta_of(psql("SELECT key || '=' || value FROM bench_meta", db))
    except RuntimeError:
        return {}


def build_pg(prefix: str, size: str, work: Path) -> Dataset:
    db = f"{prefix}_{size}"
    ds = Dataset("pg", size, db, work / f"project_pg_{size}")

    def fill() -> int:
        accounts, docs = _row_counts(size, PG_ACCOUNT_BYTES, PG_DOC_BYTES)
        scale = -(-accounts // 100_000)
        log(f"building PostgreSQL {db}: {accounts} accounts (scale {scale}), {docs} documents")
        pg_create(db)
        done = subprocess.run(
            ["pgbench", "-i", "-s", str(scale), "-q", db],
            capture_output=True,
            text=True,
            env=pg_env(),
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"pgbench -i failed: {done.stderr.strip()}")
        psql(f"DELETE FROM pgbench_accounts WHERE aid > {accounts}", db)
        psql(PG_DOC_TABLE, db)
        for first, last in _ranges(docs, 200_000):
            psql(PG_DOC_INSERT.format(start=first, stop=last), db)
        psql("VACUUM ANALYZE", db)
        dump_bytes = stream_size(pg_dump_argv(db), pg_env())
        psql("CREATE TABLE bench_meta (key text PRIMARY KEY, value text NOT NULL)", db)
        psql("INSERT INTO bench_meta VALUES " + _meta_values(size, dump_bytes), db)
        return dump_bytes

    _build_or_reuse(ds, _pg_meta(db), fill)
    listing = psql(
        "SELECT c.relname || ' ' || pg_total_relation_size(c.oid) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1",
        db,
    )
    ds.tables = _tables(listing, lambda name: psql(f'SELECT count(*) FROM "{name}"', db))
    write_project(ds, work)
    return ds


def pg_drop(db: str) -> None:
    psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def pg_create(db: str) -> None:
    pg_drop(db)
    psql(f'CREATE DATABASE "{db}"')


# --------------------------------------------------------------------------- MariaDB

MY_TABLES = """
CREATE TABLE bench_accounts (
    aid INT NOT NULL PRIMARY KEY, bid INT NOT NULL, abalance INT NOT NULL, filler CHAR(84)
) ENGINE=InnoDB;
CREATE TABLE app_document (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    title VARCHAR(200) NOT NULL,
    body LONGTEXT NOT NULL,
    data JSON NOT NULL,
    `blob` LONGBLOB,
    created DATETIME(6) NOT NULL
) ENGINE=InnoDB;
"""

# MariaDB strips a CHAR's trailing spaces, so the filler is padded with dots to keep
# the accounts rows about as large in the dump as pgbench's.
MY_ACCOUNTS_INSERT = """
INSERT INTO bench_accounts
SELECT seq, 1 + (seq - 1) DIV 100000, 0, RPAD(CONCAT('acct-', seq, ' '), 84, '.')
FROM seq_{start}_to_{stop}"""

MY_DOC_INSERT = """
INSERT INTO app_document (title, body, data, `blob`, created)
SELECT
  CONCAT('Document ', seq, ': ', ELT(1 + seq % 6, 'quarterly report', 'meeting notes',
      'invoice', 'contract draft', 'release plan', 'incident review')),
  CONCAT(REPEAT(ELT(1 + seq % 4, 'lorem ipsum dolor sit amet ',
      'the quick brown fox jumps over the lazy dog ', 'customer asked about the delivery date ',
      'please review the attached figures '), 2 + seq % 4), MD5(seq), ' ', MD5(seq * 7)),
  JSON_OBJECT('n', seq, 'status', ELT(1 + seq % 4, 'draft', 'review', 'published', 'archived'),
      'score', ROUND(RAND() * 100, 2), 'tags', JSON_ARRAY(CONCAT('t', seq % 17),
      CONCAT('t', seq % 31)), 'ref', MD5(seq * 13)),
  CONCAT(RANDOM_BYTES(256), UNHEX(REPEAT('00ff10', 40))),
  TIMESTAMP '2020-01-01 00:00:00' + INTERVAL (seq * 37) SECOND
FROM seq_{start}_to_{stop}"""


def _my_meta(db: str) -> dict[str, str]:
    if not mysql(f"SELECT 1 FROM information_schema.schemata WHERE schema_name = '{db}'"):
        return {}
    try:
        return _meta_of(mysql("SELECT CONCAT(`key`, '=', value) FROM bench_meta", db))
    except RuntimeError:
        return {}


def build_mysql(prefix: str, size: str, work: Path) -> Dataset:
    db = f"{prefix}_{size}"
    ds = Dataset("mysql", size, db, work / f"project_mysql_{size}")

    def fill() -> int:
        accounts, docs = _row_counts(size, MY_ACCOUNT_BYTES, MY_DOC_BYTES)
        log(f"building MariaDB {db}: {accounts} accounts, {docs} documents")
        mysql_create(db)
        mysql(MY_TABLES, db)
        for first, last in _ranges(accounts, 1_000_000):
            mysql(MY_ACCOUNTS_INSERT.format(start=first, stop=last), db)
        for first, last in _ranges(docs, 200_000):
            mysql(MY_DOC_INSERT.format(start=first, stop=last), db)
        dump_bytes = stream_size(my_dump_argv(db))
        mysql(
            "CREATE TABLE bench_meta (`key` VARCHAR(50) PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO bench_meta VALUES " + _meta_values(size, dump_bytes),
            db,
        )
        return dump_bytes

    _build_or_reuse(ds, _my_meta(db), fill)
    mysql("ANALYZE TABLE bench_accounts, app_document, bench_meta", db)
    listing = mysql(
        "SELECT table_name, data_length + index_length FROM information_schema.tables "
        f"WHERE table_schema = '{db}' ORDER BY 1"
    )
    ds.tables = _tables(listing, lambda name: mysql(f"SELECT COUNT(*) FROM `{name}`", db))
    write_project(ds, work)
    return ds


def mysql_drop(db: str) -> None:
    mysql(f"DROP DATABASE IF EXISTS `{db}`")


def mysql_create(db: str) -> None:
    mysql_drop(db)
    mysql(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4")


# --------------------------------------------------------------------------- SQLite

SQLITE_TABLES = """
CREATE TABLE pgbench_accounts (
    aid INTEGER PRIMARY KEY, bid INTEGER NOT NULL, abalance INTEGER NOT NULL, filler CHAR(84)
);
CREATE TABLE app_document (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title VARCHAR(200) NOT NULL,
    body TEXT NOT NULL,
    data TEXT NOT NULL CHECK (json_valid(data)),
    blob BLOB,
    created DATETIME NOT NULL
);
"""

SQLITE_ACCOUNTS_INSERT = """
WITH RECURSIVE s(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM s WHERE i < ?)
INSERT INTO pgbench_accounts SELECT i, 1 + (i - 1) / 100000, 0, printf('%-84s', '') FROM s"""

SQLITE_DOC_INSERT = """
WITH RECURSIVE s(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM s WHERE i < ?)
INSERT INTO app_document (title, body, data, blob, created)
SELECT
  'Document ' || i || ': ' || (CASE i % 6 WHEN 0 THEN 'quarterly report'
      WHEN 1 THEN 'meeting notes' WHEN 2 THEN 'invoice' WHEN 3 THEN 'contract draft'
      WHEN 4 THEN 'release plan' ELSE 'incident review' END),
  replace(hex(zeroblob(2 + i % 4)), '00', CASE i % 4
      WHEN 0 THEN 'lorem ipsum dolor sit amet ' WHEN 1 THEN 'the quick brown fox jumps over '
      WHEN 2 THEN 'customer asked about the delivery date '
      ELSE 'please review the attached figures ' END)
      || lower(hex(randomblob(16))) || ' ' || lower(hex(randomblob(16))),
  json_object('n', i, 'status', CASE i % 4 WHEN 0 THEN 'draft' WHEN 1 THEN 'review'
      WHEN 2 THEN 'published' ELSE 'archived' END, 'score', round(abs(random() % 10000) / 100.0, 2),
      'tags', json_array('t' || (i % 17), 't' || (i % 31)), 'ref', lower(hex(randomblob(16)))),
  randomblob(256) || zeroblob(60),
  datetime('2020-01-01 00:00:00', '+' || (i * 37) || ' seconds')
FROM s"""


def _sqlite_meta(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            return dict(conn.execute("SELECT key, value FROM bench_meta").fetchall())
    except sqlite3.Error:
        return {}


def build_sqlite(prefix: str, size: str, work: Path) -> Dataset:
    del prefix  # a file in the work dir is unique already
    path = work / f"sqlite_{size}" / "db.sqlite3"
    ds = Dataset("sqlite", size, str(path), work / f"project_sqlite_{size}")
    meta = _sqlite_meta(path)
    start = time.monotonic()
    if _meta_matches(meta, size):
        ds.reused = True
    else:
        accounts, docs = _row_counts(size, SQLITE_ACCOUNT_BYTES, SQLITE_DOC_BYTES)
        log(f"building SQLite {path}: {accounts} accounts, {docs} documents")
        path.parent.mkdir(parents=True, exist_ok=True)
        for leftover in path.parent.glob("db.sqlite3*"):
            leftover.unlink()
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.executescript(SQLITE_TABLES)
            for insert, total in ((SQLITE_ACCOUNTS_INSERT, accounts), (SQLITE_DOC_INSERT, docs)):
                for first_last in _ranges(total, 500_000):
                    conn.execute(insert, first_last)
                    conn.commit()
            conn.execute("CREATE TABLE bench_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.executemany("INSERT INTO bench_meta VALUES (?, ?)", _meta_rows(size, "file"))
            conn.commit()
    ds.build_seconds = time.monotonic() - start
    ds.dump_bytes = path.stat().st_size
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY 1"
            )
        ]
        for name in names:
            count = conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
            try:
                nbytes = conn.execute(
                    "SELECT sum(pgsize) FROM dbstat WHERE name = ?", (name,)
                ).fetchone()[0]
            except sqlite3.Error:
                nbytes = 0
            ds.tables[name] = {"rows": int(count), "bytes": int(nbytes or 0)}
    write_project(ds, work)
    return ds


# --------------------------------------------------------------------------- projects

MANAGE_PY = """\
#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench_settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""


def database_setting(ds: Dataset) -> dict[str, Any]:
    if ds.engine == "pg":
        engine = "django.db.backends.postgresql"
        return {"ENGINE": engine, "NAME": ds.name, "USER": PG["user"], "PASSWORD": ""}
    if ds.engine == "mysql":
        return {
            "ENGINE": "django.db.backends.mysql",
            "NAME": ds.name,
            "USER": MY["user"],
            "PASSWORD": "",
            "HOST": MY["host"],
            "PORT": MY["port"],
            "OPTIONS": {"charset": "utf8mb4"},
        }
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": ds.name}


def backup_dir(ds: Dataset, mode: str) -> Path:
    """opskit's backup folder for one compression mode (each keeps its own archives)."""
    return ds.project_dir / "db_backups" / mode


def dbbackup_dir(ds: Dataset) -> Path:
    return ds.project_dir / "dbbackup"


def write_project(ds: Dataset, work: Path) -> None:
    """A minimal Django project for opskit, plus a settings module for django-dbbackup."""
    del work
    folder = ds.project_dir
    folder.mkdir(parents=True, exist_ok=True)
    db = database_setting(ds)
    if ds.engine == "pg":
        db.update({"HOST": PG["host"], "PORT": PG["port"]})
    driver = ""
    if ds.engine == "mysql":
        driver = (
            "try:\n    import pymysql\n\n    pymysql.install_as_MySQLdb()\n"
            "except ImportError:  # opskit itself needs no driver\n    pass\n\n"
        )
    (folder / "manage.py").write_text(MANAGE_PY)
    (folder / "bench_settings.py").write_text(
        f'"""Benchmark project for {ds.engine} {ds.size} (written by bench/datasets.py)."""\n\n'
        + driver
        + 'SECRET_KEY = "bench-only"\n'
        "USE_TZ = True\n"
        'TIME_ZONE = "UTC"\n'
        'INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.sessions"]\n'
        f"DATABASES = {{'default': {db!r}}}\n"
        f"OPSKIT = {{'BACKUP_DIR': {str(backup_dir(ds, 'zstd'))!r},"
        f" 'LOG_DIR': {str(folder / 'logs')!r}}}\n"
    )
    storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    (folder / "bench_dbbackup_settings.py").write_text(
        '"""django-dbbackup settings for the benchmark (its own venv, its defaults)."""\n\n'
        "import os\n\n"
        "from bench_settings import *  # noqa: F403\n"
        "from bench_settings import DATABASES\n\n"
        'INSTALLED_APPS = ["dbbackup"]\n'
        "STORAGES = {\n"
        f"    'default': {storage!r},\n"
        "    'staticfiles': {'BACKEND':"
        " 'django.contrib.staticfiles.storage.StaticFilesStorage'},\n"
        f"    'dbbackup': {{**{storage!r}, 'OPTIONS': "
        f"{{'location': {str(dbbackup_dir(ds))!r}}}}},\n"
        "}\n"
        f"DBBACKUP_TMP_DIR = {str(folder / 'tmp')!r}\n"
        "# A restore goes into BENCH_DB_NAME (a scratch database), never the dataset.\n"
        "DATABASES['default']['NAME'] = os.environ.get("
        "'BENCH_DB_NAME', DATABASES['default']['NAME'])\n"
    )
    for sub in ("logs", "tmp"):
        (folder / sub).mkdir(exist_ok=True)
    dbbackup_dir(ds).mkdir(exist_ok=True)
    for mode in ("zstd", "gzip", "none", "directory"):
        backup_dir(ds, mode).mkdir(parents=True, exist_ok=True)


BUILDERS = {"pg": build_pg, "mysql": build_mysql, "sqlite": build_sqlite}


def build(engine: str, prefix: str, size: str, work: Path) -> Dataset:
    return BUILDERS[engine](prefix, size, work)
