"""The MariaDB swap: a fully loaded scratch schema becomes the live one.

1. One script drops the live tables' triggers (triggers cannot follow a table into another
   schema; their definitions are in the journal) and runs the one ``RENAME TABLE`` that
   moves every live table (and sequence) out to the previous schema and every restored one
   in. InnoDB's foreign key names are unique per schema, so the old tables must leave in
   the same statement that brings the new ones in.
2. One script sets the schema's character set and collation, points the restored sequence
   defaults at the live schema, and replaces the triggers, views, routines and events by
   the archive's.

A run that fails before step 2 has completed is undone: the same RENAME backwards, and the
old objects created again from their saved definitions (the restore refuses beforehand
when this account could not create them as they were, unless told it may define them
itself). A run killed after step 1 is finished by the next one. Then the previous schema
gets the old triggers, views, routines and events (events disabled) and the scratch schema
is dropped. Every step is idempotent: what was done is found out by looking at the server.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from opskit.engines.mysql.catalog import (
    Definition,
    Sql,
    charset_of,
    create_all,
    drop,
    ident,
    names,
    objects,
    point_defaults,
    schemas,
    script,
    sequence_defaults,
    tables,
    triggers,
)
from opskit.errors import OpsError

MAX_NAME = 64  # characters in a MariaDB schema or table name
LOCK_WAIT = 60  # seconds a swap statement waits for the site's open transactions
_WAIT = f"SET SESSION lock_wait_timeout = {LOCK_WAIT}"


def derived_name(name: str, tag: str) -> str:
    """``<name><tag>``, shortening ``name`` so that the result fits in 64 characters."""
    return name[: MAX_NAME - len(tag)] + tag


def free_name(taken: set[str], name: str, tag: str) -> str:
    """The first of ``<name><tag>``, ``<name><tag>_2``... that no schema has (any letter case)."""
    lower = {t.lower() for t in taken}
    for n in range(1, 1000):
        candidate = derived_name(name, tag if n == 1 else f"{tag}_{n}")
        if candidate.lower() not in lower:
            return candidate
    raise OpsError(f"no free name like {derived_name(name, tag)}", "drop old restore schemas")


@dataclasses.dataclass
class Facts:
    """What a swap needs to be finished or undone; kept in the restore journal."""

    live: str
    scratch: str
    previous: str
    restored: list[str]  # tables (and sequences) of the scratch schema
    old: list[str]  # tables (and sequences) of the live schema
    new_triggers: list[Definition]
    new_objects: list[Definition]  # views, routines, events of the archive
    old_triggers: list[Definition]
    old_objects: list[Definition]
    charset: tuple[str, str]  # the archive's (character set, collation)
    old_charset: tuple[str, str]
    current_user_fallback: bool  # may objects be created as this account when theirs fails
    exact_undo: bool = True  # could an undo create every dropped object with its definer
    # [table, column, default] of restored columns whose default names a scratch sequence
    new_defaults: list[list[str]] = dataclasses.field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("new_triggers", "new_objects", "old_triggers", "old_objects"):
            data[key] = [d.as_json() for d in getattr(self, key)]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Facts:
        values = {f.name: data[f.name] for f in dataclasses.fields(cls)}
        for key in ("new_triggers", "new_objects", "old_triggers", "old_objects"):
            values[key] = [Definition.from_json(d) for d in data[key]]
        values["charset"] = tuple(data["charset"])
        values["old_charset"] = tuple(data["old_charset"])
        return cls(**values)


def gather(
    run: Sql,
    live: str,
    scratch: str,
    previous: str,
    charset: tuple[str, str],
    fallback: bool,
    may_define: Callable[[str], bool],
) -> tuple[Facts, list[str]]:
    """Read both schemas' catalogs; return the facts and the routines that cannot be read.
    ``may_define(definer)``: may this account create an object with that definer?"""
    restored = tables(run, scratch)
    new_objects, unreadable_new = objects(run, scratch)
    old_objects, unreadable_old = objects(run, live)
    facts = Facts(
        live=live,
        scratch=scratch,
        previous=previous,
        restored=restored,
        old=tables(run, live),
        new_triggers=triggers(run, scratch),
        new_objects=new_objects,
        old_triggers=triggers(run, live),
        old_objects=old_objects,
        charset=charset if all(charset) else charset_of(run, scratch),
        old_charset=charset_of(run, live),
        current_user_fallback=fallback,
    )
    facts.exact_undo = all(may_define(d.definer) for d in facts.old_triggers + old_objects)
    facts.new_defaults = sequence_defaults(run, scratch, scratch)
    problems = [f"{w} in the archive" for w in unreadable_new]
    problems += [f"{w} in {live}" for w in unreadable_old]
    return facts, problems


class Swap:
    """Carry out, finish or undo one swap; ``step`` records each completed step."""

    def __init__(
        self, run: Sql, facts: Facts, step: Callable[[str], None], created_previous: bool = False
    ) -> None:
        self.run = run
        self.facts = facts
        self.step = step
        self.created_previous = created_previous
        self.window: tuple[float, float] | None = None
        self.notes: list[str] = []
        self.replaced = False

    # --- the forward path ------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the previous schema and empty the scratch schema of triggers (not live)."""
        f = self.facts
        self.run(f"CREATE DATABASE {ident(f.previous)}{_charset_clause(f.old_charset)}", "")
        self.created_previous = True
        self.step("previous-created")
        drops = [d.drop() for d in f.new_triggers]
        if drops:
            self.run(script(drops), f.scratch)
        self.step("scratch-triggers-dropped")

    def rename(self) -> None:
        """Old tables out, restored tables in: after this, the restored tables are live."""
        f = self.facts
        L, S, P = ident(f.live), ident(f.scratch), ident(f.previous)
        pairs = [f"{L}.{ident(t)} TO {P}.{ident(t)}" for t in f.old]
        pairs += [f"{S}.{ident(t)} TO {L}.{ident(t)}" for t in f.restored]
        statements = [_WAIT, *(d.drop() for d in triggers(self.run, f.live, on=f.old))]
        if pairs:
            statements.append("RENAME TABLE " + ", ".join(pairs))
        self._mark()
        self.run(script(statements), f.live)
        self._mark()
        self.step("renamed")

    def replace_objects(self, fresh: bool = False) -> None:
        """Give the live schema the archive's charset, triggers, views, routines and events.

        ``fresh``: right after the RENAME of this run, the live schema holds what the facts
        say (no query needed inside the swap window); otherwise it is looked at.
        """
        f = self.facts
        statements = [_WAIT]
        if all(f.charset):
            statements.append(f"ALTER DATABASE{_charset_clause(f.charset)}")
        if fresh:
            defaults = f.new_defaults
            present = [d.drop() for d in f.old_objects]  # old triggers went with the RENAME
        else:
            defaults = sequence_defaults(self.run, f.live, f.scratch)
            # The old views, routines and events, or part of the archive's after an
            # interrupted attempt.
            present = [d.drop() for d in triggers(self.run, f.live)]
            present += [drop(kind, n) for kind, n in names(self.run, f.live) if kind != "table"]
        statements += point_defaults(defaults, f.scratch, f.live)
        statements += present
        collation = f.charset[1] or f.old_charset[1]
        statements += create_all(f.new_triggers, collation)
        statements += create_all(f.new_objects, collation)
        self._mark()
        self.run(script(statements), f.live)
        self._mark()
        self.replaced = True
        self.step("objects-replaced")

    def fill_previous(self) -> None:
        """Give the previous schema the old triggers, views, routines and events (events
        disabled, so that they do not run there), where this account may create them."""
        f = self.facts
        present = set(names(self.run, f.previous))
        present |= {(d.kind, d.name) for d in triggers(self.run, f.previous)}
        wanted = [d for d in f.old_triggers + f.old_objects if (d.kind, d.name) not in present]
        missing = self._create_where_possible(wanted, f.previous, f.old_charset[1])
        statements = [_WAIT]
        sequences = [ident(f.live) + "." + ident(t) for t in f.old]
        defaults = [
            d
            for d in sequence_defaults(self.run, f.previous, f.live)
            if any(s in d[2] for s in sequences)
        ]
        statements += point_defaults(defaults, f.live, f.previous)
        statements += [
            f"ALTER EVENT {ident(d.name)} DISABLE"
            for d in f.old_objects
            if d.kind == "event" and f"event {d.name}" not in missing
        ]
        if len(statements) > 1:
            self.run(script(statements), f.previous)
        if missing:
            self.notes.append(
                f"the previous schema {f.previous} lacks {', '.join(missing)}: this account may"
                " not create them"
            )
        self.step("previous-filled")

    def drop_scratch(self) -> None:
        self.run(f"DROP DATABASE IF EXISTS {ident(self.facts.scratch)}", "")
        self.step("scratch-dropped")

    # --- undo ------------------------------------------------------------------------------

    def renamed(self) -> bool:
        """Has the RENAME happened? (It is atomic: all of it or none.)"""
        f = self.facts
        if f.scratch.lower() not in {s.lower() for s in schemas(self.run)}:
            return True
        if f.restored:
            return not (set(f.restored) & set(tables(self.run, f.scratch)))
        return bool(f.old) and not (set(f.old) & set(tables(self.run, f.live)))

    def undo(self) -> None:
        """Put the live schema back as it was; drop the scratch and the new previous schema."""
        f = self.facts
        if self.renamed():
            self._rename_back()
        present = {d.name for d in triggers(self.run, f.live)}
        lost = [d for d in f.old_triggers if d.name not in present]
        self._create_again(lost)
        self.run(f"DROP DATABASE IF EXISTS {ident(f.scratch)}", "")
        existing = {s.lower() for s in schemas(self.run)}
        if (
            self.created_previous
            and f.previous.lower() in existing
            and not names(self.run, f.previous)
        ):
            self.run(f"DROP DATABASE IF EXISTS {ident(f.previous)}", "")

    def _rename_back(self) -> None:
        f = self.facts
        L, S, P = ident(f.live), ident(f.scratch), ident(f.previous)
        current = {(d.kind, d.name): d for d in objects(self.run, f.live)[0]}
        keep = {key for key, d in current.items() if _same(d, f.old_objects)}
        in_live = set(tables(self.run, f.live))
        in_previous = set(tables(self.run, f.previous))
        statements = [_WAIT]
        statements += [d.drop() for d in triggers(self.run, f.live)]
        statements += [
            drop(kind, n)
            for kind, n in names(self.run, f.live)
            if kind != "table" and (kind, n) not in keep
        ]
        pairs = [f"{L}.{ident(t)} TO {S}.{ident(t)}" for t in f.restored if t in in_live]
        pairs += [f"{P}.{ident(t)} TO {L}.{ident(t)}" for t in f.old if t in in_previous]
        if pairs:
            statements.append("RENAME TABLE " + ", ".join(pairs))
        if all(f.old_charset):
            statements.append(f"ALTER DATABASE{_charset_clause(f.old_charset)}")
        self.run(script(statements), f.live)
        lost = [d for d in f.old_objects if (d.kind, d.name) not in keep]
        self._create_again(lost)

    # --- pieces ----------------------------------------------------------------------------

    def _create_again(self, lost: list[Definition]) -> None:
        """Create what the undo lost in the live schema again; refuse if any cannot be."""
        f = self.facts
        missing = self._create_where_possible(lost, f.live, f.old_charset[1])
        if missing:
            raise OpsError(
                f"the restore was undone, but {', '.join(missing)} could not be created again"
                f" in {f.live}",
                "create them by hand from the definitions kept in the restore journal",
            )

    def _create_where_possible(
        self, definitions: list[Definition], schema: str, collation: str
    ) -> list[str]:
        """Create each definition; when its definer is refused and the fallback is allowed,
        as this account. Return the ones that could not be created."""
        if not definitions:
            return []
        try:
            self.run(script(create_all(definitions, collation)), schema)
            return []
        except OpsError:
            pass  # one by one, to find out which
        missing = []
        for d in definitions:
            try:
                self.run(script([d.drop(), *d.create(collation)]), schema)
                continue
            except OpsError as exc:
                if not (self.facts.current_user_fallback and "1227" in exc.message):
                    missing.append(f"{d.kind} {d.name}")
                    continue
            try:
                self.run(script([d.drop(), *d.as_current_user().create(collation)]), schema)
                self.notes.append(f"{d.kind} {d.name} in {schema} is now defined by this account")
            except OpsError:
                missing.append(f"{d.kind} {d.name}")
        return missing

    def _mark(self) -> None:
        now = time.monotonic()
        self.window = (self.window[0], now) if self.window else (now, now)


def _same(current: Definition, old: list[Definition]) -> bool:
    """Is ``current`` one of the old objects, unchanged?"""
    return any(
        (d.kind, d.name, d.sql, d.definer, d.sql_mode)
        == (current.kind, current.name, current.sql, current.definer, current.sql_mode)
        for d in old
    )


def _charset_clause(charset: tuple[str, str]) -> str:
    cs, coll = charset
    return f" CHARACTER SET {cs} COLLATE {coll}" if cs and coll else ""
