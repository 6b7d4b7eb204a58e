"""MySQL and MariaDB: mysqldump/mariadb-dump; restore behind an automatic safety copy."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from opskit import logs, pipes, proc
from opskit.engines import tooling
from opskit.engines.base import ContentObserver, DbParams, Leftover, OpenArchive, RestoreContext
from opskit.engines.diagnose import connecting
from opskit.errors import CommandFailed, OpsError
from opskit.journal import Journal, JournalError

log = logs.get("engines")
_MAX_IDENT = 64  # MySQL's limit on a database name, in characters

DUMP_OPTIONS = (
    "--single-transaction",
    "--quick",
    "--routines",
    "--triggers",
    "--events",
    "--hex-blob",
    "--no-tablespaces",
    "--default-character-set=utf8mb4",
)


def _option_value(value: str) -> str:
    # The option-file parser turns these escapes back into the characters.
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


def _options_file(db: DbParams) -> str:
    """Return a [client] option file: the one place the password is written."""
    lines = ["[client]"]
    if db.user:
        lines.append(f"user={_option_value(db.user)}")
    if db.password:
        lines.append(f"password={_option_value(db.password)}")
    socket = db.options.get("unix_socket") or (db.host if db.host.startswith("/") else "")
    if socket:
        lines.append(f"socket={_option_value(str(socket))}")
    elif db.host:
        lines.append(f"host={_option_value(db.host)}")
    if db.port:
        lines.append(f"port={db.port}")
    return "\n".join(lines) + "\n"


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class MySQL:
    """MySQL and MariaDB through their dump tool and command-line client."""

    vendor = "mysql"
    suffix = "sql"

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir

    def _tool(self, *names: str) -> Path:
        return tooling.find_tool(names, self.bin_dir, "MYSQL_BIN_DIR")

    @contextlib.contextmanager
    def _defaults(self, db: DbParams) -> Iterator[tuple[str, dict[str, str]]]:
        """Yield the --defaults-extra-file option and an environment without MYSQL_PWD."""
        with proc.secret_file(_options_file(db), prefix="opskit-my-") as path:
            yield f"--defaults-extra-file={path}", proc.child_env({}, drop=("MYSQL_PWD",))

    def _client(self) -> Path:
        return self._tool("mariadb", "mysql")

    def _dump_tool(self) -> Path:
        return self._tool("mariadb-dump", "mysqldump")

    def _sql(
        self, db: DbParams, sql: str, database: str | None = None, timeout: float | None = 120
    ) -> str:
        """Run SQL (read from stdin: no length limit) in ``database`` (default: db's; "": none)."""
        name = db.name if database is None else database
        client = self._client()
        with self._defaults(db) as (defaults, env), connecting(self.vendor, db, name):
            return proc.run(
                [client, defaults, "--batch", "--skip-column-names", *([name] if name else [])],
                env,
                what=f"mysql on {db.describe(name or None)}",
                secrets=[db.password],
                stdin=sql.encode(),
                timeout=timeout,
            ).strip()

    def versions(self, db: DbParams) -> dict[str, str]:
        """Return the dump tool's and the server's versions; log a warning if they differ."""
        tool = self._dump_tool()
        version = proc.run([tool, "--version"], proc.child_env({}), what=f"{tool.name} --version")
        server = self._sql(db, "SELECT VERSION()")
        mismatch = tooling.mysql_mismatch(version, server)
        if mismatch:
            # Dumps across versions mostly work; a warning, not a failed backup.
            log.warning(
                "dump_tool_version_mismatch",
                database=db.alias,
                tool=str(tool),
                problem=mismatch,
                fix="install the matching client or set OPSKIT['MYSQL_BIN_DIR'] to its folder",
            )
        return {tool.name: version.strip(), "server": server}

    def size(self, db: DbParams) -> int:
        total = self._sql(
            db,
            "SELECT COALESCE(SUM(data_length + index_length), 0)"
            " FROM information_schema.tables WHERE table_schema = DATABASE()",
        )
        return int(total or 0)

    def table_counts(self, db: DbParams) -> dict[str, int]:
        """Return the exact row count of every base table (SELECT COUNT(*) each)."""
        listed = self._sql(
            db,
            "SELECT HEX(table_name) FROM information_schema.tables"
            " WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'",
        )
        # Hex survives the client's escaping of tabs and newlines in odd table names.
        names = sorted(bytes.fromhex(h).decode("utf-8") for h in listed.split())
        if not names:
            return {}
        sql = " UNION ALL ".join(
            f"SELECT {n}, COUNT(*) FROM {_ident(name)}" for n, name in enumerate(names)
        )
        out = self._sql(db, sql, timeout=None)
        counts = dict(line.split("\t") for line in out.splitlines())
        return {name: int(counts[str(n)]) for n, name in enumerate(names)}

    def scratch_copy(
        self, db: DbParams, open_archive: OpenArchive, now: datetime, work_dir: Path
    ) -> AbstractContextManager[DbParams]:
        """Load the archive into a new scratch schema on db's server; drop it on leaving."""
        return self._scratch_copy(db, open_archive, now)

    @contextlib.contextmanager
    def _scratch_copy(
        self, db: DbParams, open_archive: OpenArchive, now: datetime
    ) -> Iterator[DbParams]:
        tag = f"__opskit_verify_{now:%Y%m%d%H%M%S}"
        scratch = db.name[: _MAX_IDENT - len(tag)] + tag
        charset = self._sql(
            db,
            "SELECT CONCAT(default_character_set_name, ' ', default_collation_name)"
            f" FROM information_schema.schemata WHERE schema_name = {_literal(db.name)}",
            "",
        ).split()
        options = f" CHARACTER SET {charset[0]} COLLATE {charset[1]}" if len(charset) == 2 else ""
        try:
            self._sql(db, f"CREATE DATABASE {_ident(scratch)}{options}", "")
        except CommandFailed as exc:
            if "1044" not in str(exc) and "denied" not in str(exc):
                raise
            where = f"{db.host or 'localhost'}:{db.port or '3306'}"
            raise CommandFailed(
                f"{db.user or 'this user'} may not create databases on {where},"
                " so the restore test cannot run",
                f"GRANT ALL ON `{db.name}\\_\\_opskit\\_verify\\_%`.* TO the user,"
                " or verify without --restore-test",
            ) from None
        target = dataclasses.replace(db, name=scratch)
        try:
            self._load(target, open_archive)
            yield target
        except BaseException:
            with contextlib.suppress(OpsError):
                self._sql(db, f"DROP DATABASE IF EXISTS {_ident(scratch)}", "")
            raise
        try:
            self._sql(db, f"DROP DATABASE IF EXISTS {_ident(scratch)}", "")
        except CommandFailed as exc:
            log.error("scratch_not_dropped", database=scratch, reason=exc.line())
            raise CommandFailed(
                f"could not drop the scratch database {scratch}: {exc.message}",
                f"drop it by hand: DROP DATABASE {_ident(scratch)}",
            ) from None

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

    def _supports_ignore_table_data(self, tool: Path) -> bool:
        return "--ignore-table-data" in proc.run([tool, "--help"], proc.child_env({}), what="help")

    def dump(
        self, db: DbParams, exclude_data: tuple[str, ...]
    ) -> AbstractContextManager[IO[bytes]]:
        return self._dump(db, exclude_data)

    @contextlib.contextmanager
    def _dump(self, db: DbParams, exclude_data: tuple[str, ...]) -> Iterator[IO[bytes]]:
        tool = self._dump_tool()
        what = f"{tool.name} of {db.describe()}"
        with self._defaults(db) as (defaults, env), connecting(self.vendor, db):
            base: list[str | Path] = [tool, defaults, *DUMP_OPTIONS]
            if not exclude_data or self._supports_ignore_table_data(tool):
                skip = [f"--ignore-table-data={db.name}.{t}" for t in exclude_data]
                with proc.reading([*base, *skip, db.name], env, what=what) as out:
                    yield out
                return
            # Oracle's mysqldump has no --ignore-table-data: data of the rest, then bare schema.
            skip = [f"--ignore-table={db.name}.{t}" for t in exclude_data]
            schema: list[str | Path] = [tool, defaults, "--no-data", "--skip-triggers"]
            schema += ["--default-character-set=utf8mb4", db.name, *exclude_data]
            with (
                proc.reading([*base, *skip, db.name], env, what=what) as first,
                proc.reading(schema, env, what=what) as second,
            ):
                yield _Concat(first, second)  # type: ignore[misc]

    def _load(self, db: DbParams, open_archive: OpenArchive) -> None:
        with (
            self._defaults(db) as (defaults, env),
            connecting(self.vendor, db),
            open_archive() as content,
        ):
            pipes.load(
                [self._client(), defaults, "--default-character-set=utf8mb4", db.name],
                env,
                content,
                what=f"mysql into {db.describe()}",
                secrets=[db.password],
            )

    def _wipe(self, db: DbParams) -> None:
        """Drop every table and view, so the database holds exactly what is loaded next."""
        rows = self._sql(
            db,
            "SELECT table_type, table_name FROM information_schema.tables"
            " WHERE table_schema = DATABASE()",
        )
        drops = []
        for row in rows.splitlines():
            kind, name = row.split("\t", 1)
            drops.append(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} IF EXISTS {_ident(name)};")
        if drops:
            self._sql(db, "SET FOREIGN_KEY_CHECKS=0; " + " ".join(sorted(drops, reverse=True)))

    def restore(self, db: DbParams, open_archive: OpenArchive, ctx: RestoreContext) -> None:
        # DDL is not transactional here: keep a verified copy of the current state first.
        assert ctx.save_safety_copy is not None, "MySQL restore needs a safety copy"
        safety = ctx.save_safety_copy(db)
        ctx.notes.append(f"safety copy of {db.name} before the restore: {safety}")
        try:
            self._wipe(db)
            self._load(db, open_archive)
        except BaseException as exc:
            try:
                self._wipe(db)
                self._load(db, lambda: pipes.decompressed(safety))
            except Exception as again:
                raise CommandFailed(
                    f"restore failed ({exc}) and putting back the safety copy failed too ({again})",
                    f"load {safety} by hand: zstd -dc {safety} | mysql {db.name}",
                ) from None
            ctx.notes.append(f"restore failed; {db.name} was put back from {safety}")
            raise


class _Concat:
    """Read two streams one after the other."""

    def __init__(self, *streams: IO[bytes]) -> None:
        self.streams = list(streams)

    def read(self, size: int = -1) -> bytes:
        while self.streams:
            data = self.streams[0].read(size)
            if data:
                return data
            self.streams.pop(0)
        return b""
