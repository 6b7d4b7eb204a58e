"""PostgreSQL: pg_dump (plain SQL or directory format) keeping owners and privileges, in
the database's own encoding, with the database's properties in the manifest; loads that
opskit commits itself once the archive proved whole. How a restore runs (a scratch
database and a swap, or one transaction in place) is ``postgresql_restore``."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from opskit import logs, proc
from opskit.archive import pipes
from opskit.engines import tooling
from opskit.engines.base import (
    ArchiveDir,
    DbParams,
    Leftover,
    OpenArchive,
    RestoreContext,
)
from opskit.engines.diagnose import connecting
from opskit.engines.journal import Journal
from opskit.engines.postgresql import catalog
from opskit.engines.postgresql.dump import CompleteContent, DumpObserver, DumpScanner, ToolContent
from opskit.engines.postgresql.restore import Restorer
from opskit.errors import CommandFailed, OpsError

log = logs.get("engines")

VERIFY_TAG = "__opskit_verify_"
derived_name = catalog.derived_name  # the name other modules know it by


def _passfile_line(password: str) -> str:
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:*:{escaped}\n"


class PostgreSQL:
    """PostgreSQL and PostGIS through pg_dump and psql."""

    vendor = "postgresql"
    suffix = "sql"

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir
        self._watcher: DumpScanner | None = None

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

    def sql(
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
        server, _, num = self.sql(db, sql).partition("|")
        where = f"{db.host or 'localhost'}:{db.port or '5432'}"
        problem = tooling.pg_dump_problem(tool, num, where, str(pg_dump))
        if problem is not None:
            raise problem
        return {"pg_dump": tool.strip(), "server": server}

    def size(self, db: DbParams) -> int:
        # The user tables only: an empty database's catalog is megabytes that dump to nothing.
        total = self.sql(
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
        out = self.sql(db, sql, timeout=None)
        return {str(k): int(v) for k, v in sorted(json.loads(out).items())} if out else {}

    def exclusions(self, db: DbParams, names: tuple[str, ...]) -> tuple[list[str], list[str]]:
        """The exact tables (``schema.table``) that EXCLUDE_TABLE_DATA names, and the names
        that match none. Names are names, not pg_dump patterns: ``*`` is a table called ``*``."""
        if not names:
            return [], []
        found = json.loads(self.sql(db, catalog.exclusion_sql(names)) or "[]")
        tables = sorted({f"{schema}.{table}" for _, schema, table in found})
        matched = {name for name, _, _ in found}
        missing = [n for n in names if n not in matched]
        for name in missing:
            log.warning(
                "excluded_table_not_found",
                database=db.alias,
                table=name,
                fix="fix OPSKIT['EXCLUDE_TABLE_DATA'] (exact table names, or schema.table)",
            )
        return tables, missing

    def _exclude_args(self, db: DbParams, names: tuple[str, ...]) -> list[str]:
        tables, missing = self.exclusions(db, names)
        if self._watcher is not None:
            self._watcher.excluded, self._watcher.not_found = tables, missing
        args = []
        for qualified in tables:
            schema, _, table = qualified.partition(".")
            args.append("--exclude-table-data=" + catalog.table_pattern(schema, table))
        return args

    def dump(
        self, db: DbParams, exclude_data: tuple[str, ...]
    ) -> AbstractContextManager[IO[bytes]]:
        # Owners and privileges stay in; in the database's own encoding (a SQL_ASCII
        # database's bytes as they are); the database is named by PGDATABASE, never argv.
        argv: list[str | Path] = [self._tool("pg_dump"), "--format=plain", "--clean", "--if-exists"]
        argv += self._exclude_args(db, exclude_data)
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
            f"--file={target}",
        ]
        argv += self._exclude_args(db, exclude_data)
        with self._env(db) as env, connecting(self.vendor, db):
            proc.run(
                argv, env, what=f"pg_dump of {db.describe()}", secrets=[db.password], timeout=None
            )

    def restore_argv(
        self, folder: ArchiveDir, dbname: str, no_owner: bool, no_privileges: bool
    ) -> list[str | Path]:
        """pg_restore of a folder: into a new database in parallel, or as SQL on stdout."""
        argv: list[str | Path] = [self._tool("pg_restore"), "--exit-on-error"]
        argv += ["--no-owner"] if no_owner else []
        argv += ["--no-privileges"] if no_privileges else []
        if dbname:
            argv += ["--dbname=" + catalog.conninfo_dbname(dbname), f"--jobs={folder.jobs}"]
        else:
            argv += ["--clean", "--if-exists", "--file=-"]
        return [*argv, folder.path]

    def load(
        self,
        db: DbParams,
        dbname: str,
        open_archive: OpenArchive,
        *,
        no_owner: bool = False,
        no_privileges: bool = False,
        prologue: bytes = b"",
        epilogue: bytes = b"",
        keep_extensions: frozenset[str] = frozenset(),
    ) -> DumpScanner:
        """Load an archive into ``dbname`` in one transaction that opskit opens and commits:
        COMMIT is sent only once the whole archive was read and matched its manifest."""
        scanner = DumpScanner(
            no_owner=no_owner,
            no_privileges=no_privileges,
            single_transaction=True,
            keep_extensions=keep_extensions,
        )
        if isinstance(open_archive, ArchiveDir) and not prologue and not epilogue:
            self._sql_run(
                db,
                self.restore_argv(open_archive, dbname, no_owner, no_privileges),
                dbname,
                f"pg_restore into {db.describe(dbname)}",
            )
            return scanner
        source: OpenArchive = open_archive
        if isinstance(open_archive, ArchiveDir):
            folder = open_archive
            source = lambda: self.restore_script(folder, no_owner, no_privileges)  # noqa: E731
        self._psql_load(db, dbname, source, scanner, prologue, epilogue)
        return scanner

    def _psql_load(
        self,
        db: DbParams,
        dbname: str,
        source: OpenArchive,
        scanner: DumpScanner,
        prologue: bytes,
        epilogue: bytes,
    ) -> None:
        """psql reads the archive inside opskit's BEGIN ... COMMIT, under a restricted-mode key."""
        argv: list[str | Path] = [self._tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
        with (
            self._env(db, dbname) as env,
            connecting(self.vendor, db, dbname),
            source() as content,
        ):
            pipes.load(
                [*argv, "-o", "/dev/null"],
                env,
                CompleteContent(content, scanner),
                what=f"psql into {db.describe(dbname)}",
                secrets=[db.password],
                # psql's restricted mode under a key of this load: no backslash command
                # of the archive (\\!, \\o, \\copy...) ever runs.
                prologue=f"\\restrict {secrets.token_hex(32)}\n".encode() + b"BEGIN;\n" + prologue,
                epilogue=b"SET client_encoding = 'UTF8';\n" + epilogue + b"COMMIT;\n",
                transform=scanner,
            )

    @contextlib.contextmanager
    def restore_script(
        self, folder: ArchiveDir, no_owner: bool = False, no_privileges: bool = False
    ) -> Iterator[ToolContent]:
        """A directory archive as one SQL script (pg_restore --file=-), read as content."""
        argv = self.restore_argv(folder, "", no_owner, no_privileges)
        with contextlib.nullcontext(proc.child_env({})) as env:
            child = proc.Child(
                argv, env, what=f"pg_restore of {folder.path.name}", stdout=proc.PIPE
            )
            content = ToolContent(child)
            try:
                yield content
            finally:
                content.abandon()

    def _sql_run(self, db: DbParams, argv: list[str | Path], dbname: str, what: str) -> None:
        with self._env(db, dbname) as env, connecting(self.vendor, db, dbname):
            proc.run(argv, env, what=what, secrets=[db.password], timeout=None)

    def script(self, db: DbParams, statements: list[str], dbname: str) -> None:
        """Run statements one after the other (each its own transaction) on ``dbname``."""
        if not statements:
            return
        psql = self._tool("psql")
        sql = "".join(s.rstrip().rstrip(";") + ";\n" for s in statements)
        with self._env(db, dbname) as env, connecting(self.vendor, db, dbname):
            proc.run(
                [psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"],
                env,
                what=f"psql on {db.describe(dbname)}",
                secrets=[db.password],
                stdin=sql.encode(),
                timeout=None,
            )

    def restore(self, db: DbParams, open_archive: OpenArchive, ctx: RestoreContext) -> None:
        Restorer(self).restore(db, open_archive, ctx)

    def recover(self, db: DbParams, journal: Journal) -> str:
        return Restorer(self).recover(db, journal)

    def leftovers(self, db: DbParams) -> list[Leftover]:
        return Restorer(self).leftovers(db)

    def scratch_copy(
        self, db: DbParams, open_archive: OpenArchive, now: datetime, work_dir: Path
    ) -> AbstractContextManager[DbParams]:
        """Load the archive into a new scratch database beside ``db``; drop it on leaving."""
        return self._scratch_copy(db, open_archive, now)

    @contextlib.contextmanager
    def _scratch_copy(
        self, db: DbParams, open_archive: OpenArchive, now: datetime
    ) -> Iterator[DbParams]:
        admin = self.admin_db(db)
        taken = set(self.databases(db))
        scratch = catalog.free_name(taken, db.name, f"{VERIFY_TAG}{now:%Y%m%d%H%M%S}")
        try:
            self.create_database(db, scratch, self.database_properties(db, db.name))
        except CommandFailed as exc:
            if "permission denied" not in str(exc):
                raise
            raise CommandFailed(
                f"{db.user or 'this role'} may not create databases on"
                f" {db.host or 'localhost'}:{db.port or '5432'}, so the restore test cannot run",
                f"ALTER ROLE {catalog.ident(db.user or 'role')} CREATEDB, or verify without"
                " --restore-test",
            ) from None
        try:
            # A restore test checks the data: owners and grants of roles missing here go.
            self.load(db, scratch, open_archive, no_owner=True, no_privileges=True)
            yield dataclasses.replace(db, name=scratch)
        except BaseException:
            self.drop_quietly(db, scratch, admin)
            raise
        self.drop_database(db, scratch, admin)

    def properties(self, db: DbParams) -> dict[str, Any]:
        """The database's own properties (ACL, settings, locale...), which a dump leaves out."""
        return {"database": self.database_properties(db, db.name)}

    def database_properties(self, db: DbParams, name: str) -> dict[str, Any]:
        raw = self.sql(
            db, catalog.PROPERTIES_SQL.format(name=catalog.literal(name)), self.admin_db(db)
        )
        return catalog.database_properties(json.loads(raw)) if raw else {}

    def observer(self) -> DumpObserver:
        watcher = DumpObserver()
        self._watcher = watcher.scanner
        return watcher

    # --- small pieces the restore uses -----------------------------------------------------

    def admin_db(self, db: DbParams) -> str:
        return str(db.options.get("maintenance_db", "postgres"))

    def databases(self, db: DbParams) -> list[str]:
        out = self.sql(db, "SELECT datname FROM pg_database", self.admin_db(db))
        return out.splitlines()

    def query_json(self, db: DbParams, sql: str, dbname: str | None = None) -> Any:
        out = self.sql(db, sql, dbname)
        return json.loads(out) if out else None

    def create_database(self, db: DbParams, name: str, props: dict[str, Any]) -> None:
        """CREATE DATABASE from template0 with the recorded encoding and locale."""
        clause = catalog.create_clause(props)
        sql = f"CREATE DATABASE {catalog.ident(name)} TEMPLATE template0 {clause}".rstrip()
        self.sql(db, sql, self.admin_db(db))

    def drop_database(self, db: DbParams, name: str, admin: str) -> None:
        """Drop a database even if a killed client's session still lingers on it."""
        quoted = catalog.ident(name)
        try:
            self.sql(db, f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)", admin)
        except CommandFailed as exc:
            if "syntax error" not in str(exc):  # WITH (FORCE) needs PostgreSQL 13
                log.error("database_not_dropped", database=name, reason=exc.line())
                raise CommandFailed(
                    f"could not drop the database {name}: {exc.message}",
                    f"drop it by hand: {catalog.drop_command(name)}",
                ) from None
            self.sql(db, f"DROP DATABASE IF EXISTS {quoted}", admin)

    def drop_quietly(self, db: DbParams, name: str, admin: str) -> None:
        """Drop a database while already failing (or on Ctrl-C): the first error is the one."""
        with contextlib.suppress(OpsError):
            self.drop_database(db, name, admin)
