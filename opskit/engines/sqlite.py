"""SQLite: the file under a read lock, or a snapshot by the online backup API; no subprocess."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from opskit.archive import disk_error
from opskit.engines.base import ContentObserver, DbParams, Leftover, OpenArchive, RestoreContext
from opskit.errors import ArchiveError, CommandFailed, ConfigError, OpsError
from opskit.journal import Journal, JournalError


def _path(db: DbParams) -> Path:
    if not db.name or db.name == ":memory:" or db.name.startswith("file:"):
        raise ConfigError(
            f"database {db.alias!r} is not an SQLite file ({db.name or 'no NAME'})",
            "set DATABASES NAME to the database file's path",
        )
    return Path(db.name)


def _quote(name: str) -> str:
    return name.replace('"', '""')


def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    return sqlite3.connect(path, timeout=30)


class SQLite:
    """SQLite files, copied page by page with Python's sqlite3 backup API."""

    vendor = "sqlite"
    suffix = "sqlite3"

    def __init__(self, work_dir: Path | None = None) -> None:
        self.work_dir = work_dir

    def versions(self, db: DbParams) -> dict[str, str]:
        return {"sqlite3": sqlite3.sqlite_version, "server": sqlite3.sqlite_version}

    def dump(
        self, db: DbParams, exclude_data: tuple[str, ...]
    ) -> AbstractContextManager[IO[bytes]]:
        return self._dump(db, exclude_data)

    @contextlib.contextmanager
    def _dump(self, db: DbParams, exclude_data: tuple[str, ...]) -> Iterator[IO[bytes]]:
        source = _path(db)
        if not source.is_file():
            raise CommandFailed(f"SQLite database {source} does not exist", "check DATABASES NAME")
        with self._frozen(source, exclude_data) as live:
            if live is not None:
                yield live
                return
        folder = self.work_dir or source.parent
        snapshot = folder / f".{db.alias}.sqlite3.tmp-{os.getpid()}"
        try:
            fd = os.open(snapshot, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.close(fd)
            try:
                src = _connect(source, readonly=True)
                dst = _connect(snapshot)
                with contextlib.closing(src), contextlib.closing(dst):
                    # A throwaway copy needs no rollback journal beside it.
                    dst.execute("PRAGMA journal_mode=OFF")
                    src.backup(dst)
                    self._drop_data(dst, exclude_data)
            except sqlite3.Error as exc:
                if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                    raise disk_error(OSError(errno.ENOSPC, "full"), folder) from None
                raise CommandFailed(f"SQLite backup of {source} failed: {exc}") from None
            except OSError as exc:
                raise disk_error(exc, folder) from None
            with snapshot.open("rb") as fh:
                yield fh
        finally:
            _remove(snapshot)

    @staticmethod
    @contextlib.contextmanager
    def _frozen(source: Path, exclude_data: tuple[str, ...]) -> Iterator[IO[bytes] | None]:
        """Yield the live file itself while a read transaction keeps writers out, if that is safe.

        In rollback-journal mode the file changes only under an exclusive lock, which our
        shared lock holds off: the file is then a consistent copy, with no snapshot to write
        first. Not in WAL mode (committed pages may live in the -wal file), and not when an
        excluded table holds rows (they must be left out): then None, and a snapshot is made.
        """
        try:
            conn = _connect(source, readonly=True)
        except sqlite3.Error as exc:
            raise CommandFailed(f"SQLite backup of {source} failed: {exc}") from None
        with contextlib.closing(conn):
            try:
                mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
                tables = {
                    r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                }
                busy = any(
                    conn.execute(f'SELECT 1 FROM "{_quote(t)}" LIMIT 1').fetchone()
                    for t in exclude_data
                    if t in tables
                )
                if mode == "wal" or busy:
                    yield None
                    return
                conn.execute("BEGIN")
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the shared lock
            except sqlite3.Error as exc:
                raise CommandFailed(f"SQLite backup of {source} failed: {exc}") from None
            with source.open("rb") as fh:
                yield fh
            conn.rollback()

    @staticmethod
    def _drop_data(conn: sqlite3.Connection, tables: tuple[str, ...]) -> None:
        existing = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        skipped = [t for t in tables if t in existing]
        if not skipped:
            return
        # secure_delete zeroes the freed pages, so excluded data is really gone from the copy.
        conn.execute("PRAGMA secure_delete=ON")
        for table in skipped:
            conn.execute(f'DELETE FROM "{_quote(table)}"')
        conn.commit()

    def size(self, db: DbParams) -> int:
        path = _path(db)
        return path.stat().st_size if path.is_file() else 0

    def table_counts(self, db: DbParams) -> dict[str, int]:
        """Return the exact row count of every table (SQLite's own tables left out)."""
        path = _path(db)
        if not path.is_file():
            raise CommandFailed(f"SQLite database {path} does not exist", "check DATABASES NAME")
        try:
            with contextlib.closing(_connect(path, readonly=True)) as conn:
                names = [
                    r[0]
                    for r in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table'"
                        " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
                    )
                ]
                return {
                    name: conn.execute(f'SELECT count(*) FROM "{_quote(name)}"').fetchone()[0]
                    for name in names
                }
        except sqlite3.Error as exc:
            raise CommandFailed(f"cannot count the rows of {path}: {exc}") from None

    def scratch_copy(
        self, db: DbParams, open_archive: OpenArchive, now: datetime, work_dir: Path
    ) -> AbstractContextManager[DbParams]:
        """Decompress the archive to a checked temp file in ``work_dir``; delete it on leaving."""
        return self._scratch_copy(db, open_archive, work_dir)

    @contextlib.contextmanager
    def _scratch_copy(
        self, db: DbParams, open_archive: OpenArchive, work_dir: Path
    ) -> Iterator[DbParams]:
        # Named like a temp file, so a killed run's leftover is swept by the next backup.
        scratch = work_dir / f".{db.alias}.verify.sqlite3.tmp-{os.getpid()}"
        try:
            _write_scratch(scratch, open_archive)
            self._check(scratch)
            yield dataclasses.replace(db, name=str(scratch))
        finally:
            _remove(scratch)

    def restore(self, db: DbParams, open_archive: OpenArchive, ctx: RestoreContext) -> None:
        target = _path(db)
        scratch = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        try:
            _write_scratch(scratch, open_archive)
            self._check(scratch)
            try:
                src = _connect(scratch, readonly=True)
                dst = _connect(target)
                with contextlib.closing(src), contextlib.closing(dst):
                    # The backup API writes the target in one transaction: all or nothing.
                    src.backup(dst)
            except sqlite3.Error as exc:
                raise _error(exc, f"copying into {target} failed", target.parent) from None
        finally:
            _remove(scratch)

    def properties(self, db: DbParams) -> dict[str, Any]:
        return {}

    def observer(self) -> ContentObserver | None:
        return None

    def recover(self, db: DbParams, journal: Journal) -> str:
        raise JournalError(
            f"cannot finish or undo {journal.describe()}", "inspect the database by hand"
        )

    def leftovers(self, db: DbParams) -> list[Leftover]:
        return []

    @staticmethod
    def _check(path: Path) -> None:
        try:
            with contextlib.closing(_connect(path, readonly=True)) as conn:
                result = conn.execute("PRAGMA integrity_check").fetchone()
        except sqlite3.DatabaseError as exc:
            raise ArchiveError(f"the archive is not a usable SQLite database: {exc}") from None
        if not result or result[0] != "ok":
            raise ArchiveError(f"the archive fails PRAGMA integrity_check: {result}")


def _disk_error(exc: OSError, folder: Path) -> ArchiveError:
    if exc.errno == errno.ENOSPC:
        return ArchiveError(f"no space left on the device of {folder}", "free space there")
    return ArchiveError(f"cannot write in {folder}: {exc.strerror or exc}", "check the folder")


def _error(exc: sqlite3.Error, what: str, folder: Path) -> OpsError:
    """Turn an sqlite3 error into one line; a full disk says which folder is full."""
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return ArchiveError(f"no space left on the device of {folder}", "free space there")
    return CommandFailed(f"{what}: {exc}")


def _write_scratch(path: Path, open_archive: OpenArchive) -> None:
    """Decompress an archive into a 0600 file; a full or read-only folder is one line."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out, open_archive() as content:
            shutil.copyfileobj(content, out, 1 << 20)
            content.check_end()
    except OSError as exc:
        raise _disk_error(exc, path.parent) from None


def _remove(path: Path) -> None:
    """Delete a temporary database and any journal SQLite left beside it."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
