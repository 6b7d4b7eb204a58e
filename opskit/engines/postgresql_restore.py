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

import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opskit import archive, logs
from opskit.engines import postgresql_catalog as catalog
from opskit.engines.base import ArchiveDir, DbParams, Leftover, OpenArchive, RestoreContext
from opskit.engines.postgresql_dump import DumpScanner
from opskit.errors import CommandFailed, OpsError, RestoreRefused
from opskit.journal import Journal, JournalError

if TYPE_CHECKING:
    from opskit.engines.postgresql import PostgreSQL

log = logs.get("engines")

RESTORE_TAG = "__opskit_restore_"
PREVIOUS_TAG = "__pre_restore_"
_LEFTOVER = re.compile(
    r"^(?P<base>.*)(?P<tag>__opskit_restore_|__opskit_verify_|__pre_restore_)\d{14}(?:_\d+)?$"
)
# End the live database's sessions and wait until they are gone (a rename needs none).
_TERMINATE = """DO $opskit_swap$
BEGIN
  PERFORM pg_terminate_backend(pid) FROM pg_stat_activity
    WHERE datname = {name} AND pid <> pg_backend_pid();
  FOR i IN 1..1000 LOOP
    PERFORM pg_stat_clear_snapshot();  -- else the view holds its first reading
    EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_stat_activity
      WHERE datname = {name} AND pid <> pg_backend_pid());
    PERFORM pg_sleep(0.01);
  END LOOP;
END $opskit_swap$"""


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

    def _oids(self, db: DbParams) -> dict[str, int]:
        found = self.engine.query_json(
            db,
            "SELECT COALESCE(json_object_agg(datname, oid), '{}') FROM pg_database",
            self.engine.admin_db(db),
        )
        return {str(k): int(v) for k, v in (found or {}).items()}

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
        user, superuser = str(me.get("user")), bool(me.get("super"))
        problems: list[str] = []
        missing: set[str] = set()
        not_member: set[str] = set()
        if not ctx.no_owner:
            owners: dict[str, list[str]] = dict(scanned.get("owners") or {})
            if isinstance(props.get("owner"), str) and not in_place:
                owners.setdefault(str(props["owner"]), []).insert(0, "the database")
            for role, objects in sorted(owners.items()):
                if role not in roles:
                    missing.add(role)
                    problems.append(f"{', '.join(objects)} owned by {role}: no such role here")
                elif not roles[role] and not superuser:
                    not_member.add(role)
                    problems.append(f"{', '.join(objects)} owned by {role}: {user} is not a member")
        if not ctx.no_privileges:
            grantees: dict[str, list[str]] = dict(scanned.get("grantees") or {})
            for item in props.get("acl") or []:
                if item and item[0] != "PUBLIC":
                    grantees.setdefault(str(item[0]), []).append("the database")
            for role, objects in sorted(grantees.items()):
                if role not in roles:
                    missing.add(role)
                    problems.append(f"privileges on {', '.join(objects)} for {role}: no such role")
        if not superuser:
            for name, info in sorted(
                self._extensions(db, list(scanned.get("extensions") or [])).items()
            ):
                if not info.get("trusted") and not (in_place and info.get("kept")):
                    problems.append(f"extension {name}: untrusted, only a superuser may create it")
            absent = set(scanned.get("extensions") or []) - set(
                self._extensions(db, list(scanned.get("extensions") or []))
            )
            problems += [f"extension {n}: not installed on this server" for n in sorted(absent)]
        if not problems:
            return roles
        fixes = []
        if missing:
            fixes.append("create the missing roles (" + ", ".join(sorted(missing)) + ")")
        if not_member:
            fixes.append(
                f"restore as a superuser or as a member of {', '.join(sorted(not_member))}"
            )
        flags = [
            f
            for f, on in (
                ("--no-owner", owners_flag(problems)),
                ("--no-privileges", privileges_flag(problems)),
            )
            if on
        ]
        if flags:
            fixes.append(f"or pass {' / '.join(flags)} to restore without them")
        raise RestoreRefused(
            f"{user} cannot restore the archive as it was: {_listed(problems)}; nothing was"
            " changed",
            "; ".join(fixes) or "restore as a superuser",
        )

    # --- restore ---------------------------------------------------------------------------

    def restore(self, db: DbParams, open_archive: OpenArchive, ctx: RestoreContext) -> None:
        engine = self.engine
        live = engine.database_properties(db, db.name)
        if not live:
            raise RestoreRefused(
                f"{db.describe()} does not exist",
                f"create it first: psql -d postgres -c 'CREATE DATABASE {catalog.ident(db.name)}'",
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
        if (
            in_place
            and not me.get("super")
            and not self._roles(db, {str(live.get("owner"))}).get(str(live.get("owner")))
        ):
            raise RestoreRefused(
                f"{me.get('user')} may not create databases, and an in-place restore needs the"
                f" owner of {db.name} ({live.get('owner')}); nothing was changed",
                f"restore as {live.get('owner')}, or ALTER ROLE"
                f" {catalog.ident(str(me.get('user')))}"
                " CREATEDB (the safe path: a scratch database and a swap)",
            )
        roles = self._preflight(db, me, props, scanned, ctx, in_place)
        if in_place:
            self._in_place(db, open_archive, ctx, props, live, me, set(roles))
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
    ) -> None:
        user = str(me.get("user"))
        may_own = bool(me.get("super")) or (
            bool(me.get("createdb")) and props.get("owner") in roles
        )
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
        if props.get("encoding") != live.get("encoding") or props.get("collate") != live.get(
            "collate"
        ):
            ctx.notes.append(
                f"{db.name} keeps its encoding {live.get('encoding')} and locale"
                f" {live.get('collate')}"
                f" (the archive's: {props.get('encoding')}, {props.get('collate')}); an in-place"
                " restore cannot change them"
            )
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
        oids = self._oids(db)
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
        try:
            engine.create_database(db, scratch, props)
        except CommandFailed as exc:
            _record(ctx, phase="done")
            raise CommandFailed(
                f"cannot create the scratch database {scratch} with the archive's encoding and"
                f" locale: {exc.message}",
                "install the locale on this server, or restore with --in-place",
            ) from None
        try:
            _record(ctx, scratch_oid=self._oids(db).get(scratch))
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
            self._drop_scratch(db, ctx, scratch)
            raise
        self._swap(db, ctx, scratch, previous)

    def _drop_scratch(self, db: DbParams, ctx: RestoreContext, scratch: str) -> None:
        try:
            self.engine.drop_database(db, scratch, self.engine.admin_db(db))
        except OpsError as exc:
            log.error("restore_not_undone", database=db.alias, reason=exc.line())
            ctx.notes.append(f"the failed restore left {scratch}; the next opskit run drops it")
            return
        _record(ctx, phase="done")
        ctx.notes.append(f"restore failed; {db.name} was left as it was")

    def _swap(self, db: DbParams, ctx: RestoreContext, scratch: str, previous: str) -> None:
        engine, admin = self.engine, self.engine.admin_db(db)
        live_q, prev_q, scratch_q = (catalog.ident(n) for n in (db.name, previous, scratch))
        _record(ctx, phase="swapping")
        started = time.monotonic()
        try:
            engine.sql(db, f"ALTER DATABASE {live_q} WITH ALLOW_CONNECTIONS false", admin)
            ctx.step("connections-off")
            engine.script(
                db,
                [
                    _TERMINATE.format(name=catalog.literal(db.name)),
                    f"BEGIN; ALTER DATABASE {live_q} RENAME TO {prev_q};"
                    f" ALTER DATABASE {scratch_q} RENAME TO {live_q}; COMMIT",
                ],
                admin,
            )
            ended = time.monotonic()
            ctx.step("renamed")
        except BaseException:
            self._undo_swap(db, ctx, scratch)
            raise
        seconds = round(ended - started, 3)
        log.info("swap_window", database=db.alias, seconds=seconds, mode="swap")
        ctx.notes.append(f"{db.name} was unavailable for {seconds} s (swap window)")
        try:
            engine.sql(db, f"ALTER DATABASE {prev_q} WITH ALLOW_CONNECTIONS true", admin)
            ctx.step("previous-open")
        except OpsError as exc:
            ctx.notes.append(f"{previous} still refuses connections ({exc.line()})")
        self._drop_or_keep(db, ctx.notes, previous, ctx.drop_old)
        _record(ctx, phase="done")

    def _undo_swap(self, db: DbParams, ctx: RestoreContext, scratch: str) -> None:
        """The swap failed before its rename committed: live as it was, scratch dropped."""
        try:
            journal = ctx.journal
            if journal is not None:
                ctx.notes.append(self.recover(db, journal))
                _record(ctx, phase="done")
            else:
                self.engine.sql(
                    db,
                    f"ALTER DATABASE {catalog.ident(db.name)} WITH ALLOW_CONNECTIONS true",
                    self.engine.admin_db(db),
                )
                self._drop_scratch(db, ctx, scratch)
        except OpsError as exc:
            log.error("restore_not_undone", database=db.alias, reason=exc.line())
            ctx.notes.append(
                f"the stopped swap could not be undone ({exc.line()}); the next opskit run on"
                f" {db.alias!r} finishes or undoes it (or: opskit restore --recover)"
            )

    def _drop_or_keep(self, db: DbParams, notes: list[str], previous: str, drop: bool) -> None:
        if drop:
            try:
                self.engine.drop_database(db, previous, self.engine.admin_db(db))
                notes.append(f"dropped the previous database {previous}")
            except OpsError as exc:
                notes.append(f"restored, but {exc.line()}")
            return
        notes.append(
            f"the previous database is kept as {previous}; drop it when satisfied with:"
            f" {catalog.drop_command(previous)} (or restore with --drop-old)"
        )

    # --- recovery and leftovers ------------------------------------------------------------

    def recover(self, db: DbParams, journal: Journal) -> str:
        mode = journal.get("mode")
        if journal.phase in ("started", "done") or not mode:
            return f"the restore of {db.name} had not changed it; nothing to do"
        if mode == "in-place":
            return (
                f"the in-place restore of {db.name} was stopped; it ran in one transaction,"
                f" which either committed whole or rolled back: {db.name} is whole"
            )
        engine, admin = self.engine, self.engine.admin_db(db)
        scratch, previous = str(journal.get("scratch") or ""), str(journal.get("previous") or "")
        scratch_oid, live_oid = journal.get("scratch_oid"), journal.get("live_oid")
        oids = self._oids(db)
        live_q = catalog.ident(db.name)
        if scratch_oid is not None and oids.get(db.name) == scratch_oid:
            # The rename committed: the live name is the restored database. Finish.
            done: list[str] = []
            if previous in oids and oids[previous] == live_oid:
                engine.sql(
                    db,
                    f"ALTER DATABASE {catalog.ident(previous)} WITH ALLOW_CONNECTIONS true",
                    admin,
                )
                journal.done("previous-open")
            engine.sql(db, f"ALTER DATABASE {live_q} WITH ALLOW_CONNECTIONS true", admin)
            self._drop_or_keep(db, done, previous, bool(journal.get("drop_old")))
            return f"finished the stopped restore of {db.name}: it is restored; " + "; ".join(done)
        if db.name not in oids:
            raise JournalError(
                f"{journal.describe()}: {db.name} does not exist (before or after the swap)",
                f"inspect the server: {previous} and {scratch} may hold it",
            )
        engine.sql(db, f"ALTER DATABASE {live_q} WITH ALLOW_CONNECTIONS true", admin)
        dropped = "nothing"
        if scratch in oids and (scratch_oid is None or oids[scratch] == scratch_oid):
            engine.drop_database(db, scratch, admin)
            dropped = scratch
        return (
            f"undid the stopped restore of {db.name}: it is as it was and accepts connections;"
            f" dropped {dropped}"
        )

    def leftovers(self, db: DbParams) -> list[Leftover]:
        found = []
        for name in self._oids(db):
            match = _LEFTOVER.match(name)
            if not match or match["base"] != db.name[: len(match["base"])]:
                continue
            if match["base"] != db.name and len(name.encode()) < catalog.MAX_IDENT:
                continue  # only a full-length name is cut
            kind = "previous" if match["tag"] == PREVIOUS_TAG else "scratch"
            found.append((kind, name))
        if not found:
            return []
        values = ", ".join(catalog.literal(n) for _, n in found)
        sizes = (
            self.engine.query_json(
                db,
                "SELECT COALESCE(json_object_agg(datname, CASE WHEN has_database_privilege(oid,"
                " 'CONNECT') THEN pg_database_size(oid) END), '{}') FROM pg_database"
                f" WHERE datname = ANY(ARRAY[{values}]::text[])",
                self.engine.admin_db(db),
            )
            or {}
        )
        return [
            Leftover(kind, name, catalog.drop_command(name), sizes.get(name))
            for kind, name in found
        ]


def owners_flag(problems: list[str]) -> bool:
    return any(" owned by " in p for p in problems)


def privileges_flag(problems: list[str]) -> bool:
    return any(p.startswith("privileges on ") for p in problems)
