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
import shlex
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from opskit import archive, logs, pipes, proc
from opskit.engines import tooling
from opskit.engines.base import ContentObserver, DbParams, Leftover, OpenArchive, RestoreContext
from opskit.engines.diagnose import connecting
from opskit.engines.mysql_catalog import (
    Definition,
    Sql,
    charset_of,
    drop,
    ident,
    names,
    objects,
    schemas,
    script,
    text,
    triggers,
    unhex,
)
from opskit.engines.mysql_dump import DumpObserver, DumpScanner, Rewrite
from opskit.engines.mysql_swap import Facts, Swap, free_name, gather
from opskit.errors import ArchiveError, CommandFailed, OpsError, RestoreRefused
from opskit.journal import Journal, JournalError

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
RESTORE_TAG = "__opskit_restore_"
PREVIOUS_TAG = "__pre_restore_"
VERIFY_TAG = "__opskit_verify_"
_LEFTOVER = re.compile(
    r"^(?P<base>.*)(?P<tag>__opskit_restore_|__opskit_verify_|__pre_restore_)\d{14}(?:_\d+)?$"
)
_DENIED = re.compile(r"\b(1044|1045|1142|1227)\b|denied", re.I)
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


def _grant_pattern(name: str) -> str:
    """`<name>\\_\\_%`: every schema a restore of ``name`` creates, as a GRANT pattern."""
    escaped = name.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
    return ident(escaped + "\\_\\_%")


def _account(user: str) -> str:
    who, _, host = user.rpartition("@")
    return f"'{who}'@'{host}'" if who else f"'{user}'"


def _same_account(a: str, b: str) -> bool:
    ua, _, ha = a.rpartition("@")
    ub, _, hb = b.rpartition("@")
    return ua == ub and ha.lower() == hb.lower()


def _charset(props: Mapping[str, Any]) -> tuple[str, str]:
    cs, coll = props.get("charset"), props.get("collation")
    ok = isinstance(cs, str) and isinstance(coll, str) and re.fullmatch(r"\w+", cs + coll)
    return (str(cs), str(coll)) if ok else ("", "")


def _charset_clause(charset: tuple[str, str]) -> str:
    return f" CHARACTER SET {charset[0]} COLLATE {charset[1]}" if all(charset) else ""


@functools.lru_cache(maxsize=16)
def _help(tool: str) -> str:
    return proc.run([tool, "--help"], proc.child_env({}), what=f"{Path(tool).name} --help")


@dataclasses.dataclass(frozen=True)
class _Server:
    """What the restoring account is and may do on this server."""

    user: str  # CURRENT_USER(): user@host
    packet: int  # @@global.max_allowed_packet
    may_set_user: bool  # SUPER or SET USER: may create objects defined by others
    version: str


def _objects_of(definitions: list[Definition], limit: int = 6) -> str:
    shown = [f"{d.kind} {d.name} ({d.definer})" for d in definitions[:limit]]
    more = f" and {len(definitions) - limit} more" if len(definitions) > limit else ""
    return ", ".join(shown) + more


class MySQL:
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

    def _sql(
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

    def _runner(self, db: DbParams) -> Sql:
        return lambda sql, database: self._sql(db, sql, database)

    def _server(self, db: DbParams) -> _Server:
        out = self._sql(
            db, "SELECT CURRENT_USER(), @@global.max_allowed_packet, VERSION(); SHOW GRANTS", ""
        )
        first, *grants = out.splitlines()
        user, packet, version = first.split("\t")
        on_all = [g for g in grants if " ON *.* TO " in g]
        return _Server(user, int(packet), any(_SET_USER.search(g) for g in on_all), version)

    # --- facts -----------------------------------------------------------------------------

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
            " WHERE table_schema = DATABASE() AND table_type IN ('BASE TABLE', 'SYSTEM VERSIONED')",
        )
        # Hex survives the client's escaping of tabs and newlines in odd table names.
        found = sorted(unhex(h) for h in listed.split())
        if not found:
            return {}
        sql = " UNION ALL ".join(
            f"SELECT {n}, COUNT(*) FROM {ident(name)}" for n, name in enumerate(found)
        )
        out = self._sql(db, sql, timeout=None)
        counts = dict(line.split("\t") for line in out.splitlines())
        return {name: int(counts[str(n)]) for n, name in enumerate(found)}

    def properties(self, db: DbParams) -> dict[str, Any]:
        """The schema's default character set and collation (the observer adds the rest)."""
        cs, coll = charset_of(self._runner(db), db.name)
        return {"charset": cs, "collation": coll} if cs else {}

    def observer(self) -> ContentObserver | None:
        return DumpObserver()

    # --- dump ------------------------------------------------------------------------------

    def _supports_ignore_table_data(self, tool: Path) -> bool:
        return "--ignore-table-data" in _help(str(tool))

    def _history_option(self, db: DbParams, tool: Path) -> list[str]:
        """--dump-history where tool and server both know it (MariaDB 10.11 and later)."""
        if "--dump-history" not in _help(str(tool)):
            return []
        series = tooling.mysql_series(self._sql(db, "SELECT VERSION()", ""))
        ok = series is not None and series[0] == "mariadb" and series[1] >= (10, 11)
        return ["--dump-history"] if ok else []

    def dump(
        self, db: DbParams, exclude_data: tuple[str, ...]
    ) -> AbstractContextManager[IO[bytes]]:
        return self._dump(db, exclude_data)

    @contextlib.contextmanager
    def _dump(self, db: DbParams, exclude_data: tuple[str, ...]) -> Iterator[IO[bytes]]:
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

    def _load_into(
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

    # --- restore ---------------------------------------------------------------------------

    def _preflight(
        self, db: DbParams, server: _Server, props: Mapping[str, Any], definer: str
    ) -> None:
        """Refuse, before anything is touched, what the server would reject half-way."""
        longest = props.get("longest_statement")
        if isinstance(longest, int) and longest + 1024 > server.packet:
            need = -(-(longest + 1024) // (1 << 20)) << 20  # whole MiB
            if need > _GIB:
                raise RestoreRefused(
                    f"the archive holds a statement of {longest:,} bytes, more than any"
                    " MariaDB server accepts (max_allowed_packet is at most 1 GiB)",
                    "restore it with a client that splits the row, or use another backup",
                )
            raise RestoreRefused(
                f"the archive holds a statement of {longest:,} bytes, but the server's"
                f" max_allowed_packet is {server.packet:,}",
                f"SET GLOBAL max_allowed_packet = {need}; (and in the server's config), then"
                " restore again",
            )
        definers = props.get("definers")
        if not isinstance(definers, Mapping) or server.may_set_user or definer == "current-user":
            return
        others = {
            str(who): list(what)
            for who, what in definers.items()
            if who != "CURRENT_USER" and not _same_account(str(who), server.user)
        }
        if others:
            listed = [f"{w} ({who})" for who, what in others.items() for w in what]
            more = f" and {len(listed) - 6} more" if len(listed) > 6 else ""
            raise RestoreRefused(
                f"the archive has objects defined by other accounts, which {server.user} may"
                f" not create: {', '.join(listed[:6])}{more}",
                f"restore as an account with SET USER (GRANT SET USER ON *.* TO"
                f" {_account(server.user)}), or pass --definer=current-user to define them as"
                f" {server.user}",
            )

    def _check_live(self, db: DbParams, server: _Server, run: Sql, definer: str) -> None:
        """Refuse when an object the restore replaces could not be made again if it had to be
        put back: a routine this account may not read, or one defined by another account."""
        found, unreadable = objects(run, db.name)
        if unreadable:
            raise RestoreRefused(
                f"{server.user} may not read {', '.join(unreadable)} in {db.name}, which the"
                " restore replaces and would have to put back if it failed",
                f"GRANT SELECT ON mysql.proc TO {_account(server.user)}, restore as the"
                " routines' definer, or drop them first",
            )
        if server.may_set_user or definer == "current-user":
            return
        found += triggers(run, db.name)
        foreign = [d for d in found if not _same_account(d.definer, server.user)]
        if foreign:
            raise RestoreRefused(
                f"{db.name} has objects defined by other accounts that {server.user} could not"
                f" create again if the restore had to be undone: {_objects_of(foreign)}",
                f"restore as an account with SET USER (GRANT SET USER ON *.* TO"
                f" {_account(server.user)}), or pass --definer=current-user to accept that"
                " an undone restore defines them as this account",
            )

    def restore(self, db: DbParams, open_archive: OpenArchive, ctx: RestoreContext) -> None:
        server = self._server(db)
        run = self._runner(db)
        existing = set(schemas(run))
        if db.name not in existing:
            raise RestoreRefused(
                f"{db.describe()} does not exist",
                f"create it first: CREATE DATABASE {ident(db.name)}",
            )
        if ctx.in_place:
            self._restore_in_place(db, open_archive, ctx, server)
            return
        series = tooling.mysql_series(server.version)
        if series is None or series[0] != "mariadb" or series[1] < (10, 6):
            raise RestoreRefused(
                f"the swap of a restore needs MariaDB 10.6 or later (an atomic RENAME TABLE,"
                f" EXECUTE IMMEDIATE), and {db.describe()} runs {server.version}",
                "restore with --in-place (a safety copy, then a load into the live schema)",
            )
        self._preflight(db, server, ctx.properties, ctx.definer)
        self._check_live(db, server, run, ctx.definer)
        # The archive's, or (an archive that does not say) the live schema's.
        charset = _charset(ctx.properties)
        charset = charset if all(charset) else charset_of(run, db.name)
        stamp = ctx.now.strftime("%Y%m%d%H%M%S")
        scratch = free_name(existing, db.name, f"{RESTORE_TAG}{stamp}")
        _record(ctx, phase="loading", mode="swap", scratch=scratch, drop_old=ctx.drop_old)
        try:
            run(f"CREATE DATABASE {ident(scratch)}{_charset_clause(charset)}", "")
        except CommandFailed as exc:
            _record(ctx, phase="done")
            if not _DENIED.search(exc.message):
                raise
            raise RestoreRefused(
                f"{server.user} may not create the scratch schema {scratch} on"
                f" {db.host or 'localhost'}:{db.port or '3306'}, so the restore cannot load"
                f" the archive beside {db.name}; nothing was changed",
                f"GRANT ALL ON {_grant_pattern(db.name)}.* TO {_account(server.user)}; or"
                " restore with --in-place (a safety copy, then a load into the live schema)",
            ) from None
        swap = self._load_and_swap(db, open_archive, ctx, server, run, scratch, charset, stamp)
        self._finish(db, ctx, swap)

    def _load_and_swap(
        self,
        db: DbParams,
        open_archive: OpenArchive,
        ctx: RestoreContext,
        server: _Server,
        run: Sql,
        scratch: str,
        charset: tuple[str, str],
        stamp: str,
    ) -> Swap:
        """Load into the scratch schema and swap; on any failure leave the live one as it was."""
        swap: Swap | None = None
        try:
            source = str(ctx.manifest.get("database") or db.name)
            rewrite = Rewrite(source, scratch, ctx.definer == "current-user")
            self._load_into(db, scratch, open_archive, rewrite, server.packet)
            ctx.step("loaded")
            previous = free_name(set(schemas(run)), db.name, f"{PREVIOUS_TAG}{stamp}")
            fallback = ctx.definer == "current-user"

            def may_define(definer: str) -> bool:
                return server.may_set_user or _same_account(definer, server.user)

            facts, problems = gather(run, db.name, scratch, previous, charset, fallback, may_define)
            if problems:
                raise RestoreRefused(
                    f"{server.user} may not read {', '.join(problems)}, so the restore cannot"
                    f" move them into {db.name}; nothing was changed",
                    f"GRANT SELECT ON mysql.proc TO {_account(server.user)}, or restore with"
                    " --definer=current-user",
                )
            _record(ctx, previous=previous, swap=facts.as_json())
            swap = Swap(run, facts, ctx.step)
            swap.prepare()
            _record(ctx, phase="swapping")
            swap.rename()
            swap.replace_objects(fresh=True)
        except BaseException:
            if swap is not None and not swap.facts.exact_undo and self._past_rename(swap):
                # Undoing would define old objects as this account: finish the swap instead.
                self._forward(db, ctx, swap)
            else:
                self._abandon(db, ctx, run, scratch, swap)
            raise
        return swap

    def _past_rename(self, swap: Swap) -> bool:
        try:
            return swap.renamed()
        except OpsError:
            return True  # the server cannot say: the next run finds out, from the journal

    def _forward(self, db: DbParams, ctx: RestoreContext, swap: Swap) -> None:
        """Finish a swap past its RENAME while failing (an undo could not be exact)."""
        try:
            if not swap.replaced:
                swap.replace_objects()
            self._finish(db, ctx, swap)
            ctx.notes.append(f"the swap had started; it was finished: {db.name} is restored")
        except OpsError as exc:
            log.error("restore_not_finished", database=db.alias, reason=exc.line())
            ctx.notes.append(
                f"the swap could not be finished ({exc.line()}); the next opskit run on"
                f" {db.alias!r} finishes or undoes it (or: opskit restore --recover)"
            )

    def _abandon(
        self, db: DbParams, ctx: RestoreContext, run: Sql, scratch: str, swap: Swap | None
    ) -> None:
        """Undo what a failed restore did (while already failing: the first error stands)."""
        try:
            if swap is None:
                run(f"DROP DATABASE IF EXISTS {ident(scratch)}", "")
            else:
                swap.undo()
        except OpsError as exc:
            log.error("restore_not_undone", database=db.alias, reason=exc.line())
            ctx.notes.append(
                f"the failed restore could not clean up ({exc.line()}); the next opskit run on"
                f" {db.alias!r} finishes it (or: opskit restore --recover)"
            )
            return
        _record(ctx, phase="done")
        ctx.notes.append(f"restore failed; {db.name} was left as it was")

    def _finish(self, db: DbParams, ctx: RestoreContext, swap: Swap) -> None:
        """The live schema holds the archive: fill the previous schema, clean up, say so."""
        if swap.window:
            seconds = round(swap.window[1] - swap.window[0], 3)
            log.info("swap_window", database=db.alias, seconds=seconds)
        try:
            if not ctx.drop_old:
                swap.fill_previous()
            swap.drop_scratch()
        except OpsError as exc:
            ctx.notes += swap.notes
            raise CommandFailed(
                f"{db.name} is restored, but cleaning up after the swap failed: {exc.message}",
                f"the next opskit run on {db.alias!r} finishes it (or: opskit restore --recover)",
            ) from None
        ctx.notes += swap.notes
        self._drop_or_keep(db, ctx.notes, swap.facts.previous, ctx.drop_old)
        _record(ctx, phase="done")

    def _drop_or_keep(self, db: DbParams, notes: list[str], previous: str, drop: bool) -> None:
        if drop:
            try:
                self._sql(db, f"DROP DATABASE IF EXISTS {ident(previous)}", "")
                notes.append(f"dropped the previous schema {previous}")
            except OpsError as exc:
                notes.append(f"restored, but {exc.line()}")
            return
        notes.append(
            f"the previous schema is kept as {previous}; drop it when satisfied with:"
            f" {_drop_command(previous)} (or restore with --drop-old)"
        )

    # --- the in-place path -----------------------------------------------------------------

    def _scan(self, open_archive: OpenArchive) -> dict[str, Any]:
        """Read the archive once to learn what its manifest does not say (older backups)."""
        scanner = DumpScanner(emit=False)
        with open_archive() as content:
            while chunk := content.read(archive.CHUNK):
                scanner.feed(chunk)
            content.check_end()
        scanner.finish()
        return scanner.result()

    def _restore_in_place(
        self, db: DbParams, open_archive: OpenArchive, ctx: RestoreContext, server: _Server
    ) -> None:
        props = dict(ctx.properties)
        if "longest_statement" not in props or "definers" not in props:
            props.update(self._scan(open_archive))
        self._preflight(db, server, props, ctx.definer)
        run = self._runner(db)
        self._check_live(db, server, run, ctx.definer)
        assert ctx.save_safety_copy is not None, "an in-place restore needs a safety copy"
        safety = ctx.save_safety_copy(db)
        ctx.notes.append(f"safety copy of {db.name} before the restore: {safety}")
        rewrite = ctx.definer == "current-user"
        _record(
            ctx, phase="swapping", mode="in-place", safety_copy=str(safety), definer=ctx.definer
        )
        source = str(ctx.manifest.get("database") or db.name)
        try:
            self._wipe(db)
            charset = _charset(props)
            if all(charset):  # first: routines and triggers take the schema's collation
                run(f"ALTER DATABASE{_charset_clause(charset)}", db.name)
            ctx.step("wiped")
            self._load_into(
                db, db.name, open_archive, Rewrite(source, db.name, rewrite), server.packet
            )
            ctx.step("loaded")
        except BaseException as exc:
            try:
                self._put_back(db, safety, rewrite, server.packet)
            except Exception as again:
                raise CommandFailed(
                    f"restore failed ({exc}) and putting back the safety copy failed too ({again})",
                    f"load {safety} by hand: zstd -dc {safety} | mariadb --database={db.name}",
                ) from None
            _record(ctx, phase="done")
            ctx.notes.append(f"restore failed; {db.name} was put back from {safety}")
            raise
        _record(ctx, phase="done")

    def _put_back(self, db: DbParams, safety: Path, rewrite: bool, packet: int) -> None:
        from opskit import manifest as manifests  # it imports the engines: not at the top

        try:
            manifest = manifests.read(safety)
            expect: pipes.Expect | None = pipes.Expect(
                int(manifest["size"]), str(manifest["sha256"])
            )
        except (ArchiveError, KeyError, ValueError):
            expect = None  # it was written and verified moments ago: load it all the same
        self._wipe(db)
        self._load_into(
            db,
            db.name,
            pipes.opener(safety, expect=expect),
            Rewrite(db.name, db.name, rewrite),
            packet,
        )

    def _wipe(self, db: DbParams) -> None:
        """Drop every table, view, routine and event: the schema then holds what is loaded."""
        listed = names(self._runner(db), db.name)
        order = {"view": 0, "table": 1}  # views first, then tables, routines and events
        drops = [drop(kind, n) for kind, n in sorted(listed, key=lambda k: order.get(k[0], 2))]
        if drops:
            self._sql(db, script(["SET FOREIGN_KEY_CHECKS=0", *drops]))

    # --- recovery and leftovers ------------------------------------------------------------

    def recover(self, db: DbParams, journal: Journal) -> str:
        mode = journal.get("mode")
        if journal.phase in ("started", "done") or not mode:
            return f"the restore of {db.name} had not changed it; nothing to do"
        run = self._runner(db)
        if mode == "in-place":
            if journal.has("loaded"):
                return f"the in-place restore of {db.name} had loaded it whole; nothing to do"
            safety = Path(str(journal.get("safety_copy")))
            server = self._server(db)
            self._put_back(db, safety, journal.get("definer") == "current-user", server.packet)
            return f"the in-place restore had stopped; put {db.name} back from {safety}"
        scratch = str(journal.get("scratch") or "")
        facts_json = journal.get("swap")
        if journal.phase == "loading" or not isinstance(facts_json, dict):
            dropped = [scratch] if scratch else []
            previous = journal.get("previous")
            if previous and journal.has("previous-created") and not names(run, str(previous)):
                dropped.append(str(previous))
            for name in dropped:
                run(f"DROP DATABASE IF EXISTS {ident(name)}", "")
            return (
                f"the restore of {db.name} had stopped before it changed {db.name};"
                f" dropped {', '.join(dropped) or 'nothing'}"
            )
        try:
            facts = Facts.from_json(facts_json)
        except (KeyError, TypeError, ValueError) as exc:
            raise JournalError(
                f"{journal.describe()}: unreadable facts ({exc})", "inspect it"
            ) from None
        swap = Swap(run, facts, journal.done, created_previous=journal.has("previous-created"))
        if not journal.has("objects-replaced"):
            if not swap.renamed():
                swap.undo()
                return f"undid the stopped restore of {db.name}: it is as it was; dropped {scratch}"
            try:
                swap.replace_objects()
            except OpsError as exc:
                swap.undo()
                return f"undid the stopped restore of {db.name} ({exc.line()}): it is as it was"
        drop_old = bool(journal.get("drop_old"))
        if not drop_old and not journal.has("previous-filled"):
            swap.fill_previous()
        swap.drop_scratch()
        notes = list(swap.notes)
        self._drop_or_keep(db, notes, facts.previous, drop_old)
        return f"finished the stopped restore of {db.name}; " + "; ".join(notes)

    def leftovers(self, db: DbParams) -> list[Leftover]:
        run = self._runner(db)
        found = []
        for name in schemas(run):
            match = _LEFTOVER.match(name)
            if not match or match["base"] != db.name[: len(match["base"])]:
                continue
            if match["base"] != db.name and len(name) < 64:  # only a full-length name is cut
                continue
            kind = "previous" if match["tag"] == PREVIOUS_TAG else "scratch"
            found.append((kind, name))
        if not found:
            return []
        sizes = dict(
            row.split("\t")
            for row in run(
                "SELECT HEX(table_schema), SUM(data_length + index_length)"
                " FROM information_schema.tables WHERE table_schema IN ("
                + ", ".join(text(n) for _, n in found)
                + ") GROUP BY table_schema",
                "",
            ).splitlines()
        )
        return [
            Leftover(
                kind, name, _drop_command(name), int(sizes.get(name.encode().hex().upper(), 0))
            )
            for kind, name in found
        ]

    # --- restore tests ---------------------------------------------------------------------

    def scratch_copy(
        self, db: DbParams, open_archive: OpenArchive, now: datetime, work_dir: Path
    ) -> AbstractContextManager[DbParams]:
        """Load the archive into a new scratch schema on db's server; drop it on leaving."""
        return self._scratch_copy(db, open_archive, now)

    @contextlib.contextmanager
    def _scratch_copy(
        self, db: DbParams, open_archive: OpenArchive, now: datetime
    ) -> Iterator[DbParams]:
        run = self._runner(db)
        server = self._server(db)
        scratch = free_name(set(schemas(run)), db.name, f"{VERIFY_TAG}{now:%Y%m%d%H%M%S}")
        charset = charset_of(run, db.name)
        try:
            run(f"CREATE DATABASE {ident(scratch)}{_charset_clause(charset)}", "")
        except CommandFailed as exc:
            if not _DENIED.search(exc.message):
                raise
            where = f"{db.host or 'localhost'}:{db.port or '3306'}"
            raise CommandFailed(
                f"{db.user or 'this user'} may not create databases on {where},"
                " so the restore test cannot run",
                f"GRANT ALL ON {_grant_pattern(db.name)}.* TO {_account(server.user)},"
                " or verify without --restore-test",
            ) from None
        target = dataclasses.replace(db, name=scratch)
        # A restore test checks the data: objects defined by others load as this account.
        rewrite = Rewrite(db.name, scratch, definer_current_user=not server.may_set_user)
        try:
            self._load_into(db, scratch, open_archive, rewrite, server.packet)
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
                f"drop it by hand: {_drop_command(scratch)}",
            ) from None


def _record(ctx: RestoreContext, **facts: Any) -> None:
    if ctx.journal is not None:
        ctx.journal.record(**facts)


def _drop_command(name: str) -> str:
    return "mariadb -e " + shlex.quote(f"DROP DATABASE {ident(name)}")


def _explained(exc: CommandFailed, db: DbParams) -> CommandFailed:
    """The loader's failure, with what to do about it."""
    if _GONE.search(exc.message):
        hint = (
            f"the server {db.host or 'localhost'}:{db.port or '3306'} went away during the"
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
