"""An archive cannot run programs on the server either: `COPY … TO PROGRAM` in a crafted
PostgreSQL archive, loaded by the app's own role (no superuser), fails the load, runs
nothing, and leaves the database as it was, in place or through the scratch database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.pg_state import (
    archive_with,
    backup,
    content_of,
    databases,
    ident,
    lit,
    name,
    params,
    restore,
    scratch_server_objects,
    sql,
    state,
)

from opskit.errors import CommandFailed


@pytest.fixture
def app_db(pg_server: None) -> Iterator[tuple[str, str]]:
    db, app = name(), name("opskit_app")
    with scratch_server_objects(app, dbs=(db,)):
        sql(f"CREATE ROLE {ident(app)} LOGIN CREATEDB")
        sql(f"CREATE DATABASE {ident(db)} OWNER {ident(app)}")
        sql(
            f"SET ROLE {ident(app)}; CREATE TABLE item (id serial PRIMARY KEY, name text);"
            " INSERT INTO item (name) SELECT 'n' || g FROM generate_series(1, 100) g;",
            db,
        )
        yield db, app


@pytest.mark.parametrize("in_place", [False, True])
def test_copy_to_program_in_an_archive_runs_nothing_and_changes_nothing(
    app_db: tuple[str, str], tmp_path: Path, in_place: bool
) -> None:
    db, app = app_db
    good = backup(params(db, app), tmp_path / "b")
    marker = tmp_path / "ran"
    line = f"COPY (SELECT 1) TO PROGRAM {lit('touch ' + str(marker))};\n".encode()
    content = content_of(good)
    cut = content.index(b"CREATE TABLE")
    crafted = archive_with(content[:cut] + line + content[cut:], tmp_path / "x", good)
    sql(f"SET ROLE {ident(app)}; INSERT INTO item (name) VALUES ('after the backup')", db)
    before = state(db)
    with pytest.raises(CommandFailed) as failed:
        restore(params(db, app), crafted, tmp_path, in_place=in_place)
    assert "pg_execute_server_program" in failed.value.line() or "superuser" in failed.value.line()
    assert not marker.exists()
    assert state(db) == before
    assert databases(db) == [db]  # no scratch database left behind
