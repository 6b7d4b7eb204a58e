"""A PostgreSQL database's own properties (owner, ACL, settings, per-role settings,
connection limit, comment, encoding and locale) as recorded at backup time, and the SQL
that gives them to another database; the SQL that empties a database in place; quoting.

The properties live in the shared catalogs, keyed by the database's OID: a dump does not
hold them, and a database renamed into place does not inherit them. So a restore reads
them from the manifest and applies them to the scratch database before the swap.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

MAX_IDENT = 63  # PostgreSQL truncates longer identifiers silently; never let it.
# Settings whose value is a list of names (pg_dump quotes each element: GUC_LIST_QUOTE).
_LIST_SETTINGS = {
    "search_path",
    "temp_tablespaces",
    "session_preload_libraries",
    "shared_preload_libraries",
    "local_preload_libraries",
}


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def role_ident(name: str) -> str:
    return "PUBLIC" if name == "PUBLIC" else ident(name)


def conninfo_dbname(name: str) -> str:
    """A conninfo string naming ``name``, so that no database name reads as options."""
    return "dbname='" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def derived_name(name: str, tag: str) -> str:
    """``<name><tag>``, shortening ``name`` so the result fits in 63 bytes."""
    room = MAX_IDENT - len(tag.encode())
    short = name.encode()[:room].decode("utf-8", "ignore")
    return short + tag


def free_name(taken: set[str], name: str, tag: str) -> str:
    """The first of ``<name><tag>``, ``<name><tag>_2``... that no database has."""
    for n in range(1, 1000):
        candidate = derived_name(name, tag if n == 1 else f"{tag}_{n}")
        if candidate not in taken:
            return candidate
    raise ValueError(f"no free name like {derived_name(name, tag)}")


def sql_command(sql: str) -> str:
    """A shell command that runs ``sql`` on the maintenance database (quoted for sh)."""
    return "psql -d postgres -c " + shlex.quote(sql)


def drop_command(name: str) -> str:
    return sql_command(f"DROP DATABASE {ident(name)}")


def table_pattern(schema: str, table: str) -> str:
    """A pg_dump pattern matching exactly ``schema.table`` (quoted: no wildcards, any case)."""
    return f"{ident(schema)}.{ident(table)}"


# --- database properties -----------------------------------------------------------------

PROPERTIES_SQL = """
SELECT json_build_object(
  'row', to_jsonb(d) - 'datacl' - 'datfrozenxid' - 'datminmxid',
  'owner', pg_get_userbyid(d.datdba),
  'encoding', pg_encoding_to_char(d.encoding),
  'comment', shobj_description(d.oid, 'pg_database'),
  'acl', CASE WHEN d.datacl IS NULL THEN NULL ELSE COALESCE((
      SELECT json_agg(json_build_array(
          CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
          a.privilege_type, a.is_grantable) ORDER BY 1, 2)
      FROM aclexplode(d.datacl) a), '[]'::json) END,
  'settings', (SELECT to_json(s.setconfig) FROM pg_db_role_setting s
               WHERE s.setdatabase = d.oid AND s.setrole = 0),
  'role_settings', (SELECT json_object_agg(pg_get_userbyid(s.setrole), s.setconfig)
                    FROM pg_db_role_setting s
                    WHERE s.setdatabase = d.oid AND s.setrole <> 0))
FROM pg_database d WHERE d.datname = {name}
"""


def database_properties(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's ``database`` entry from the query's row (names the same on 12-17)."""
    row = raw.get("row") or {}
    provider = {"c": "libc", "i": "icu", "b": "builtin"}.get(str(row.get("datlocprovider", "c")))
    props: dict[str, Any] = {
        "owner": raw.get("owner"),
        "encoding": raw.get("encoding"),
        "collate": row.get("datcollate"),
        "ctype": row.get("datctype"),
        "locale_provider": provider or "libc",
        "icu_locale": row.get("daticulocale") or row.get("datlocale"),
        "icu_rules": row.get("daticurules"),
        "connection_limit": row.get("datconnlimit", -1),
        "comment": raw.get("comment"),
        "acl": raw.get("acl"),  # None: the default privileges
        "settings": raw.get("settings") or [],
        "role_settings": raw.get("role_settings") or {},
    }
    return props


def create_clause(props: Mapping[str, Any]) -> str:
    """ENCODING ... LOCALE_PROVIDER ... for CREATE DATABASE ... TEMPLATE template0."""
    parts = []
    if props.get("encoding"):
        parts.append(f"ENCODING {literal(str(props['encoding']))}")
    provider = props.get("locale_provider")
    if provider == "icu" and props.get("icu_locale"):
        parts.append(f"LOCALE_PROVIDER icu ICU_LOCALE {literal(str(props['icu_locale']))}")
        if props.get("icu_rules"):
            parts.append(f"ICU_RULES {literal(str(props['icu_rules']))}")
    elif provider == "builtin" and props.get("icu_locale"):
        parts.append(f"LOCALE_PROVIDER builtin BUILTIN_LOCALE {literal(str(props['icu_locale']))}")
    for key, word in (("collate", "LC_COLLATE"), ("ctype", "LC_CTYPE")):
        if props.get(key):
            parts.append(f"{word} {literal(str(props[key]))}")
    return " ".join(parts)


def _split_list(value: str) -> list[str]:
    """Split a list setting's stored text (``"$user", public``) into its elements."""
    items, current, quoted, i = [], "", False, 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == '"' and value[i + 1 : i + 2] == '"':
                current += '"'
                i += 1
            elif ch == '"':
                quoted = False
            else:
                current += ch
        elif ch == '"':
            quoted = True
        elif ch == ",":
            items.append(current.strip())
            current = ""
        else:
            current += ch
        i += 1
    items.append(current.strip())
    return [item for item in items if item]


def set_clause(entry: str) -> str:
    """``name=value`` as stored in pg_db_role_setting -> ``SET name TO ...`` (pg_dump's way)."""
    name, _, value = entry.partition("=")
    if name.lower() in _LIST_SETTINGS:
        elements = _split_list(value)
        return f"SET {ident(name)} TO " + (", ".join(literal(e) for e in elements) or "''")
    return f"SET {ident(name)} TO {literal(value)}"


def apply_statements(
    target: str,
    props: Mapping[str, Any],
    *,
    no_owner: bool,
    no_privileges: bool,
    roles: set[str],
    fresh: bool,
    current_acl: Sequence[Sequence[Any]] | None = None,
    current_role_settings: Mapping[str, Any] | None = None,
    role_setters: set[str] | None = None,
) -> tuple[list[str], list[str]]:
    """SQL giving ``target`` the recorded properties, and notes on what was left out.

    ``roles``: the roles that exist. ``fresh``: a new database (nothing to reset); else the
    live one, whose ACL and per-role settings are replaced (``current_*``).
    ``role_setters``: the roles whose per-role settings this role may change (None: all)."""
    apply = _Apply(
        ident(target),
        props,
        roles,
        fresh,
        no_owner,
        current_role_settings or {},
        role_setters,
    )
    # In the order PostgreSQL needs them: the owner before the privileges it holds.
    apply.owner()
    if not no_privileges:
        apply.acl(current_acl)
    apply.settings()
    apply.role_settings()
    apply.limit_and_comment()
    return apply.sql, apply.notes


@dataclasses.dataclass
class _Apply:
    """The statements (and notes) that give one database its recorded properties."""

    db: str  # quoted
    props: Mapping[str, Any]
    roles: set[str]
    fresh: bool
    no_owner: bool
    current_role_settings: Mapping[str, Any]
    role_setters: set[str] | None
    sql: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def owner(self) -> None:
        owner = self.props.get("owner")
        if not self.no_owner and isinstance(owner, str):
            if owner in self.roles:
                self.sql.append(f"ALTER DATABASE {self.db} OWNER TO {ident(owner)}")
            else:
                self.notes.append(
                    f"the database's owner {owner} does not exist here; left as it is"
                )

    def acl(self, current_acl: Sequence[Sequence[Any]] | None) -> None:
        """Replace the live database's ACL (unless it is already the one wanted)."""
        db, acl, owner = self.db, self.props.get("acl"), self.props.get("owner")
        if not self.fresh and _acl_key(acl) == _acl_key(current_acl):
            return
        if not self.fresh:
            grantees = {str(item[0]) for item in current_acl or []} | {"PUBLIC"}
            self.sql += [
                f"REVOKE ALL ON DATABASE {db} FROM {role_ident(g)}"
                for g in sorted(grantees)
                if g == "PUBLIC" or g in self.roles
            ]
            if acl is None:  # the defaults: CONNECT and TEMPORARY for PUBLIC
                self.sql.append(f"GRANT CONNECT, TEMPORARY ON DATABASE {db} TO PUBLIC")
        if not isinstance(acl, list):
            return
        if self.fresh:
            self.sql.append(f"REVOKE ALL ON DATABASE {db} FROM PUBLIC")
            if isinstance(owner, str) and owner in self.roles and not self.no_owner:
                self.sql.append(f"REVOKE ALL ON DATABASE {db} FROM {ident(owner)}")
        for grantee, privilege, grantable in acl:
            if grantee != "PUBLIC" and grantee not in self.roles:
                self.notes.append(f"{privilege} on the database for {grantee}: no such role")
                continue
            option = " WITH GRANT OPTION" if grantable else ""
            self.sql.append(f"GRANT {privilege} ON DATABASE {db} TO {role_ident(grantee)}{option}")

    def settings(self) -> None:
        if not self.fresh:
            self.sql.append(f"ALTER DATABASE {self.db} RESET ALL")
        self.sql += [
            f"ALTER DATABASE {self.db} {set_clause(e)}" for e in self.props.get("settings") or []
        ]

    def role_settings(self) -> None:
        """``ALTER ROLE ... IN DATABASE``: the wanted ones set, the others reset."""
        wanted = self.props.get("role_settings") or {}
        current = self.current_role_settings
        if not self.fresh:
            for role in sorted(set(current) - set(wanted)):
                if role in self.roles and self._settable(role, wanted):
                    self.sql.append(f"ALTER ROLE {ident(role)} IN DATABASE {self.db} RESET ALL")
        for role, entries in sorted(wanted.items()):
            if role not in self.roles:
                self.notes.append(f"settings of role {role} in the database: no such role")
                continue
            if not self._settable(role, wanted):
                continue
            prefix = f"ALTER ROLE {ident(role)} IN DATABASE {self.db}"
            if not self.fresh:
                self.sql.append(f"{prefix} RESET ALL")
            self.sql += [f"{prefix} {set_clause(e)}" for e in entries]

    def _settable(self, role: str, wanted: Mapping[str, Any]) -> bool:
        if self.role_setters is None or role in self.role_setters:
            return True
        if self.current_role_settings.get(role) != wanted.get(role):
            self.notes.append(
                f"settings of role {role} in the database: this role may not change them"
            )
        return False

    def limit_and_comment(self) -> None:
        limit = self.props.get("connection_limit")
        if isinstance(limit, int) and (limit != -1 or not self.fresh):
            self.sql.append(f"ALTER DATABASE {self.db} CONNECTION LIMIT {limit}")
        comment = self.props.get("comment")
        if comment is not None or not self.fresh:
            value = "NULL" if comment is None else literal(str(comment))
            self.sql.append(f"COMMENT ON DATABASE {self.db} IS {value}")


def _acl_key(acl: Any) -> Any:
    return None if acl is None else sorted(tuple(item) for item in acl)


def roles_named(props: Mapping[str, Any], scanned: Mapping[str, Any]) -> set[str]:
    """Every role the archive and its database properties name."""
    names: set[str] = set()
    for key in ("owners", "grantees"):
        names |= set(scanned.get(key) or {})
    if isinstance(props.get("owner"), str):
        names.add(props["owner"])
    names |= {str(item[0]) for item in props.get("acl") or [] if item and item[0] != "PUBLIC"}
    names |= set(props.get("role_settings") or {})
    return names


# --- emptying a database in place ---------------------------------------------------------

_USER_SCHEMA = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"
)


def _not_member(classid: str, oid: str, deptypes: str = "e") -> str:
    return (
        f"NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.classid = '{classid}'::regclass"
        f" AND dep.objid = {oid} AND dep.deptype IN ({', '.join(repr(d) for d in deptypes)}))"
    )


# Inside opskit's transaction, before the archive: drop every object this role may drop, so
# that the database afterwards holds exactly the archive's objects (the archive creates
# them again). The public schema itself stays (its OID is what pg_dump compares with).
WIPE_SQL = f"""DO $opskit_wipe$
DECLARE r record;
BEGIN
  FOR r IN SELECT format('DROP SCHEMA IF EXISTS %I CASCADE', n.nspname) AS s
      FROM pg_namespace n WHERE {_USER_SCHEMA} AND n.nspname <> 'public'
      AND pg_has_role(n.nspowner, 'USAGE') AND {_not_member("pg_namespace", "n.oid")}
  LOOP EXECUTE r.s; END LOOP;
  FOR r IN SELECT format('DROP EXTENSION IF EXISTS %I CASCADE', e.extname) AS s
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
      WHERE {_USER_SCHEMA} AND pg_has_role(e.extowner, 'USAGE')
  LOOP EXECUTE r.s; END LOOP;
  FOR r IN SELECT format('DROP %s IF EXISTS %I.%I CASCADE', CASE c.relkind
        WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE'
        WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, n.nspname, c.relname) AS s
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE {_USER_SCHEMA} AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
      AND pg_has_role(c.relowner, 'USAGE') AND {_not_member("pg_class", "c.oid", "eai")}
  LOOP EXECUTE r.s; END LOOP;
  FOR r IN SELECT format('DROP %s IF EXISTS %s CASCADE', CASE p.prokind WHEN 'a' THEN
        'AGGREGATE' WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.oid::regprocedure) AS s
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE {_USER_SCHEMA} AND pg_has_role(p.proowner, 'USAGE')
      AND {_not_member("pg_proc", "p.oid")}
  LOOP EXECUTE r.s; END LOOP;
  FOR r IN SELECT format('DROP %s IF EXISTS %I.%I CASCADE', CASE t.typtype WHEN 'd'
        THEN 'DOMAIN' ELSE 'TYPE' END, n.nspname, t.typname) AS s
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
      WHERE {_USER_SCHEMA} AND t.typtype IN ('c', 'd', 'e', 'r')
      AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
      AND pg_has_role(t.typowner, 'USAGE') AND {_not_member("pg_type", "t.oid", "eai")}
  LOOP EXECUTE r.s; END LOOP;
  PERFORM lo_unlink(l.oid) FROM pg_largeobject_metadata l
      WHERE pg_has_role(l.lomowner, 'USAGE');
END $opskit_wipe$;
"""


def reset_public_acl_sql() -> str:
    """Give the public schema back its initial privileges (the archive's are relative to them)."""
    return """DO $opskit_public$
DECLARE r record;
BEGIN
  IF NOT pg_has_role((SELECT nspowner FROM pg_namespace WHERE nspname = 'public'), 'USAGE') THEN
    RETURN;
  END IF;
  FOR r IN SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
      ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS who
      FROM pg_namespace n, aclexplode(n.nspacl) a WHERE n.nspname = 'public'
  LOOP EXECUTE 'REVOKE ALL ON SCHEMA public FROM ' || r.who; END LOOP;
  FOR r IN SELECT a.privilege_type AS what, CASE WHEN a.grantee = 0 THEN 'PUBLIC'
      ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS who
      FROM pg_init_privs i, aclexplode(i.initprivs) a
      WHERE i.classoid = 'pg_namespace'::regclass
      AND i.objoid = (SELECT oid FROM pg_namespace WHERE nspname = 'public')
  LOOP EXECUTE format('GRANT %s ON SCHEMA public TO %s', r.what, r.who); END LOOP;
END $opskit_public$;
"""


def exclusion_sql(names: Sequence[str]) -> str:
    """The tables each EXCLUDE_TABLE_DATA name means: exactly that table name (any schema)
    or exactly ``schema.table``; never a pattern."""
    values = ", ".join(literal(n) for n in names)
    return (
        "SELECT COALESCE(json_agg(json_build_array(v.name, n.nspname, c.relname)"
        " ORDER BY n.nspname, c.relname), '[]'::json)"
        f" FROM unnest(ARRAY[{values}]::text[]) AS v(name)"
        " JOIN pg_class c ON c.relkind IN ('r', 'p', 'm', 'f')"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {_USER_SCHEMA} AND (c.relname = v.name OR n.nspname || '.' || c.relname = v.name)"
    )
