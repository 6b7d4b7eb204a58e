"""The swap of a PostgreSQL restore, and what a killed one left.

The live database stops accepting connections, its sessions end (and are waited for),
and one transaction renames live -> ``<name>__pre_restore_<ts>`` and the loaded scratch
database -> live. The restore journal holds both OIDs, so the next run can tell from the
server whether the rename committed: then it finishes (connections allowed on the
previous database), else it undoes (connections allowed again, scratch dropped).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from opskit import logs
from opskit.engines.base import DbParams, Leftover, RestoreContext, leftover_kind
from opskit.engines.journal import Journal, JournalError
from opskit.engines.postgresql import catalog
from opskit.errors import CommandFailed, OpsError

if TYPE_CHECKING:
    from opskit.engines.postgresql import PostgreSQL

log = logs.get("engines")

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


class Swapper:
    """One PostgreSQL engine's swaps, recoveries and leftovers."""

    def __init__(self, engine: PostgreSQL) -> None:
        self.engine = engine

    def oids(self, db: DbParams) -> dict[str, int]:
        found = self.engine.query_json(
            db,
            "SELECT COALESCE(json_object_agg(datname, oid), '{}') FROM pg_database",
            self.engine.admin_db(db),
        )
        return {str(k): int(v) for k, v in (found or {}).items()}

    def drop_scratch(self, db: DbParams, ctx: RestoreContext, scratch: str) -> None:
        try:
            self.engine.drop_database(db, scratch, self.engine.admin_db(db))
        except OpsError as exc:
            log.error("restore_not_undone", database=db.alias, reason=exc.line())
            ctx.notes.append(f"the failed restore left {scratch}; the next opskit run drops it")
            return
        ctx.record(phase="done")
        ctx.notes.append(f"restore failed; {db.name} was left as it was")

    def swap(self, db: DbParams, ctx: RestoreContext, scratch: str, previous: str) -> None:
        engine, admin = self.engine, self.engine.admin_db(db)
        live_q, prev_q, scratch_q = (catalog.ident(n) for n in (db.name, previous, scratch))
        ctx.record(phase="swapping")
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
        except CommandFailed as exc:
            self.undo(db, ctx, scratch)
            if "being accessed by other users" not in exc.message:
                raise
            raise CommandFailed(
                f"{exc.message}; the swap was undone, {db.name} is as it was",
                f"end what holds {db.name} (a prepared transaction, or sessions this role may"
                " not end: GRANT pg_signal_backend to it), then restore again",
            ) from None
        except BaseException:
            self.undo(db, ctx, scratch)
            raise
        seconds = round(ended - started, 3)
        log.info("swap_window", database=db.alias, seconds=seconds, mode="swap")
        ctx.notes.append(f"{db.name} was unavailable for {seconds} s (swap window)")
        try:
            engine.sql(db, f"ALTER DATABASE {prev_q} WITH ALLOW_CONNECTIONS true", admin)
            ctx.step("previous-open")
        except OpsError as exc:
            ctx.notes.append(f"{previous} still refuses connections ({exc.line()})")
        self.drop_or_keep(db, ctx.notes, previous, ctx.drop_old)
        ctx.record(phase="done")

    def undo(self, db: DbParams, ctx: RestoreContext, scratch: str) -> None:
        """The swap failed before its rename committed: live as it was, scratch dropped."""
        try:
            journal = ctx.journal
            if journal is not None:
                ctx.notes.append(self.recover(db, journal))
                ctx.record(phase="done")
            else:
                self.engine.sql(
                    db,
                    f"ALTER DATABASE {catalog.ident(db.name)} WITH ALLOW_CONNECTIONS true",
                    self.engine.admin_db(db),
                )
                self.drop_scratch(db, ctx, scratch)
        except OpsError as exc:
            log.error("restore_not_undone", database=db.alias, reason=exc.line())
            ctx.notes.append(
                f"the stopped swap could not be undone ({exc.line()}); the next opskit run on"
                f" {db.alias!r} finishes or undoes it (or: opskit restore --recover)"
            )

    def drop_or_keep(self, db: DbParams, notes: list[str], previous: str, drop: bool) -> None:
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
        oids = self.oids(db)
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
            self.drop_or_keep(db, done, previous, bool(journal.get("drop_old")))
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
        for name in self.oids(db):
            kind = leftover_kind(name, db.name, lambda n: len(n.encode()) >= catalog.MAX_IDENT)
            if kind is not None:
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
