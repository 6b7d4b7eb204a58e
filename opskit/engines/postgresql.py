"""PostgreSQL: pg_dump plain SQL; restore into a scratch database, then swap by rename."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO

from opskit import proc
from opskit.engines.base import DbParams, OpenArchive, RestoreContext
from opskit.errors import CommandFailed

_MAX_IDENT = 63  # PostgreSQL truncates longer identifiers silently; never let it.


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _passfile_line(password: str) -> str:
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:*:{escaped}\n"


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
        return proc.find_tool([name], self.bin_dir, "PG_BIN_DIR")

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

    def _sql(self, db: DbParams, sql: str, dbname: str | None = None) -> str:
        """Run SQL with psql and return its unaligned output."""
        with self._env(db, dbname) as env:
            return proc.run(
                [self._tool("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                env,
                what=f"psql on {db.describe(dbname)}",
                secrets=[db.password],
                timeout=120,
            ).strip()

    def versions(self, db: DbParams) -> dict[str, str]:
        with self._env(db) as env:
            tool = proc.run([self._tool("pg_dump"), "--version"], env, what="pg_dump --version")
        return {"pg_dump": tool.strip(), "server": self._sql(db, "SHOW server_version")}

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
            proc.reading(
                argv, env, what=f"pg_dump of {db.describe()}", secrets=[db.password]
            ) as out,
        ):
            yield out

    def _load(self, db: DbParams, dbname: str, open_archive: OpenArchive) -> None:
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
            open_archive() as content,
            proc.writing(
                [*argv, "-o", "/dev/null"],
                env,
                what=f"psql into {db.describe(dbname)}",
                secrets=[db.password],
            ) as stdin,
        ):
            shutil.copyfileobj(content, stdin, 1 << 20)

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
            self._load(db, db.name, open_archive)
            ctx.notes.append(f"restored {db.name} in place in one transaction (no CREATEDB)")
            return
        try:
            self._load(db, scratch, open_archive)
        except BaseException:
            self._drop(db, scratch, admin)
            raise
        self._swap(db, scratch, old, admin)
        if ctx.drop_old:
            self._drop(db, old, admin)
            ctx.notes.append(f"dropped the previous database {old}")
        else:
            ctx.notes.append(
                f"the previous database is kept as {old}; drop it when satisfied with: "
                f"psql -c 'DROP DATABASE \"{old}\"' (or restore with --drop-old)"
            )

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
        with contextlib.suppress(CommandFailed):
            self._sql(db, f"DROP DATABASE IF EXISTS {_quote_ident(name)}", admin)

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
