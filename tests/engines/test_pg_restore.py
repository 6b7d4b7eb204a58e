"""PostgreSQL restores bring back exactly what was backed up: rows, catalog, owners,
privileges and the database's own properties; in place as one transaction."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.pg_state import (
    Backup,
    archive_with,
    backup,
    content_of,
    databases,
    diff,
    ident,
    name,
    params,
    restore,
    scratch_server_objects,
    sql,
    state,
)
from support.project import SUNDAY

from opskit.backup import run_backup
from opskit.config import Config
from opskit.engines.postgresql import PostgreSQL
from opskit.errors import ArchiveError, CommandFailed, RestoreRefused
from opskit.report import Report
from opskit.restore import restore_archive
from opskit.restoretest import expected_counts


@dataclasses.dataclass
class Site:
    db: str
    app: str  # owns the database and most objects; no CREATEDB
    reader: str  # a read-only reporting role
    other: str  # owns one table


def build(site: Site, other_owner: bool = True, rows: int = 1000) -> None:
    db, app, reader, other = site.db, ident(site.app), ident(site.reader), ident(site.other)
    sql(
        f"CREATE SCHEMA app AUTHORIZATION {app};\n"
        f"SET ROLE {app};\n"
        "CREATE TABLE public.item (id serial PRIMARY KEY, name text NOT NULL, price numeric);\n"
        "INSERT INTO public.item (name, price)"
        f" SELECT 'n' || g, g FROM generate_series(1, {rows}) g;\n"
        "CREATE TABLE app.secret (id int PRIMARY KEY, s text, hidden text);\n"
        "INSERT INTO app.secret SELECT g, 's' || g, 'h' || g FROM generate_series(1, 50) g;\n"
        "CREATE VIEW public.item_view AS SELECT id, name FROM public.item;\n"
        "CREATE FUNCTION public.plus(x int) RETURNS int LANGUAGE sql AS 'SELECT x + 1';\n"
        "CREATE SEQUENCE public.counter; SELECT setval('public.counter', 42);\n"
        "COMMENT ON TABLE public.item IS 'the items';\n"
        # A body whose own lines read like pg_dump's transaction lines; a large object,
        # which pg_dump writes between BEGIN; and COMMIT; of its own.
        "CREATE PROCEDURE public.tidy() LANGUAGE plpgsql AS $$\nBEGIN\nCOMMIT;\nEND;\n$$;\n"
        "SELECT lo_from_bytea(0, 'a large object'::bytea);\n"
        f"GRANT USAGE ON SCHEMA app TO {reader};\n"
        f"GRANT SELECT ON public.item, public.item_view TO {reader};\n"
        f"GRANT SELECT (id, s) ON app.secret TO {reader};\n"
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT SELECT ON TABLES TO {reader};\n"
        "RESET ROLE;\n"
        + (
            f"CREATE TABLE public.theirs (id int); ALTER TABLE public.theirs OWNER TO {other};\n"
            "INSERT INTO public.theirs VALUES (1), (2);\n"
            if other_owner
            else ""
        ),
        db,
    )
    d = ident(db)
    sql(
        f"REVOKE CONNECT, TEMPORARY ON DATABASE {d} FROM PUBLIC;\n"
        f"GRANT CONNECT ON DATABASE {d} TO {reader};\n"
        f"ALTER DATABASE {d} SET work_mem = '8MB';\n"
        f'ALTER DATABASE {d} SET search_path = "$user", app, public;\n'
        f"ALTER ROLE {reader} IN DATABASE {d} SET statement_timeout = '5s';\n"
        f"ALTER DATABASE {d} CONNECTION LIMIT 50;\n"
        f"COMMENT ON DATABASE {d} IS 'the shop''s data';\n"
    )


def change(site: Site) -> None:
    """What happens after the backup: new objects, other rows, other properties."""
    d = ident(site.db)
    sql(
        f"SET ROLE {ident(site.app)};\n"
        "CREATE TABLE public.after_backup (id int);\n"
        "CREATE SCHEMA later;\n"
        "CREATE TABLE later.t (id int);\n"
        "CREATE FUNCTION public.later_fn() RETURNS int LANGUAGE sql AS 'SELECT 1';\n"
        "UPDATE public.item SET price = price * 2 WHERE id < 100;\n"
        "DELETE FROM app.secret WHERE id > 40;\n"
        "DROP VIEW public.item_view;\n"
        "SELECT setval('public.counter', 1000);\n"
        f"REVOKE SELECT ON public.item FROM {ident(site.reader)};\n"
        "RESET ROLE;\n",
        site.db,
    )
    sql(
        f"GRANT CONNECT, TEMPORARY ON DATABASE {d} TO PUBLIC;\n"
        f"ALTER DATABASE {d} RESET work_mem;\n"
        f"ALTER DATABASE {d} CONNECTION LIMIT 7;\n"
        f"COMMENT ON DATABASE {d} IS 'changed';\n"
        f"ALTER ROLE {ident(site.reader)} IN DATABASE {d} RESET ALL;\n"
    )


@pytest.fixture
def site(pg_server: None) -> Iterator[Site]:
    s = Site(name(), name("opskit_app"), name("opskit_reader"), name("opskit_other"))
    with scratch_server_objects(s.app, s.reader, s.other, dbs=(s.db,)):
        sql(f"CREATE ROLE {ident(s.app)} LOGIN NOCREATEDB")
        sql(f"CREATE ROLE {ident(s.reader)} LOGIN")
        sql(f"CREATE ROLE {ident(s.other)}")
        sql(f"CREATE DATABASE {ident(s.db)} OWNER {ident(s.app)}")
        yield s


def derived(db: str) -> list[str]:
    return [d for d in databases(db) if d != db]


def test_a_swap_restore_brings_back_owners_privileges_and_database_properties(
    site: Site, tmp_path: Path
) -> None:
    build(site)
    before = state(site.db)
    good = backup(params(site.db), tmp_path / "b")
    change(site)
    assert state(site.db) != before
    ctx = restore(params(site.db), good, tmp_path)
    after = state(site.db)
    assert diff(before, after) == {}
    assert any("swap window" in n for n in ctx.notes)
    assert (
        sql("SELECT datallowconn FROM pg_database WHERE datname = current_database()", site.db)
        == "t"
    )
    # The reader reads what it could, and only that.
    assert sql("SELECT count(*) FROM public.item", site.db, user=site.reader) == "1000"
    with pytest.raises(RuntimeError, match="permission denied"):
        sql("SELECT hidden FROM app.secret", site.db, user=site.reader)
    previous = derived(site.db)
    assert len(previous) == 1
    assert "__pre_restore_" in previous[0]
    assert [x.kind for x in PostgreSQL().leftovers(params(site.db))] == ["previous"]


def test_the_role_without_createdb_restores_in_place_exactly(site: Site, tmp_path: Path) -> None:
    build(site, other_owner=False)
    before = state(site.db)
    good = backup(params(site.db, site.app), tmp_path / "b")
    change(site)
    ctx = restore(params(site.db, site.app), good, tmp_path)
    after = state(site.db)
    # An ordinary role may not set another role's settings: said, and the rest is exact.
    assert f"settings of role {site.reader} in the database: this role may not" in ctx.notes[0]
    before["database"]["settings"].pop(site.reader)
    assert diff(before, after) == {}  # after_backup, later.*, later_fn are gone
    assert any("in place in one transaction" in n for n in ctx.notes)
    assert derived(site.db) == []


def test_in_place_bad_sql_at_the_end_rolls_everything_back(site: Site, tmp_path: Path) -> None:
    build(site, other_owner=False)
    good = backup(params(site.db, site.app), tmp_path / "b")
    content = content_of(good)
    bad = archive_with(content + b"INSERT INTO nowhere VALUES (1);\n", tmp_path / "bad", good)
    change(site)
    before = state(site.db)
    with pytest.raises(CommandFailed) as failed:
        restore(params(site.db, site.app), bad, tmp_path)
    assert 'relation "nowhere" does not exist' in failed.value.line()
    assert "LINE 1" in failed.value.line()
    assert "truncated or corrupt" not in failed.value.line()
    assert state(site.db) == before


@pytest.mark.parametrize("cut", ["stream", "content"])
def test_in_place_a_cut_archive_commits_nothing(site: Site, tmp_path: Path, cut: str) -> None:
    build(site, other_owner=False, rows=20000)
    good = backup(params(site.db, site.app), tmp_path / "b")
    change(site)
    before = state(site.db)
    if cut == "stream":  # the file cut: the decompressor fails at its end
        broken = tmp_path / "cut.sql.zst"
        broken.write_bytes(good.path.read_bytes()[: good.path.stat().st_size // 2])
        archive = Backup(broken, good.manifest)
    else:  # a whole zstd file of half a dump, with a manifest that matches it
        content = content_of(good)
        archive = archive_with(content[: len(content) // 2], tmp_path / "half", good)
    with pytest.raises((ArchiveError, CommandFailed)):
        restore(params(site.db, site.app), archive, tmp_path)
    assert state(site.db) == before


def test_owners_the_role_cannot_take_are_named_before_anything_changes(
    site: Site, tmp_path: Path
) -> None:
    build(site)  # public.theirs is owned by another role, of which app is not a member
    good = backup(params(site.db), tmp_path / "b")
    change(site)
    before = state(site.db)
    with pytest.raises(RestoreRefused) as refused:
        restore(params(site.db, site.app), good, tmp_path)
    line = refused.value.line()
    assert f"TABLE public.theirs owned by {site.other}" in line
    assert "--no-owner" in line
    assert "nothing was changed" in line
    assert state(site.db) == before
    # With --no-owner it restores; the table is the app's now, the rest as it was.
    restore(params(site.db, site.app), good, tmp_path, no_owner=True)
    assert sql("SELECT tableowner FROM pg_tables WHERE tablename = 'theirs'", site.db) == site.app
    assert sql("SELECT count(*) FROM public.after_backup", site.db, check=False) == ""


def test_a_missing_grantee_is_refused_and_no_privileges_restores_without_it(
    site: Site, tmp_path: Path
) -> None:
    build(site)
    good = backup(params(site.db), tmp_path / "b")
    ghost = site.reader
    sql(f"DROP OWNED BY {ident(ghost)}", site.db)
    sql(f"ALTER ROLE {ident(ghost)} RESET ALL")
    sql(f"ALTER ROLE {ident(ghost)} IN DATABASE {ident(site.db)} RESET ALL")
    sql(f"REVOKE ALL ON DATABASE {ident(site.db)} FROM {ident(ghost)}")
    sql(f"DROP ROLE {ident(ghost)}")
    before = state(site.db)
    with pytest.raises(RestoreRefused) as refused:
        restore(params(site.db), good, tmp_path)
    assert f"for {ghost}: no such role" in refused.value.line()
    assert "--no-privileges" in refused.value.line()
    assert state(site.db) == before
    ctx = restore(params(site.db), good, tmp_path, no_privileges=True)
    assert sql("SELECT count(*) FROM public.item", site.db) == "1000"
    assert any("no such role" in n for n in ctx.notes)


def test_an_icu_database_keeps_its_locale_and_sort_order(pg_server: None, tmp_path: Path) -> None:
    db = name()
    with scratch_server_objects(dbs=(db,)):
        sql(
            f"CREATE DATABASE {ident(db)} TEMPLATE template0 LOCALE_PROVIDER icu"
            " ICU_LOCALE 'de-u-co-phonebk' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'"
        )
        sql(
            "CREATE TABLE w (v text); INSERT INTO w VALUES ('Müller'), ('Mueller'), ('Muff'),"
            " ('Mull'), ('Mütze');",
            db,
        )
        order = sql("SELECT string_agg(v, ',' ORDER BY v) FROM w", db)
        before = state(db)
        good = backup(params(db), tmp_path / "b")
        sql("DROP TABLE w", db)
        restore(params(db), good, tmp_path)
        assert state(db) == before
        assert before["database"]["provider"] == "i"
        assert before["database"]["icu_locale"] == "de-u-co-phonebk"
        assert sql("SELECT string_agg(v, ',' ORDER BY v) FROM w", db) == order


def test_a_sql_ascii_database_with_byte_fc_backs_up_and_restores(
    pg_server: None, tmp_path: Path
) -> None:
    db = name()
    with scratch_server_objects(dbs=(db,)):
        sql(
            f"CREATE DATABASE {ident(db)} TEMPLATE template0 ENCODING 'SQL_ASCII'"
            " LC_COLLATE 'C' LC_CTYPE 'C'"
        )
        sql("CREATE TABLE city (name text); INSERT INTO city VALUES (E'M\\374nchen');", db)
        raw = sql("SELECT encode(name::bytea, 'hex') FROM city", db)
        assert raw == "4dfc6e6368656e"
        before = state(db)
        good = backup(params(db), tmp_path / "b")
        assert good.manifest["properties"]["database"]["encoding"] == "SQL_ASCII"
        sql("DELETE FROM city", db)
        restore(params(db), good, tmp_path)
        assert state(db) == before
        assert sql("SELECT encode(name::bytea, 'hex') FROM city", db) == raw


@pytest.mark.parametrize("prefix", ["-A", "--help", "-v"])
def test_a_name_that_looks_like_an_option_is_only_that_database(
    pg_server: None, tmp_path: Path, prefix: str
) -> None:
    db, neighbour = f"{prefix}{name('x')}", name()
    with scratch_server_objects(dbs=(db, neighbour)):
        sql(f"CREATE DATABASE {ident(db)}")
        sql(f"CREATE DATABASE {ident(neighbour)}")
        sql("CREATE TABLE mine (v int); INSERT INTO mine VALUES (1), (2);", db)
        sql("CREATE TABLE theirs (v int); INSERT INTO theirs VALUES (3);", neighbour)
        before, theirs = state(db), state(neighbour)
        good = backup(params(db), tmp_path / "b")
        content = content_of(good)
        assert b"CREATE TABLE public.mine" in content
        assert b"theirs" not in content
        assert b"\\connect" not in content
        assert b"CREATE DATABASE" not in content
        sql("DELETE FROM mine", db)
        restore(params(db), good, tmp_path, in_place=prefix == "-v")
        assert state(db) == before
        assert state(neighbour) == theirs


def test_excluded_table_data_names_exactly_those_tables(pg_server: None, tmp_path: Path) -> None:
    db = name()
    odd = ["Sessions_Secret", "a.b", 'q"uote', "*", "?"]
    decoys = ["sessions_secret", "x", "ab", "keep"]
    with scratch_server_objects(dbs=(db,)):
        sql(f"CREATE DATABASE {ident(db)}")
        sql("CREATE SCHEMA a", db)
        for table in [*odd, *decoys, "a.b_in_schema"]:
            target = "a.b" if table == "a.b_in_schema" else f"public.{ident(table)}"
            sql(f"CREATE TABLE {target} (v int); INSERT INTO {target} VALUES (1);", db)
        good = backup(params(db), tmp_path / "b", exclude=(*odd, "nope"))
        excluded = good.manifest["properties"]["excluded_tables"]
        # "a.b" is the table called a.b and the table b of schema a: both exact readings.
        assert sorted(excluded) == sorted(["a.b", *(f"public.{t}" for t in odd)])
        assert good.manifest["properties"]["excluded_not_found"] == ["nope"]
        sql("DROP SCHEMA a CASCADE; DROP SCHEMA public CASCADE; CREATE SCHEMA public;", db)
        restore(params(db), good, tmp_path, drop_old=True)
        counts = {t: sql(f"SELECT count(*) FROM public.{ident(t)}", db) for t in [*odd, *decoys]}
        assert counts == {**{t: "0" for t in odd}, **{t: "1" for t in decoys}}


@pytest.mark.parametrize("fmt", ["plain", "directory"])
@pytest.mark.parametrize("as_app", [False, True])
def test_the_restore_job_brings_back_the_whole_state_in_both_formats(
    site: Site, config: Config, fmt: str, as_app: bool
) -> None:
    """Through the jobs (lock, journal, manifest check): superuser by a swap, the app role
    without CREATEDB in place; a plain or a directory (pg_restore) archive."""
    build(site, other_owner=False)
    if as_app:  # the one per-role setting an ordinary role may not put back
        sql(f"ALTER ROLE {ident(site.reader)} IN DATABASE {ident(site.db)} RESET ALL")
    before = state(site.db)
    cfg = dataclasses.replace(config, format=fmt)
    db = params(site.db, site.app if as_app else "postgres")
    assert run_backup(cfg, {"default": db}, ["default"], SUNDAY).exit_code == 0
    change(site)
    if as_app:
        sql(f"ALTER ROLE {ident(site.reader)} IN DATABASE {ident(site.db)} RESET ALL")
    report = Report("restore")
    notes = restore_archive(cfg, {"default": db}, "default", "latest", SUNDAY, report)
    assert report.exit_code == 0, notes
    assert diff(before, state(site.db)) == {}
    assert any(("in place" if as_app else "swap window") in n for n in notes), notes
    assert not (cfg.backup_dir / ".opskit-restore-journal.json").exists()


def test_a_restore_test_expects_exactly_the_excluded_tables_empty() -> None:
    manifest = {
        "tables": {"*": 3, "x": 2, "audit.log": 5, "Sessions_Secret": 4},
        "excluded_table_data": ["*", "Sessions_Secret"],
        "properties": {"excluded_tables": ["public.*", "public.Sessions_Secret"]},
    }
    assert expected_counts(manifest) == {"*": 0, "x": 2, "audit.log": 5, "Sessions_Secret": 0}


def test_extensions_a_createdb_role_may_not_create_are_refused_first(
    site: Site, tmp_path: Path
) -> None:
    """A trusted extension (citext) restores for a non-superuser; an untrusted one
    (file_fdw) is named before anything changes, on the swap path and in place."""
    sql(f"ALTER ROLE {ident(site.app)} CREATEDB")
    sql("CREATE EXTENSION citext; CREATE EXTENSION file_fdw;", site.db)
    sql(f"SET ROLE {ident(site.app)}; CREATE TABLE public.tag (t public.citext)", site.db)
    good = backup(params(site.db), tmp_path / "b")
    before = state(site.db)
    with pytest.raises(RestoreRefused) as refused:
        restore(params(site.db, site.app), good, tmp_path)
    assert "extension file_fdw: untrusted, only a superuser may create it" in refused.value.line()
    assert "citext" not in refused.value.line()
    assert state(site.db) == before
    assert derived(site.db) == []
    # In place, the extension a superuser installed stays: the restore goes through.
    restore(params(site.db, site.app), good, tmp_path, in_place=True)
    assert state(site.db) == before


@pytest.mark.parametrize("createdb", [False, True])
def test_a_role_that_does_not_own_the_database_is_refused_first(
    site: Site, tmp_path: Path, createdb: bool
) -> None:
    """Neither emptying it in place nor renaming it is allowed to another role: said first."""
    build(site, other_owner=False)
    good = backup(params(site.db), tmp_path / "b")
    change(site)
    if createdb:
        sql(f"ALTER ROLE {ident(site.reader)} CREATEDB")
    before = state(site.db)
    with pytest.raises(RestoreRefused) as refused:
        restore(params(site.db, site.reader), good, tmp_path)
    assert f"needs the owner of {site.db} ({site.app})" in refused.value.line()
    assert "nothing was changed" in refused.value.line()
    assert state(site.db) == before
    assert derived(site.db) == []


def test_a_database_that_does_not_exist_is_refused_with_the_command_that_creates_it(
    pg_server: None, tmp_path: Path
) -> None:
    db = name()
    with scratch_server_objects(dbs=(db,)):
        sql(f"CREATE DATABASE {ident(db)}")
        good = backup(params(db), tmp_path / "b")
        sql(f"DROP DATABASE {ident(db)}")
        with pytest.raises(RestoreRefused) as refused:
            restore(params(db), good, tmp_path)
        assert f"""psql -d postgres -c 'CREATE DATABASE "{db}"'""" in refused.value.line()


@pytest.mark.parametrize("command", [b"\\! touch {}", b"\\o {}", b"\\copy (SELECT 1) TO '{}'"])
@pytest.mark.parametrize("where", ["first", "last"])
@pytest.mark.parametrize("in_place", [False, True])
def test_an_archive_never_runs_a_psql_backslash_command(
    site: Site, tmp_path: Path, command: bytes, in_place: bool, where: str
) -> None:
    """psql loads under a restricted-mode key of opskit's own: pg_dump's \\restrict and
    \\unrestrict lines are replaced, and a backslash command before the first or after the
    last of them fails the load."""
    build(site, other_owner=False)
    good = backup(params(site.db), tmp_path / "b")
    marker = tmp_path / "ran"
    line = command.replace(b"{}", str(marker).encode()) + b"\n"
    content = content_of(good)
    crafted = archive_with(
        line + content if where == "first" else content + line, tmp_path / "x", good
    )
    change(site)
    before = state(site.db)
    with pytest.raises(CommandFailed) as failed:
        restore(params(site.db), crafted, tmp_path, in_place=in_place)
    assert "backslash commands are restricted" in failed.value.line()
    assert not marker.exists()
    assert state(site.db) == before
    assert derived(site.db) == []
