"""PostgreSQL: pg_dump plain SQL; restore into a scratch database, then swap by rename."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import shlex
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from opskit import logs, pipes, proc
from opskit.engines import tooling
from opskit.engines.base import (
    ArchiveDir,
    ContentObserver,
    DbParams,
    Leftover,
    OpenArchive,
    RestoreContext,
)
from opskit.engines.diagnose import connecting
from opskit.errors import CommandFailed, OpsError
from opskit.journal import Journal, JournalError

log = logs.get("engines")

_MAX_IDENT = 63  # PostgreSQL truncates longer identifiers silently; never let it.
# The databases restore and verify derive from a database's name (see derived_name).
_DERIVED = re.compile(
    r"^(?P<base>.*)(?P<tag>__pre_restore_|__opskit_restore_|__opskit_verify_)\d{14}$"
)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _passfile_line(password: str) -> str:
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:*:{escaped}\n"


def _conninfo_dbname(name: str) -> str:
    """Return a conninfo string naming ``name``, so that no database name reads as options."""
    return "dbname='" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def derived_name(name: str, tag: str) -> str:
    """Return ``<name><tag>``, shortening ``name`` so the result fits in 63 bytes."""
    room = _MAX_IDENT - len(tag.encode())
    short = name.encode()[:room].decode("utf-8", "ignore")
    return short + tag


class PostgreSQL:
    """PostgreSQL and PostGIS through pg_dump and psql."""

    vendor = "postgresql"
    suffix = "sql"

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir

    def _tool(self, name: str) -> Path:
        return tooling.find_tool([name], self.bin_dir, "PG_BIN_DIR")

    @contextlib.contextmanager
    def _env(self, db: DbParams, dbname: str | None = None) -> Iterator[dict[str, str]]:
        """Yield the environment that connects to ``db``; the password sits in a 0600 passfile."""
        extra = {"PGDATABASE": dbname or db.name, "PGAPPNAME": "opskit"}
        for key, value in (("PGHOST", db.host), ("PGPORT", db.port), ("PGUSER", db.user)):
            if value:
                extra[key] = value
        for option, var in (("sslmode", "PGSSLMODE"), ("service", "PGSERVICE")):
            if db.options.get(option):
                extra[var] = str(db.options[option])
        drop = ("PGPASSWORD", "PGPASSFILE")
        if not db.password:
            yield proc.child_env(extra, drop=drop)
            return
        with proc.secret_file(_passfile_line(db.password), prefix="opskit-pg-") as passfile:
            extra["PGPASSFILE"] = str(passfile)
            yield proc.child_env(extra, drop=drop)

    def _sql(
        self, db: DbParams, sql: str, dbname: str | None = None, timeout: float | None = 120
    ) -> str:
        """Run SQL with psql and return its unaligned output."""
        psql = self._tool("psql")
        with self._env(db, dbname) as env, connecting(self.vendor, db, dbname):
            return proc.run(
                [psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                env,
                what=f"psql on {db.describe(dbname)}",
                secrets=[db.password],
                timeout=timeout,
            ).strip()

    def versions(self, db: DbParams) -> dict[str, str]:
        """Return pg_dump's and the server's versions; refuse a pg_dump older than the server."""
        pg_dump = self._tool("pg_dump")
        with self._env(db) as env:
            tool = proc.run([pg_dump, "--version"], env, what="pg_dump --version")
        sql = "SELECT current_setting('server_version'), current_setting('server_version_num')"
        server, _, num = self._sql(db, sql).partition("|")
        where = f"{db.host or 'localhost'}:{db.port or '5432'}"
        problem = tooling.pg_dump_problem(tool, num, where, str(pg_dump))
        if problem is not None:
            raise problem
        return {"pg_dump": tool.strip(), "server": server}

    def size(self, db: DbParams) -> int:
        # The user tables only: an empty database's catalog is megabytes that dump to nothing.
        total = self._sql(
            db,
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm')"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg_toast%'",
        )
        return int(total or 0)

    def table_counts(self, db: DbParams) -> dict[str, int]:
        """Return the exact row count of every table (``schema.table`` outside ``public``)."""
        # One psql call, query_to_xml counting each table; one snapshot for all the counts.
        sql = (
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;"
            " SELECT json_object_agg(CASE WHEN n.nspname = 'public' THEN c.relname"
            " ELSE n.nspname || '.' || c.relname END, (xpath('/row/n/text()', query_to_xml("
            "format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname), false, true, '')"
            "))[1]::text::bigint) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema'"
            " AND n.nspname NOT LIKE 'pg\\_%'; COMMIT"
        )
        out = self._sql(db, sql, timeout=None)
        return {str(k): int(v) for k, v in sorted(json.loads(out).items())} if out else {}

    def dump(
        self, db: DbParams, exclude_data: tuple[str, ...]
    ) -> AbstractContextManager[IO[bytes]]:
        argv: list[str | Path] = [
            self._tool("pg_dump"),
            "--format=plain",
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--encoding=UTF8",
        ]
        argv += [f"--exclude-table-data={table}" for table in exclude_data]
        return self._dump(db, argv)

    @contextlib.contextmanager
    def _dump(self, db: DbParams, argv: list[str | Path]) -> Iterator[IO[bytes]]:
        with (
            self._env(db) as env,
            connecting(self.vendor, db),
            proc.reading(
                argv, env, what=f"pg_dump of {db.describe()}", secrets=[db.password]
            ) as out,
        ):
            yield out

    def dump_directory(
        self, db: DbParams, exclude_data: tuple[str, ...], target: Path, level: int, jobs: int
    ) -> None:
        """Dump into a new folder with pg_dump's directory format, ``jobs`` tables at a time."""
        argv: list[str | Path] = [
            self._tool("pg_dump"),
            "--format=directory",
            f"--jobs={jobs}",
            f"--compress={level}",
            "--encoding=UTF8",
            f"--file={target}",
        ]
        argv += [f"--exclude-table-data={table}" for table in exclude_data]
        with self._env(db) as env, connecting(self.vendor, db):
            proc.run(
                argv, env, what=f"pg_dump of {db.describe()}", secrets=[db.password], timeout=None
            )

    def _load_directory(
        self, db: DbParams, dbname: str, folder: ArchiveDir, in_place: bool
    ) -> None:
        """pg_restore a folder: in parallel into a new database, else in one transaction."""
        argv: list[str | Path] = [
            self._tool("pg_restore"),
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--dbname=" + _conninfo_dbname(dbname),
        ]
        if in_place:
            argv += ["--clean", "--if-exists", "--single-transaction"]
        else:
            argv.append(f"--jobs={folder.jobs}")
        with self._env(db, dbname) as env, connecting(self.vendor, db, dbname):
            proc.run(
                [*argv, folder.path],
                env,
                what=f"pg_restore into {db.describe(dbname)}",
                secrets=[db.password],
                timeout=None,
            )

    def _load(
        self, db: DbParams, dbname: str, open_archive: OpenArchive, in_place: bool = False
    ) -> None:
        if isinstance(open_archive, ArchiveDir):
            self._load_directory(db, dbname, open_archive, in_place)
            return
        argv: list[str | Path] = [
            self._tool("psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
        ]
        with (
            self._env(db, dbname) as env,
            connecting(self.vendor, db, dbname),
            open_archive() as content,
        ):
            pipes.load(
                [*argv, "-o", "/dev/null"],
                env,
                content,
                what=f"psql into {db.describe(dbname)}",
                secrets=[db.password],
            )

    def restore(self, db: DbParams, open_archive: OpenArchive, ctx: RestoreContext) -> None:
        stamp = ctx.now.strftime("%Y%m%d%H%M%S")
        scratch = derived_name(db.name, f"__opskit_restore_{stamp}")
        old = derived_name(db.name, f"__pre_restore_{stamp}")
        admin = str(db.options.get("maintenance_db", "postgres"))
        try:
            self._create_like(db, scratch, admin)
        except CommandFailed as exc:
            if "permission denied" not in str(exc):
                raise
            # No CREATEDB: the dump's DROP/CREATE run in one transaction in place instead.
            self._load(db, db.name, open_archive, in_place=True)
            ctx.notes.append(f"restored {db.name} in place in one transaction (no CREATEDB)")
            return
        try:
            self._load(db, scratch, open_archive)
        except BaseException:
            self._drop(db, scratch, admin)
            raise
        self._swap(db, scratch, old, admin)
        if ctx.drop_old:
            try:
                self._drop_database(db, old, admin)
                ctx.notes.append(f"dropped the previous database {old}")
            except OpsError as exc:
                # The restore itself succeeded; say so, and what is left to do by hand.
                ctx.notes.append(f"restored, but {exc.line()}")
        else:
            ctx.notes.append(
                f"the previous database is kept as {old}; drop it when satisfied with: "
                f"psql -c 'DROP DATABASE \"{old}\"' (or restore with --drop-old)"
            )

    def scratch_copy(
        self, db: DbParams, open_archive: OpenArchive, now: datetime, work_dir: Path
    ) -> AbstractContextManager[DbParams]:
        """Load the archive into a new scratch database beside ``db``; drop it on leaving."""
        return self._scratch_copy(db, open_archive, now)

    @contextlib.contextmanager
    def _scratch_copy(
        self, db: DbParams, open_archive: OpenArchive, now: datetime
    ) -> Iterator[DbParams]:
        scratch = derived_name(db.name, f"__opskit_verify_{now:%Y%m%d%H%M%S}")
        admin = str(db.options.get("maintenance_db", "postgres"))
        try:
            self._create_like(db, scratch, admin)
        except CommandFailed as exc:
            if "permission denied" not in str(exc):
                raise
            raise CommandFailed(
                f"{db.user or 'this role'} may not create databases on"
                f" {db.host or 'localhost'}:{db.port or '5432'}, so the restore test cannot run",
                f"ALTER ROLE {_quote_ident(db.user or 'role')} CREATEDB, or verify without"
                " --restore-test",
            ) from None
        try:
            self._load(db, scratch, open_archive)
            yield dataclasses.replace(db, name=scratch)
        except BaseException:
            self._drop(db, scratch, admin)
            raise
        self._drop_database(db, scratch, admin)

    def properties(self, db: DbParams) -> dict[str, Any]:
        return {}

    def observer(self) -> ContentObserver | None:
        return None

    def recover(self, db: DbParams, journal: Journal) -> str:
        raise JournalError(
            f"cannot finish or undo {journal.describe()}", "inspect the database by hand"
        )

    def leftovers(self, db: DbParams) -> list[Leftover]:
        """Previous databases restores kept (``__pre_restore_``) and killed runs' scratch ones."""
        admin = str(db.options.get("maintenance_db", "postgres"))
        rows = self._sql(
            db,
            "SELECT datname, CASE WHEN has_database_privilege(datname, 'CONNECT')"
            " THEN pg_database_size(datname) END FROM pg_database"
            " WHERE datname ~ '(__pre_restore_|__opskit_restore_|__opskit_verify_)[0-9]{14}$'"
            " ORDER BY datname",
            admin,
        )
        found = []
        for row in rows.splitlines():
            name, _, size = row.rpartition("|")
            match = _DERIVED.match(name)
            if not match:
                continue
            # The name's start is the database's name, shortened to fit (derived_name).
            if (
                match["base"]
                != derived_name(db.name, match["tag"] + "0" * 14)[: -len(match["tag"]) - 14]
            ):
                continue
            kind = "previous" if match["tag"] == "__pre_restore_" else "scratch"
            drop = "psql -c " + shlex.quote(f"DROP DATABASE {_quote_ident(name)}")
            found.append(Leftover(kind, name, drop, int(size) if size.isdigit() else None))
        return found

    def _drop_database(self, db: DbParams, name: str, admin: str) -> None:
        """Drop a database even if a killed client's session still lingers on it."""
        quoted = _quote_ident(name)
        try:
            self._sql(db, f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)", admin)
        except CommandFailed as exc:
            if "syntax error" not in str(exc):  # WITH (FORCE) needs PostgreSQL 13
                log.error("database_not_dropped", database=name, reason=exc.line())
                raise CommandFailed(
                    f"could not drop the database {name}: {exc.message}",
                    f"drop it by hand: psql -c 'DROP DATABASE {quoted}'",
                ) from None
            self._sql(db, f"DROP DATABASE IF EXISTS {quoted}", admin)

    def _create_like(self, db: DbParams, scratch: str, admin: str) -> None:
        row = self._sql(
            db,
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database"
            f" WHERE datname = {_quote_literal(db.name)}",
            admin,
        )
        sql = f"CREATE DATABASE {_quote_ident(scratch)} TEMPLATE template0"
        if row.count("|") == 2:
            # Same encoding and collation as the live database, so text sorts the same.
            encoding, collate, ctype = (_quote_literal(v) for v in row.split("|"))
            sql += f" ENCODING {encoding} LC_COLLATE {collate} LC_CTYPE {ctype}"
        self._sql(db, sql, admin)

    def _drop(self, db: DbParams, name: str, admin: str) -> None:
        """Drop a database while already failing (or on Ctrl-C): the first error is the one."""
        with contextlib.suppress(OpsError):
            self._drop_database(db, name, admin)

    def _swap(self, db: DbParams, scratch: str, old: str, admin: str) -> None:
        """Rename live → old and scratch → live in one transaction, after closing sessions."""
        live_q, old_q, scratch_q = _quote_ident(db.name), _quote_ident(old), _quote_ident(scratch)
        self._sql(db, f"ALTER DATABASE {live_q} WITH ALLOW_CONNECTIONS false", admin)
        try:
            self._sql(
                db,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                f" WHERE datname = {_quote_literal(db.name)} AND pid <> pg_backend_pid()",
                admin,
            )
            self._sql(
                db,
                f"BEGIN; ALTER DATABASE {live_q} RENAME TO {old_q};"
                f" ALTER DATABASE {scratch_q} RENAME TO {live_q}; COMMIT;",
                admin,
            )
        except BaseException:
            with contextlib.suppress(CommandFailed):
                self._sql(db, f"ALTER DATABASE {live_q} WITH ALLOW_CONNECTIONS true", admin)
            self._drop(db, scratch, admin)
            raise
        self._sql(db, f"ALTER DATABASE {old_q} WITH ALLOW_CONNECTIONS true", admin)
