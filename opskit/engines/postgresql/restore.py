"""How a PostgreSQL restore runs: the checks first, then a load into a scratch database and
a swap by rename, or (no CREATEDB, or ``--in-place``) one transaction in the live database;
and what a killed run left (``recover``, ``leftovers``).

Scratch path: CREATE DATABASE ... TEMPLATE template0 with the archive's encoding and
locale; load the archive (opskit's BEGIN, COMMIT once the archive proved whole); give it
the archive's database properties (owner, ACL, settings, per-role settings, connection
limit, comment); then the swap: the live database refuses new connections, its sessions
end, and one transaction renames live -> ``<name>__pre_restore_<ts>`` and scratch -> live.
Each step is in the restore journal; the OIDs recorded there tell the next run whether the
rename happened (finish) or not (undo: connections allowed again, scratch dropped).

In place: one transaction that drops every object the role may drop, loads the archive,
sets the database's properties, and COMMITs only after the archive was read to its end
and matched its manifest. A killed opskit, a cut stream or a failed decompressor ends
psql's input without COMMIT: the server rolls everything back.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opskit import logs
from opskit.archive import stream as archive
from opskit.engines.base import ArchiveDir, DbParams, Leftover, OpenArchive, RestoreContext
from opskit.engines.journal import Journal
from opskit.engines.postgresql import catalog
from opskit.engines.postgresql.dump import DumpScanner
from opskit.engines.postgresql.swap import PREVIOUS_TAG, RESTORE_TAG, Swapper
from opskit.errors import CommandFailed, RestoreRefused

if TYPE_CHECKING:
    from opskit.engines.postgresql import PostgreSQL

log = logs.get("engines")


def _record(ctx: RestoreContext, **facts: Any) -> None:
    if ctx.journal is not None:
        ctx.journal.record(**facts)


def _listed(items: list[str], limit: int = 8) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


class Restorer:
    """One PostgreSQL engine's restores."""

    def __init__(self, engine: PostgreSQL) -> None:
        self.engine = engine
        self.swapper = Swapper(engine)

    def recover(self, db: DbParams, journal: Journal) -> str:
        return self.swapper.recover(db, journal)

    def leftovers(self, db: DbParams) -> list[Leftover]:
        return self.swapper.leftovers(db)

    # --- facts -----------------------------------------------------------------------------

    def _me(self, db: DbParams) -> dict[str, Any]:
        found = self.engine.query_json(
            db,
            "SELECT json_build_object('user', current_user, 'super', rolsuper, 'createdb',"
            " rolcreatedb) FROM pg_roles WHERE rolname = current_user",
            self.engine.admin_db(db),
        )
        return dict(found or {"user": db.user, "super": False, "createdb": False})

    def _roles(self, db: DbParams, names: set[str]) -> dict[str, bool]:
        """The roles among ``names`` that exist, each with: is the current role a member?"""
        if not names:
            return {}
        values = ", ".join(catalog.literal(n) for n in sorted(names))
        found = self.engine.query_json(
            db,
            "SELECT COALESCE(json_object_agg(rolname, pg_has_role(current_user, oid, 'MEMBER')),"
            f" '{{}}') FROM pg_roles WHERE rolname = ANY(ARRAY[{values}]::text[])",
            self.engine.admin_db(db),
        )
        return {str(k): bool(v) for k, v in (found or {}).items()}

    def _extensions(self, db: DbParams, names: list[str]) -> dict[str, Any]:
        """name -> {"trusted": bool, "installed_by_other": bool} for the available ones."""
        if not names:
            return {}
        values = ", ".join(catalog.literal(n) for n in names)
        sql = (
            "SELECT COALESCE(json_object_agg(v.name, json_build_object('trusted', v.trusted,"
            " 'kept', EXISTS (SELECT 1 FROM pg_extension e WHERE e.extname = v.name AND NOT"
            " pg_has_role(e.extowner, 'USAGE')))), '{}') FROM (SELECT name, bool_or(trusted)"
            " AS trusted FROM pg_available_extension_versions"
            f" WHERE name = ANY(ARRAY[{values}]::text[]) GROUP BY name) v"
        )
        return dict(self.engine.query_json(db, sql) or {})

    def _scan(self, open_archive: OpenArchive) -> dict[str, Any]:
        """Read the archive once to learn what its manifest does not say (older backups)."""
        scanner = DumpScanner(emit=False)
        if isinstance(open_archive, ArchiveDir):
            folder = open_archive
            open_archive = lambda: self.engine.restore_script(folder)  # noqa: E731
        with open_archive() as content:
            while chunk := content.read(archive.CHUNK):
                scanner.feed(chunk)
            content.check_end()
        scanner.finish()
        return scanner.result()

    # --- the checks ------------------------------------------------------------------------

    def _preflight(
        self,
        db: DbParams,
        me: Mapping[str, Any],
        props: Mapping[str, Any],
        scanned: Mapping[str, Any],
        ctx: RestoreContext,
        in_place: bool,
    ) -> dict[str, bool]:
        """Refuse, naming the objects, what this role could not restore as it was."""
        roles = self._roles(db, catalog.roles_named(props, scanned))
        found = _Problems(str(me.get("user")), superuser=bool(me.get("super")))
        if not ctx.no_owner:
            found.owners(props, scanned, roles, in_place)
        if not ctx.no_privileges:
            found.grantees(props, scanned, roles)
        if not found.superuser:
            wanted = list(scanned.get("extensions") or [])
            found.extensions(wanted, self._extensions(db, wanted), in_place)
        if found.items:
            raise found.refusal()
        return roles

    # --- restore ---------------------------------------------------------------------------

    def restore(self, db: DbParams, open_archive: OpenArchive, ctx: RestoreContext) -> None:
        engine = self.engine
        live = engine.database_properties(db, db.name)
        if not live:
            raise RestoreRefused(
                f"{db.describe()} does not exist",
                "create it first: "
                + catalog.sql_command(f"CREATE DATABASE {catalog.ident(db.name)}"),
            )
        recorded = ctx.properties.get("database")
        props = dict(recorded) if isinstance(recorded, Mapping) and recorded else dict(live)
        if not recorded:
            ctx.notes.append(
                "the archive does not record the database's properties; kept the live ones"
            )
        scanned = ctx.properties if "owners" in ctx.properties else self._scan(open_archive)
        me = self._me(db)
        in_place = ctx.in_place or not (me.get("super") or me.get("createdb"))
        owner, user = str(live.get("owner")), str(me.get("user"))
        if not me.get("super") and not self._roles(db, {owner}).get(owner):
            # Only the owner (or a member) may empty it in place, or rename it for a swap.
            why = (
                "may not create databases, and an in-place restore"
                if not me.get("createdb")
                else "is not a superuser, and the restore (in place or by a swap)"
            )
            raise RestoreRefused(
                f"{user} {why} needs the owner of {db.name} ({owner}); nothing was changed",
                f"restore as {owner} or as a superuser"
                + (
                    f" (with ALTER ROLE {catalog.ident(owner)} CREATEDB, the owner takes the"
                    " safe path: a scratch database and a swap)"
                    if not me.get("createdb")
                    else ""
                ),
            )
        roles = self._preflight(db, me, props, scanned, ctx, in_place)
        if in_place:
            self._in_place(db, open_archive, ctx, props, live, me, set(roles), scanned)
        else:
            self._swap_path(db, open_archive, ctx, props, set(roles))

    def _in_place(
        self,
        db: DbParams,
        open_archive: OpenArchive,
        ctx: RestoreContext,
        props: dict[str, Any],
        live: dict[str, Any],
        me: Mapping[str, Any],
        roles: set[str],
        scanned: Mapping[str, Any],
    ) -> None:
        statements = _in_place_statements(db, ctx, props, live, me, roles)
        kept = self._kept_extensions(db, ctx, me, scanned)
        _record(ctx, phase="swapping", mode="in-place", in_place=True)
        prologue = (catalog.WIPE_SQL + catalog.reset_public_acl_sql()).encode()
        epilogue = "".join(s + ";\n" for s in statements).encode()
        started = time.monotonic()
        try:
            self.engine.load(
                db,
                db.name,
                open_archive,
                no_owner=ctx.no_owner,
                no_privileges=ctx.no_privileges,
                prologue=prologue,
                epilogue=epilogue,
                keep_extensions=kept,
            )
        except BaseException:
            _record(ctx, phase="done")  # psql's transaction did not commit: nothing changed
            ctx.notes.append(f"restore failed; {db.name} was left as it was (rolled back)")
            raise
        seconds = round(time.monotonic() - started, 3)
        ctx.step("committed")
        _record(ctx, phase="done")
        log.info("swap_window", database=db.alias, seconds=seconds, mode="in-place")
        ctx.notes.append(
            f"restored {db.name} in place in one transaction; its tables were locked for"
            f" {seconds} s (swap window)"
        )

    def _kept_extensions(
        self, db: DbParams, ctx: RestoreContext, me: Mapping[str, Any], scanned: Mapping[str, Any]
    ) -> frozenset[str]:
        """The archive's extensions that a role this one is not a member of installed: they
        stay as they are (the archive's DROP and COMMENT of them are left out)."""
        if me.get("super"):
            return frozenset()
        found = self._extensions(db, list(scanned.get("extensions") or []))
        kept = frozenset(n for n, info in found.items() if info.get("kept"))
        if kept:
            ctx.notes.append(
                f"extension(s) {', '.join(sorted(kept))} stay as installed (by a role"
                f" {me.get('user')} is not a member of)"
            )
        return kept

    def _swap_path(
        self,
        db: DbParams,
        open_archive: OpenArchive,
        ctx: RestoreContext,
        props: dict[str, Any],
        roles: set[str],
    ) -> None:
        engine, admin = self.engine, self.engine.admin_db(db)
        stamp = ctx.now.strftime("%Y%m%d%H%M%S")
        oids = self.swapper.oids(db)
        scratch = catalog.free_name(set(oids), db.name, f"{RESTORE_TAG}{stamp}")
        previous = catalog.free_name(set(oids) | {scratch}, db.name, f"{PREVIOUS_TAG}{stamp}")
        _record(
            ctx,
            phase="loading",
            mode="swap",
            scratch=scratch,
            previous=previous,
            live_oid=oids[db.name],
            drop_old=ctx.drop_old,
        )
        self._create_scratch(db, ctx, scratch, props)
        try:
            _record(ctx, scratch_oid=self.swapper.oids(db).get(scratch))
            ctx.step("created")
            engine.load(
                db, scratch, open_archive, no_owner=ctx.no_owner, no_privileges=ctx.no_privileges
            )
            ctx.step("loaded")
            statements, notes = catalog.apply_statements(
                scratch,
                props,
                no_owner=ctx.no_owner,
                no_privileges=ctx.no_privileges,
                roles=roles,
                fresh=True,
            )
            ctx.notes += notes
            engine.script(db, statements, admin)
            ctx.step("properties-set")
        except BaseException:
            self.swapper.drop_scratch(db, ctx, scratch)
            raise
        self.swapper.swap(db, ctx, scratch, previous)

    def _create_scratch(
        self, db: DbParams, ctx: RestoreContext, scratch: str, props: dict[str, Any]
    ) -> None:
        """The scratch database with the archive's encoding and locale (nothing to undo if
        the server refuses: the journal is closed)."""
        try:
            self.engine.create_database(db, scratch, props)
        except CommandFailed as exc:
            _record(ctx, phase="done")
            raise CommandFailed(
                f"cannot create the scratch database {scratch} with the archive's encoding and"
                f" locale: {exc.message}",
                "install the locale on this server, or restore with --in-place",
            ) from None


def _in_place_statements(
    db: DbParams,
    ctx: RestoreContext,
    props: dict[str, Any],
    live: dict[str, Any],
    me: Mapping[str, Any],
    roles: set[str],
) -> list[str]:
    """The SQL giving the live database the archive's properties, as far as this role may;
    what it may not change is said in the notes."""
    user = str(me.get("user"))
    may_own = bool(me.get("super")) or (bool(me.get("createdb")) and props.get("owner") in roles)
    target = dict(props)
    if not may_own and props.get("owner") != live.get("owner"):
        ctx.notes.append(
            f"the database's owner stays {live.get('owner')} (only a role with CREATEDB"
            " may change it)"
        )
        target["owner"] = live.get("owner")
    setters = roles | {user} if me.get("super") else {user}
    statements, notes = catalog.apply_statements(
        db.name,
        target,
        no_owner=ctx.no_owner,
        no_privileges=ctx.no_privileges,
        roles=roles | {user},
        fresh=False,
        current_acl=live.get("acl"),
        current_role_settings=live.get("role_settings"),
        role_setters=setters,
    )
    ctx.notes += notes
    if props.get("encoding") != live.get("encoding") or props.get("collate") != live.get("collate"):
        ctx.notes.append(
            f"{db.name} keeps its encoding {live.get('encoding')} and locale"
            f" {live.get('collate')}"
            f" (the archive's: {props.get('encoding')}, {props.get('collate')}); an in-place"
            " restore cannot change them"
        )
    return statements


@dataclasses.dataclass
class _Problems:
    """What the restoring role could not recreate, one line per cause, and the fixes."""

    user: str
    superuser: bool
    items: list[str] = dataclasses.field(default_factory=list)
    missing: set[str] = dataclasses.field(default_factory=set)
    not_member: set[str] = dataclasses.field(default_factory=set)

    def owners(
        self,
        props: Mapping[str, Any],
        scanned: Mapping[str, Any],
        roles: Mapping[str, bool],
        in_place: bool,
    ) -> None:
        owners: dict[str, list[str]] = dict(scanned.get("owners") or {})
        if isinstance(props.get("owner"), str) and not in_place:
            owners.setdefault(str(props["owner"]), []).insert(0, "the database")
        for role, objects in sorted(owners.items()):
            if role not in roles:
                self.missing.add(role)
                self.items.append(f"{', '.join(objects)} owned by {role}: no such role here")
            elif not roles[role] and not self.superuser:
                self.not_member.add(role)
                self.items.append(
                    f"{', '.join(objects)} owned by {role}: {self.user} is not a member"
                )

    def grantees(
        self, props: Mapping[str, Any], scanned: Mapping[str, Any], roles: Mapping[str, bool]
    ) -> None:
        grantees: dict[str, list[str]] = dict(scanned.get("grantees") or {})
        for item in props.get("acl") or []:
            if item and item[0] != "PUBLIC":
                grantees.setdefault(str(item[0]), []).append("the database")
        for role, objects in sorted(grantees.items()):
            if role not in roles:
                self.missing.add(role)
                self.items.append(f"privileges on {', '.join(objects)} for {role}: no such role")

    def extensions(self, wanted: list[str], found: Mapping[str, Any], in_place: bool) -> None:
        for name in wanted:
            info = found.get(name)
            if info is None:
                self.items.append(f"extension {name}: not installed on this server")
            elif not info.get("trusted") and not (in_place and info.get("kept")):
                self.items.append(f"extension {name}: untrusted, only a superuser may create it")

    def refusal(self) -> RestoreRefused:
        fixes = []
        if self.missing:
            fixes.append("create the missing roles (" + ", ".join(sorted(self.missing)) + ")")
        if self.not_member:
            fixes.append(
                f"restore as a superuser or as a member of {', '.join(sorted(self.not_member))}"
            )
        flags = [
            f
            for f, on in (
                ("--no-owner", owners_flag(self.items)),
                ("--no-privileges", privileges_flag(self.items)),
            )
            if on
        ]
        if flags:
            fixes.append(f"or pass {' / '.join(flags)} to restore without them")
        return RestoreRefused(
            f"{self.user} cannot restore the archive as it was: {_listed(self.items)}; nothing"
            " was changed",
            "; ".join(fixes) or "restore as a superuser",
        )


def owners_flag(problems: list[str]) -> bool:
    return any(" owned by " in p for p in problems)


def privileges_flag(problems: list[str]) -> bool:
    return any(p.startswith("privileges on ") for p in problems)
