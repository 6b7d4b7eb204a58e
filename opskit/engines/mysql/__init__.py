"""MySQL and MariaDB: mariadb-dump/mysqldump; restore into a scratch schema, then swap.

A restore loads the archive into a new schema beside the live one and only when all of it
has loaded, and the archive proved whole, swaps the tables in (``mysql_swap``). The old
in-place path (safety copy, wipe, load) is there behind ``--in-place``. Every load runs the
client sandboxed: an archive is data, never a program.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from opskit import logs, proc
from opskit.archive import pipes
from opskit.engines import tooling
from opskit.engines.base import (
    VERIFY_TAG,
    ContentObserver,
    DbParams,
    DumpObserver,
    OpenArchive,
    RestoredByRestorer,
)
from opskit.engines.diagnose import connecting
from opskit.engines.mysql.catalog import (
    DENIED,
    Sql,
    account_literal,
    charset_clause,
    charset_of,
    drop_command,
    grant_pattern,
    ident,
    schemas,
    unhex,
)
from opskit.engines.mysql.dump import DumpScanner, Rewrite
from opskit.engines.mysql.restore import Restorer
from opskit.engines.mysql.swap import free_name
from opskit.errors import CommandFailed, OpsError

log = logs.get("engines")

DUMP_OPTIONS = (
    "--single-transaction",
    "--quick",
    "--routines",
    "--triggers",
    "--events",
    # Binary values escaped, not hex: half the statement size, so that a row the server
    # accepted always fits its max_allowed_packet again (measured: same bytes back, NUL,
    # \r\n and invalid UTF-8 included).
    "--skip-add-locks",  # LOCK TABLES fails on tables whose default takes a sequence's value
    "--no-tablespaces",
    "--default-character-set=utf8mb4",
    "--max-allowed-packet=1G",  # the dump tool reads rows as large as the server holds
)
_GONE = re.compile(r"\b(2006|2013)\b|server has gone away|lost connection", re.I)
_SET_USER = re.compile(r"\b(ALL PRIVILEGES|SUPER|SET USER|SET_USER_ID|SET_ANY_DEFINER)\b")
_GIB = 1 << 30


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


@functools.lru_cache(maxsize=16)
def _help(tool: str) -> str:
    return proc.run([tool, "--help"], proc.child_env({}), what=f"{Path(tool).name} --help")


@dataclasses.dataclass(frozen=True)
class Account:
    """What the restoring account is and may do on this server."""

    user: str  # CURRENT_USER(): user@host
    packet: int  # @@global.max_allowed_packet
    may_set_user: bool  # SUPER or SET USER: may create objects defined by others
    version: str


class MySQL(RestoredByRestorer):
    """MySQL and MariaDB through their dump tool and command-line client."""

    vendor = "mysql"
    suffix = "sql"

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir

    # --- running the tools -----------------------------------------------------------------

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

    def query(
        self, db: DbParams, sql: str, database: str | None = None, timeout: float | None = 120
    ) -> str:
        """Run SQL (read from stdin: no length limit) in ``database`` (default: db's; "": none)."""
        name = db.name if database is None else database
        client = self._client()
        argv: list[str | Path] = [client, "--batch", "--skip-column-names"]
        argv += ["--default-character-set=utf8mb4", *([f"--database={name}"] if name else [])]
        with self._defaults(db) as (defaults, env), connecting(self.vendor, db, name):
            return proc.run(
                [argv[0], defaults, *argv[1:]],
                env,
                what=f"mysql on {db.describe(name or None)}",
                secrets=[db.password],
                stdin=sql.encode(),
                timeout=timeout,
            ).strip()

    def runner(self, db: DbParams) -> Sql:
        return lambda sql, database: self.query(db, sql, database)

    def account(self, db: DbParams) -> Account:
        out = self.query(
            db, "SELECT CURRENT_USER(), @@global.max_allowed_packet, VERSION(); SHOW GRANTS", ""
        )
        first, *grants = out.splitlines()
        user, packet, version = first.split("\t")
        on_all = [g for g in grants if " ON *.* TO " in g]
        return Account(user, int(packet), any(_SET_USER.search(g) for g in on_all), version)

    # --- facts -----------------------------------------------------------------------------

    def versions(self, db: DbParams) -> dict[str, str]:
        """Return the dump tool's and the server's versions; log a warning if they differ."""
        tool = self._dump_tool()
        version = proc.run([tool, "--version"], proc.child_env({}), what=f"{tool.name} --version")
        server = self.query(db, "SELECT VERSION()")
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
        total = self.query(
            db,
            "SELECT COALESCE(SUM(data_length + index_length), 0)"
            " FROM information_schema.tables WHERE table_schema = DATABASE()",
        )
        return int(total or 0)

    def table_counts(self, db: DbParams) -> dict[str, int]:
        """Return the exact row count of every base table (SELECT COUNT(*) each)."""
        listed = self.query(
            db,
            "SELECT HEX(table_name) FROM information_schema.tables"
            " WHERE table_schema = DATABASE() AND table_type IN ('BASE TABLE', 'SYSTEM VERSIONED')",
        )
        # Hex survives the client's escaping of tabs and newlines in odd table names.
        found = sorted(unhex(h) for h in listed.split())
        if not found:
            return {}
        sql = " UNION ALL ".join(
            f"SELECT {n}, COUNT(*) FROM {ident(name)}" for n, name in enumerate(found)
        )
        out = self.query(db, sql, timeout=None)
        counts = dict(line.split("\t") for line in out.splitlines())
        return {name: int(counts[str(n)]) for n, name in enumerate(found)}

    def properties(self, db: DbParams) -> dict[str, Any]:
        """The schema's default character set and collation (the observer adds the rest)."""
        cs, coll = charset_of(self.runner(db), db.name)
        return {"charset": cs, "collation": coll} if cs else {}

    def observer(self) -> ContentObserver | None:
        return DumpObserver(DumpScanner(emit=False))

    # --- dump ------------------------------------------------------------------------------

    def _supports_ignore_table_data(self, tool: Path) -> bool:
        return "--ignore-table-data" in _help(str(tool))

    def _history_option(self, db: DbParams, tool: Path) -> list[str]:
        """--dump-history where tool and server both know it (MariaDB 10.11 and later)."""
        if "--dump-history" not in _help(str(tool)):
            return []
        series = tooling.mysql_series(self.query(db, "SELECT VERSION()", ""))
        ok = series is not None and series[0] == "mariadb" and series[1] >= (10, 11)
        return ["--dump-history"] if ok else []

    @contextlib.contextmanager
    def dump(self, db: DbParams, exclude_data: tuple[str, ...]) -> Iterator[IO[bytes]]:
        tool = self._dump_tool()
        what = f"{tool.name} of {db.describe()}"
        history = self._history_option(db, tool)
        with self._defaults(db) as (defaults, env), connecting(self.vendor, db):
            base: list[str | Path] = [tool, defaults, *DUMP_OPTIONS, *history]
            # "--" first: a database called "-A" or "--help" is a name, not an option.
            if not exclude_data or self._supports_ignore_table_data(tool):
                skip = [f"--ignore-table-data={db.name}.{t}" for t in exclude_data]
                with proc.reading([*base, *skip, "--", db.name], env, what=what) as out:
                    yield out
                return
            # Oracle's mysqldump has no --ignore-table-data: data of the rest, then bare schema.
            skip = [f"--ignore-table={db.name}.{t}" for t in exclude_data]
            schema: list[str | Path] = [tool, defaults, "--no-data", "--skip-triggers"]
            schema += ["--default-character-set=utf8mb4", "--", db.name, *exclude_data]
            with (
                proc.reading([*base, *skip, "--", db.name], env, what=what) as first,
                proc.reading(schema, env, what=what) as second,
            ):
                yield _Concat(first, second)  # type: ignore[misc]

    # --- loading ---------------------------------------------------------------------------

    def _load_flags(self) -> list[str]:
        """Flags that keep the client from doing anything but send SQL to the server."""
        client = str(self._client())
        flags = ["--binary-mode"]  # no client commands (\\!, system, source) in piped input
        flags.append("--skip-reconnect")  # after a lost connection, never go on half-way
        if "--sandbox" in _help(client):
            flags.append("--sandbox")  # and none at all, whatever the input says
        return flags

    def load_into(
        self,
        db: DbParams,
        schema: str,
        open_archive: OpenArchive,
        rewrite: Rewrite,
        packet: int,
    ) -> DumpScanner:
        """Load an archive into ``schema``; the loader's own error is the reason if it fails."""
        scanner = DumpScanner(rewrite)
        what = f"mysql into {db.describe(schema)}"
        argv: list[str | Path] = [self._client(), "--default-character-set=utf8mb4"]
        argv += [*self._load_flags(), f"--max-allowed-packet={min(packet, _GIB)}"]
        argv.append(f"--database={schema}")
        try:
            with (
                self._defaults(db) as (defaults, env),
                connecting(self.vendor, db, schema),
                open_archive() as content,
            ):
                pipes.load(
                    [argv[0], defaults, *argv[1:]],
                    env,
                    content,
                    what=what,
                    secrets=[db.password],
                    transform=scanner,
                )
        except CommandFailed as exc:
            raise _explained(exc, db) from None
        return scanner

    # --- restore (opskit.engines.mysql.restore) ---------------------------------------------

    def restorer(self) -> Restorer:
        return Restorer(self)

    # --- restore tests ---------------------------------------------------------------------

    @contextlib.contextmanager
    def scratch_copy(
        self, db: DbParams, open_archive: OpenArchive, now: datetime, work_dir: Path
    ) -> Iterator[DbParams]:
        """Load the archive into a new scratch schema on db's server; drop it on leaving."""
        run = self.runner(db)
        server = self.account(db)
        scratch = free_name(set(schemas(run)), db.name, f"{VERIFY_TAG}{now:%Y%m%d%H%M%S}")
        charset = charset_of(run, db.name)
        try:
            run(f"CREATE DATABASE {ident(scratch)}{charset_clause(charset)}", "")
        except CommandFailed as exc:
            if not DENIED.search(exc.message):
                raise
            where = db.address("3306")
            raise CommandFailed(
                f"{db.user or 'this user'} may not create databases on {where},"
                " so the restore test cannot run",
                f"GRANT ALL ON {grant_pattern(db.name)}.* TO {account_literal(server.user)},"
                " or verify without --restore-test",
            ) from None
        target = dataclasses.replace(db, name=scratch)
        # A restore test checks the data: objects defined by others load as this account.
        rewrite = Rewrite(db.name, scratch, definer_current_user=not server.may_set_user)
        try:
            self.load_into(db, scratch, open_archive, rewrite, server.packet)
            yield target
        except BaseException:
            with contextlib.suppress(OpsError):
                run(f"DROP DATABASE IF EXISTS {ident(scratch)}", "")
            raise
        try:
            run(f"DROP DATABASE IF EXISTS {ident(scratch)}", "")
        except CommandFailed as exc:
            log.error("scratch_not_dropped", database=scratch, reason=exc.line())
            raise CommandFailed(
                f"could not drop the scratch database {scratch}: {exc.message}",
                f"drop it by hand: {drop_command(scratch)}",
            ) from None


def _explained(exc: CommandFailed, db: DbParams) -> CommandFailed:
    """The loader's failure, with what to do about it."""
    if _GONE.search(exc.message):
        hint = (
            f"the server {db.address('3306')} went away during the"
            " load (check its log: it may have restarted); the live schema was not changed"
        )
        return CommandFailed(exc.message, hint)
    if "1227" in exc.message:
        return CommandFailed(
            exc.message, "restore as an account with SET USER, or with --definer=current-user"
        )
    if "1153" in exc.message:
        return CommandFailed(exc.message, "raise the server's max_allowed_packet")
    return exc


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
