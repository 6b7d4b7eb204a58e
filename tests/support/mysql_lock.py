"""A table the test holds locked, so that a MariaDB dump streams the other tables, then waits."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pymysql
from pymysql.cursors import Cursor
from support.services import mysql

from opskit.engines import DbParams

TABLE = "zz_locked"


@contextlib.contextmanager
def table_locked(db: DbParams) -> Iterator[pymysql.Connection[Cursor]]:
    """Hold a write lock on zz_locked (which the test created) for the block."""
    conn = pymysql.connect(host=db.host, port=int(db.port), user=db.user, database=db.name)
    try:
        conn.cursor().execute(f"LOCK TABLES {TABLE} WRITE")
        yield conn
    finally:
        conn.close()


def waiting_on_the_lock(db: DbParams) -> bool:
    """True once a session on ``db`` waits for the lock ``table_locked`` holds."""
    waiting = mysql(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
        f" WHERE DB = '{db.name}' AND STATE LIKE 'Waiting for table%'"
    )
    return waiting != "0"
