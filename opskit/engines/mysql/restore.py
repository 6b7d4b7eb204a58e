"""How a MariaDB restore runs: the checks first, then a load into a scratch schema and the
swap (``mysql_swap``), or, behind ``--in-place``, a safety copy and a load into the live
schema; and what a killed run left (``recover``, ``leftovers``).

Refusals come before anything is touched: an account that may not create the scratch
schema (with the GRANT that lets it), a statement longer than the server's
max_allowed_packet (with the SET GLOBAL), objects defined by accounts this one may not
use (unless ``--definer=current-user``), routines it may not read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opskit import logs
from opskit.archive import formats, pipes
from opskit.archive import stream as archive
from opskit.engines import tooling
from opskit.engines.base import DbParams, Leftover, OpenArchive, RestoreContext
from opskit.engines.journal import Journal, JournalError
from opskit.engines.mysql.catalog import (
    DENIED,
    Definition,
    Sql,
    account_literal,
    charset_clause,
    charset_of,
    drop,
    drop_command,
    grant_pattern,
    ident,
    names,
    objects,
    same_account,
    schemas,
    script,
    text,
    triggers,
)
from opskit.engines.mysql.dump import DumpScanner, Rewrite
from opskit.engines.mysql.swap import Facts, Swap, free_name, gather
from opskit.errors import ArchiveError, CommandFailed, OpsError, RestoreRefused

if TYPE_CHECKING:
    from opskit.engines.mysql import Account, MySQL

log = logs.get("engines")

RESTORE_TAG = "__opskit_restore_"
PREVIOUS_TAG = "__pre_restore_"
_LEFTOVER = re.compile(
    r"^(?P<base>.*)(?P<tag>__opskit_restore_|__opskit_verify_|__pre_restore_)\d{14}(?:_\d+)?$"
)
_GIB = 1 << 30


def _charset(props: Mapping[str, Any]) -> tuple[str, str]:
    cs, coll = props.get("charset"), props.get("collation")
    ok = isinstance(cs, str) and isinstance(coll, str) and re.fullmatch(r"\w+", cs + coll)
    return (str(cs), str(coll)) if ok else ("", "")


def _objects_of(definitions: list[Definition], limit: int = 6) -> str:
    shown = [f"{d.kind} {d.name} ({d.definer})" for d in definitions[:limit]]
    more = f" and {len(definitions) - limit} more" if len(definitions) > limit else ""
    return ", ".join(shown) + more


def _record(ctx: RestoreContext, **facts: Any) -> None:
    if ctx.journal is not None:
        ctx.journal.record(**facts)


class Restorer:
    """One MariaDB engine's restores."""

    def __init__(self, engine: MySQL) -> None:
        self.engine = engine

    def _preflight(
        self, db: DbParams, server: Account, props: Mapping[str, Any], definer: str
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
            if who != "CURRENT_USER" and not same_account(str(who), server.user)
        }
        if others:
            listed = [f"{w} ({who})" for who, what in others.items() for w in what]
            more = f" and {len(listed) - 6} more" if len(listed) > 6 else ""
            raise RestoreRefused(
                f"the archive has objects defined by other accounts, which {server.user} may"
                f" not create: {', '.join(listed[:6])}{more}",
                f"restore as an account with SET USER (GRANT SET USER ON *.* TO"
                f" {account_literal(server.user)}), or pass --definer=current-user to define"
                f" them as {server.user}",
            )

    def _check_live(self, db: DbParams, server: Account, run: Sql, definer: str) -> None:
        """Refuse when an object the restore replaces could not be made again if it had to be
        put back: a routine this account may not read, or one defined by another account."""
        found, unreadable = objects(run, db.name)
        if unreadable:
            raise RestoreRefused(
                f"{server.user} may not read {', '.join(unreadable)} in {db.name}, which the"
                " restore replaces and would have to put back if it failed",
                f"GRANT SELECT ON mysql.proc TO {account_literal(server.user)}, restore as the"
                " routines' definer, or drop them first",
            )
        if server.may_set_user or definer == "current-user":
            return
        found += triggers(run, db.name)
        foreign = [d for d in found if not same_account(d.definer, server.user)]
        if foreign:
            raise RestoreRefused(
                f"{db.name} has objects defined by other accounts that {server.user} could not"
                f" create again if the restore had to be undone: {_objects_of(foreign)}",
                f"restore as an account with SET USER (GRANT SET USER ON *.* TO"
                f" {account_literal(server.user)}), or pass --definer=current-user to accept that"
                " an undone restore defines them as this account",
            )

    def restore(self, db: DbParams, open_archive: OpenArchive, ctx: RestoreContext) -> None:
        server = self.engine.account(db)
        run = self.engine.runner(db)
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
            run(f"CREATE DATABASE {ident(scratch)}{charset_clause(charset)}", "")
        except CommandFailed as exc:
            _record(ctx, phase="done")
            if not DENIED.search(exc.message):
                raise
            raise RestoreRefused(
                f"{server.user} may not create the scratch schema {scratch} on"
                f" {db.host or 'localhost'}:{db.port or '3306'}, so the restore cannot load"
                f" the archive beside {db.name}; nothing was changed",
                f"GRANT ALL ON {grant_pattern(db.name)}.* TO {account_literal(server.user)}; or"
                " restore with --in-place (a safety copy, then a load into the live schema)",
            ) from None
        swap = self._load_and_swap(db, open_archive, ctx, server, run, scratch, charset, stamp)
        self._finish(db, ctx, swap)

    def _load_and_swap(
        self,
        db: DbParams,
        open_archive: OpenArchive,
        ctx: RestoreContext,
        server: Account,
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
            self.engine.load_into(db, scratch, open_archive, rewrite, server.packet)
            ctx.step("loaded")
            previous = free_name(set(schemas(run)), db.name, f"{PREVIOUS_TAG}{stamp}")
            fallback = ctx.definer == "current-user"

            def may_define(definer: str) -> bool:
                return server.may_set_user or same_account(definer, server.user)

            facts, problems = gather(run, db.name, scratch, previous, charset, fallback, may_define)
            if problems:
                raise RestoreRefused(
                    f"{server.user} may not read {', '.join(problems)}, so the restore cannot"
                    f" move them into {db.name}; nothing was changed",
                    f"GRANT SELECT ON mysql.proc TO {account_literal(server.user)}, or restore with"
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
                self.engine.query(db, f"DROP DATABASE IF EXISTS {ident(previous)}", "")
                notes.append(f"dropped the previous schema {previous}")
            except OpsError as exc:
                notes.append(f"restored, but {exc.line()}")
            return
        notes.append(
            f"the previous schema is kept as {previous}; drop it when satisfied with:"
            f" {drop_command(previous)} (or restore with --drop-old)"
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
        self, db: DbParams, open_archive: OpenArchive, ctx: RestoreContext, server: Account
    ) -> None:
        props = dict(ctx.properties)
        if "longest_statement" not in props or "definers" not in props:
            props.update(self._scan(open_archive))
        self._preflight(db, server, props, ctx.definer)
        run = self.engine.runner(db)
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
                run(f"ALTER DATABASE{charset_clause(charset)}", db.name)
            ctx.step("wiped")
            self.engine.load_into(
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
        from opskit.archive import manifest as manifests  # it imports the engines: not at the top

        try:
            manifest = manifests.read(safety)
            expect: pipes.Expect | None = pipes.Expect(
                int(manifest["size"]), str(manifest["sha256"])
            )
        except (ArchiveError, KeyError, ValueError):
            expect = None  # it was written and verified moments ago: load it all the same
        self._wipe(db)
        self.engine.load_into(
            db,
            db.name,
            formats.opener(safety, expect=expect),
            Rewrite(db.name, db.name, rewrite),
            packet,
        )

    def _wipe(self, db: DbParams) -> None:
        """Drop every table, view, routine and event: the schema then holds what is loaded."""
        listed = names(self.engine.runner(db), db.name)
        order = {"view": 0, "table": 1}  # views first, then tables, routines and events
        drops = [drop(kind, n) for kind, n in sorted(listed, key=lambda k: order.get(k[0], 2))]
        if drops:
            self.engine.query(db, script(["SET FOREIGN_KEY_CHECKS=0", *drops]))

    # --- recovery and leftovers ------------------------------------------------------------

    def recover(self, db: DbParams, journal: Journal) -> str:
        mode = journal.get("mode")
        if journal.phase in ("started", "done") or not mode:
            return f"the restore of {db.name} had not changed it; nothing to do"
        run = self.engine.runner(db)
        if mode == "in-place":
            if journal.has("loaded"):
                return f"the in-place restore of {db.name} had loaded it whole; nothing to do"
            safety = Path(str(journal.get("safety_copy")))
            server = self.engine.account(db)
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
        run = self.engine.runner(db)
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
            Leftover(kind, name, drop_command(name), int(sizes.get(name.encode().hex().upper(), 0)))
            for kind, name in found
        ]
