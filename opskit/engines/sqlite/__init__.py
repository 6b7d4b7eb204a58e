"""SQLite: the file under a read lock, or a snapshot by the online backup API; no subprocess.

Every backup is one moment. One read transaction covers the check of the excluded tables
and the copy: in rollback-journal mode the live file itself is compressed while that
transaction's shared lock holds writers off (no descriptor of the file is closed before
the copy is complete: closing any of them would drop the process's POSIX locks); in WAL
mode, or when an excluded table holds rows, the backup API copies the transaction's
snapshot into a file of opskit's, where the excluded rows are deleted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from opskit import files, logs
from opskit.archive.stream import disk_error
from opskit.engines.base import (
    ContentObserver,
    DbParams,
    Leftover,
    OpenArchive,
    RestoreContext,
)
from opskit.engines.journal import Journal, JournalError
from opskit.engines.sqlite import load as sqlite_load
from opskit.engines.sqlite import swap as sqlite_swap
from opskit.engines.sqlite.files import Scratch, connect, open_elsewhere, stale, sweep_stale
from opskit.errors import ArchiveError, CommandFailed, ConfigError, OpsError

log = logs.get("engines")
# Header bytes 24-27 (file change counter) and 92-95 (version-valid-for): any commit moves them.
_COUNTERS = (slice(24, 28), slice(92, 96))


def _path(db: DbParams) -> Path:
    if not db.name or db.name == ":memory:" or db.name.startswith("file:"):
        raise ConfigError(
            f"database {db.alias!r} is not an SQLite file ({db.name or 'no NAME'})",
            "set DATABASES NAME to the database file's path",
        )
    return Path(db.name)


def _existing(db: DbParams) -> Path:
    path = _path(db)
    if not path.is_file():
        raise CommandFailed(f"SQLite database {path} does not exist", "check DATABASES NAME")
    return path


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SQLite:
    """SQLite files, copied under one read transaction, restored by a checked swap."""

    vendor = "sqlite"
    suffix = "sqlite3"

    def __init__(self, work_dir: Path | None = None, swap_wait: float = 2.0) -> None:
        self.work_dir = work_dir
        # How long a restore waits for the site to close the file before copying in place.
        self.swap_wait = swap_wait

    def versions(self, db: DbParams) -> dict[str, str]:
        return {"sqlite3": sqlite3.sqlite_version, "server": sqlite3.sqlite_version}

    @contextlib.contextmanager
    def dump(self, db: DbParams, exclude_data: tuple[str, ...]) -> Iterator[IO[bytes]]:
        source = _existing(db)
        real = Path(os.path.realpath(source))
        _sweep(real, db.alias)
        try:
            conn = connect(source)
        except sqlite3.Error as exc:
            raise CommandFailed(f"SQLite backup of {source} failed: {exc}") from None
        with contextlib.closing(conn):
            try:
                conn.execute("BEGIN")
                # The first read takes the shared lock (WAL: fixes the snapshot) until rollback.
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
                mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
                holding = [
                    t
                    for t in exclude_data
                    if t in tables and conn.execute(f"SELECT 1 FROM {_quote(t)} LIMIT 1").fetchone()
                ]
            except sqlite3.Error as exc:
                raise CommandFailed(f"SQLite backup of {source} failed: {exc}") from None
            if mode == "wal" or holding:
                folder = self.work_dir or real.parent
                final = folder / (f"{db.alias}.sqlite3" if self.work_dir else real.name)
                with self._snapshot(conn, source, final, holding) as snapshot:
                    yield snapshot
            else:
                with _locked_file(source) as live:
                    yield live
            conn.rollback()

    @staticmethod
    @contextlib.contextmanager
    def _snapshot(
        conn: sqlite3.Connection, source: Path, final: Path, holding: list[str]
    ) -> Iterator[IO[bytes]]:
        """Copy the read transaction's moment into a new file and delete the excluded rows."""
        with sqlite_load.scratch(final) as snapshot:
            try:
                dst = snapshot.connect("rw")
                with contextlib.closing(dst):
                    # A throwaway copy needs no rollback journal beside it.
                    dst.execute("PRAGMA journal_mode=OFF")
                    conn.backup(dst)  # in one step, inside conn's transaction
                conn.rollback()  # the moment is copied: writers need not wait any more
                if holding:
                    _drop_rows(snapshot, holding)
                fh = snapshot.reader()
            except sqlite3.Error as exc:
                raise _error(exc, f"SQLite backup of {source} failed", final.parent) from None
            except OSError as exc:
                raise disk_error(exc, final.parent) from None
            with fh:
                yield fh

    def size(self, db: DbParams) -> int:
        path = _path(db)
        return path.stat().st_size if path.is_file() else 0

    def table_counts(self, db: DbParams) -> dict[str, int]:
        """Return the exact row count of every table (SQLite's own tables left out)."""
        path = _existing(db)
        try:
            with contextlib.closing(connect(path)) as conn:
                conn.execute("BEGIN")  # one moment for every table
                names = [
                    r[0]
                    for r in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table'"
                        " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
                    )
                ]
                return {
                    name: conn.execute(f"SELECT count(*) FROM {_quote(name)}").fetchone()[0]
                    for name in names
                }
        except sqlite3.Error as exc:
            raise CommandFailed(f"cannot count the rows of {path}: {exc}") from None

    @contextlib.contextmanager
    def scratch_copy(
        self, db: DbParams, open_archive: OpenArchive, now: datetime, work_dir: Path
    ) -> Iterator[DbParams]:
        """Decompress the archive to a checked temp file in ``work_dir``; delete it on leaving."""
        # Named like a temp file, so a killed run's leftover is swept by the next backup.
        with sqlite_load.scratch(work_dir / f"{db.alias}.verify.sqlite3") as scratch:
            sqlite_load.fill(scratch, open_archive)
            sqlite_load.check(scratch)
            # Read by name as a rollback-journal file: no -wal or -shm beside it.
            with scratch.without_wal():
                yield dataclasses.replace(db, name=str(scratch.path))

    def restore(self, db: DbParams, open_archive: OpenArchive, ctx: RestoreContext) -> None:
        """Decompress into a checked file beside the database, then put it in its place.

        The live file is not touched before the new one is complete, matched the archive's
        manifest, passed ``PRAGMA integrity_check`` and is on disk; any failure before the
        swap leaves it exactly as it was, and the swap itself is atomic (see sqlite_swap).
        """
        # The file SQLite (and Django) opens for this NAME: symlinks resolved.
        target = Path(os.path.realpath(_path(db)))
        if not target.parent.is_dir():
            raise CommandFailed(f"the folder of {target} does not exist", "check DATABASES NAME")
        _sweep(target, db.alias)
        with sqlite_load.scratch(target) as scratch:
            sqlite_load.fill(scratch, open_archive)
            synced = sqlite_load.Sync(scratch.fd)
            sqlite_load.check(scratch)
            synced.wait(target.parent)
            ctx.step("loaded")  # complete, checked, on disk; the live file is untouched
            if ctx.journal is not None:
                ctx.journal.record(phase="swap", file=str(target))
            self._replace(db, scratch, target, ctx)
            if ctx.journal is not None:
                ctx.journal.record(phase="done")
            ctx.step("replaced")

    def _replace(self, db: DbParams, scratch: Scratch, target: Path, ctx: RestoreContext) -> None:
        if not os.path.lexists(target):
            self._create(db, scratch, target)
            return
        if ctx.in_place:
            renamed, why = False, "asked for --in-place"
        else:
            try:
                renamed, why = sqlite_swap.rename_over(scratch, target, self.swap_wait)
            except OSError as exc:
                raise disk_error(exc, target.parent) from None
        if renamed:
            log.info("sqlite_restored", database=db.alias, how="rename", path=str(target))
            if why:
                ctx.notes.append(why)
            return
        log.info("sqlite_copying_in_place", database=db.alias, path=str(target), reason=why)
        try:
            src = scratch.connect("ro", immutable=True)
            dst = connect(target, "rw")
            with contextlib.closing(src), contextlib.closing(dst):
                # The backup API writes the target in one transaction: all or nothing.
                src.backup(dst)
        except sqlite3.Error as exc:
            raise _error(exc, f"copying into {target} failed", target.parent) from None
        log.info("sqlite_restored", database=db.alias, how="in place", path=str(target))

    def properties(self, db: DbParams) -> dict[str, Any]:
        return {}

    def observer(self) -> ContentObserver | None:
        return None

    def recover(self, db: DbParams, journal: Journal) -> str:
        """Nothing is half-done: the swap is one rename, or one SQLite transaction whose hot
        journal SQLite rolls back on the next open (done here); scratch files are removed."""
        target = Path(os.path.realpath(_path(db)))
        if target.is_file():
            try:
                with contextlib.closing(connect(target, "rw")) as conn:
                    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.Error as exc:
                raise JournalError(
                    f"cannot open {target} to finish {journal.describe()}: {exc}",
                    "open it with sqlite3 to see why",
                ) from None
        removed = sweep_stale(target)
        done = f"{target} is whole (an SQLite restore replaces it in one step)"
        return done + (
            f"; removed {len(removed)} scratch file(s) left beside it" if removed else ""
        )

    def leftovers(self, db: DbParams) -> list[Leftover]:
        """Scratch files that killed restores or backups left beside the database."""
        target = Path(os.path.realpath(_path(db)))
        return [
            Leftover("scratch", str(p), f"rm -- {shlex.quote(str(p))}", p.stat().st_size)
            for p in stale(target)
        ]

    @staticmethod
    def _create(db: DbParams, scratch: Scratch, target: Path) -> None:
        """Put the scratch file where no database is yet, as the folder's owner and group."""
        leftover = sqlite_swap.leftovers_beside(target)
        if leftover:
            raise CommandFailed(
                f"{leftover} lies beside {target}, which does not exist: SQLite would apply"
                " it to the restored file",
                f"remove {target.parent / leftover} if it is not needed",
            )
        try:
            folder = target.parent.stat()
            # The site must be able to open it: the folder's owner and group may read and write.
            os.fchmod(scratch.fd, 0o660)
            if (folder.st_uid, folder.st_gid) != (os.geteuid(), os.getegid()):
                with contextlib.suppress(PermissionError):
                    os.fchown(scratch.fd, folder.st_uid, folder.st_gid)
            scratch.check_name()
            os.rename(scratch.path, target)
            scratch.renamed = True
            files.fsync(target.parent)
        except OSError as exc:
            raise disk_error(exc, target.parent) from None
        log.info("sqlite_restored", database=db.alias, how="new file", path=str(target))


def _sweep(db_file: Path, alias: str) -> None:
    for path in sweep_stale(db_file):
        log.info("removed_stale_temp_file", database=alias, path=str(path))


@contextlib.contextmanager
def _locked_file(source: Path) -> Iterator[IO[bytes]]:
    """Yield the live file, which the caller's read transaction keeps still; check it did."""
    fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        # Our descriptor must be on the very file SQLite holds the lock on.
        if open_elsewhere(fd) is False:
            raise CommandFailed(f"{source} was replaced while it was opened", "back it up again")
        before = os.pread(fd, 100, 0)
        yield fh
        if fh.closed:
            raise CommandFailed(
                f"the copy of {source} closed its descriptor early, so its read lock was lost",
                "report this as a bug in opskit",
            )
        after = os.pread(fd, 100, 0)
    if any(before[part] != after[part] for part in _COUNTERS):
        raise CommandFailed(f"{source} changed while it was copied", "back it up again")


def _drop_rows(snapshot: Scratch, tables: list[str]) -> None:
    """Delete the excluded tables' rows from a copy; the freed pages are zeroed."""
    with snapshot.without_wal(), contextlib.closing(snapshot.connect("rw")) as conn:
        conn.execute("PRAGMA journal_mode=OFF")
        # secure_delete zeroes the freed pages, so excluded data is really gone from the copy.
        conn.execute("PRAGMA secure_delete=ON")
        for table in tables:
            conn.execute(f"DELETE FROM {_quote(table)}")


def _error(exc: sqlite3.Error, what: str, folder: Path) -> OpsError:
    """Turn an sqlite3 error into one line; a full disk says which folder is full."""
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return ArchiveError(f"no space left on the device of {folder}", "free space there")
    return CommandFailed(f"{what}: {exc}")
