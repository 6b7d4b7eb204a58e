"""PostgreSQL restores killed or failing at any point leave the live database as it was, or
(killed after the rename) restored; connections are allowed again, and the next opskit run
reports and clears what was left while `check` FAILs until then."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Unpack

import pytest
from support.pg_state import (
    Backup,
    backup,
    databases,
    ident,
    name,
    params,
    restore,
    scratch_server_objects,
    sql,
    state,
)
from support.private_postgres import PrivatePostgres, Server
from support.project import SUNDAY, run_opskit, write_project
from support.waiting import wait_for

from opskit.archive import rotation
from opskit.archive import stream as archive
from opskit.backup import run_backup
from opskit.check import FAIL, check_restores
from opskit.config import Config
from opskit.engines import DbParams
from opskit.engines import journal as journals
from opskit.engines.postgresql import PostgreSQL
from opskit.errors import CommandFailed

CHILD = Path(__file__).parents[1] / "support" / "restore_child.py"
SWAP_STEPS = ["created", "loaded", "properties-set", "connections-off", "renamed", "previous-open"]


def fill(db: str, rows: int, **server: Unpack[Server]) -> None:
    sql(
        "CREATE TABLE item (id int PRIMARY KEY, t text);"
        f" INSERT INTO item SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, {rows}) g;"
        " CREATE TABLE note (id int); INSERT INTO note VALUES (1);"
        f" COMMENT ON DATABASE {ident(db)} IS 'as backed up';",
        db,
        **server,
    )


def change(db: str, **server: Unpack[Server]) -> None:
    sql(
        "DELETE FROM item WHERE id % 2 = 0; CREATE TABLE after_backup (id int);"
        f" COMMENT ON DATABASE {ident(db)} IS 'changed';",
        db,
        **server,
    )


def start_child(
    db: DbParams, archive: Backup, folder: Path, kill_at: str = "", **options: Any
) -> subprocess.Popen[str]:
    job = folder / "job.json"
    job.write_text(
        json.dumps(
            {
                "db": {k: getattr(db, k) for k in ("alias", "django_engine", "name", "user")}
                | {"host": db.host, "port": db.port},
                "archive": str(archive.path),
                "manifest": archive.manifest,
                "folder": str(folder),
                "options": options,
            }
        )
    )
    env = {**os.environ, "OPSKIT_TEST_KILL_AT": f"postgresql:{kill_at}" if kill_at else ""}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(job)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def opskit_sessions(datname: str, query: str = "%", **server: Unpack[Server]) -> str:
    """How many of opskit's sessions are on a database LIKE ``datname``, running ``query``."""
    return sql(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'opskit'"
        f" AND datname LIKE '{datname}' AND query LIKE '{query}'",
        **server,
    )


def allowed(db: str, **server: Unpack[Server]) -> str:
    return sql(f"SELECT datallowconn FROM pg_database WHERE datname = '{db}'", **server)


@pytest.fixture
def live(pg_server: None, config: Config) -> Iterator[tuple[str, Path]]:
    db = name()
    folder = rotation.db_dir(config.backup_dir, "default")
    folder.mkdir(parents=True)
    with scratch_server_objects(dbs=(db,)):
        sql(f"CREATE DATABASE {ident(db)}")
        fill(db, 20_000)
        yield db, folder


@pytest.mark.parametrize("step", SWAP_STEPS)
def test_killed_at_each_swap_step_is_finished_or_undone_by_the_next_run(
    live: tuple[str, Path], config: Config, tmp_path: Path, step: str
) -> None:
    db, folder = live
    expected = state(db)
    good = backup(params(db), tmp_path / "b")
    change(db)
    before = state(db)
    child = start_child(params(db), good, folder, kill_at=step)
    child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL
    assert journals.load(folder) is not None
    # check FAILs, saying what it finished or undid; then all is clear.
    found = check_restores(config, params(db))
    assert any(r.status == FAIL and "unfinished restore" in r.found for r in found), found
    assert journals.load(folder) is None
    assert not any(r.status == FAIL for r in check_restores(config, params(db)))
    now = state(db)
    restored = step in ("renamed", "previous-open")
    assert now == (expected if restored else before)
    assert allowed(db) == "t"
    left = [d for d in databases(db) if d != db]
    if restored:
        assert len(left) == 1
        assert "__pre_restore_" in left[0]
        assert allowed(left[0]) == "t"
    else:
        assert left == []


@pytest.mark.parametrize("mode", ["no-createdb", "in-place", "swap"])
def test_kill_9_during_the_load_leaves_the_database_unchanged(
    live: tuple[str, Path], tmp_path: Path, mode: str
) -> None:
    db, folder = live
    sql(
        "INSERT INTO item SELECT g, repeat(md5(g::text), 8) FROM generate_series(20001, 400000) g",
        db,
    )
    role = name("opskit_app")
    with scratch_server_objects(role):
        who = "postgres"
        if mode == "no-createdb":  # the app role owns it all and may not create databases
            who = role
            sql(f"CREATE ROLE {ident(role)} LOGIN NOCREATEDB")
            sql(f"ALTER DATABASE {ident(db)} OWNER TO {ident(role)}")
            sql(
                f"ALTER TABLE item OWNER TO {ident(role)}; ALTER TABLE note OWNER TO {ident(role)}",
                db,
            )
        try:
            killed_mid_load(db, folder, tmp_path, who, mode)
        finally:
            sql(f"ALTER DATABASE {ident(db)} OWNER TO postgres")
            sql(f"DROP OWNED BY {ident(role)}", db, check=False)


def killed_mid_load(db: str, folder: Path, tmp_path: Path, who: str, mode: str) -> None:
    good = backup(params(db, who), tmp_path / "b")
    change(db)
    before = state(db)
    child = start_child(params(db, who), good, folder, in_place=mode == "in-place")
    target = db if mode != "swap" else f"{db}__opskit_restore_%"
    wait_for(lambda: opskit_sessions(target, "COPY%") != "0", "the load to start", 60)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    # The server notices the closed connection and rolls back.
    wait_for(lambda: opskit_sessions(target) == "0", "the killed load's session to end")
    assert state(db) == before
    left = journals.load(folder)
    assert left is not None
    said = PostgreSQL().recover(params(db, who), left)
    assert ("rolled back" in said) if mode != "swap" else ("dropped" in said), said
    left.finish()
    assert [d for d in databases(db) if d != db] == []
    assert state(db) == before


@pytest.fixture
def private() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.postgresql  # a private server of its own
@pytest.mark.parametrize("in_place", [True, False])
def test_a_server_restarted_mid_load_is_the_servers_error_not_a_corrupt_archive(
    private: PrivatePostgres, tmp_path: Path, in_place: bool
) -> None:
    server = private.server
    db = "shop"
    sql(f"CREATE DATABASE {db}", **server)
    fill(db, 300_000, **server)
    target = params(db, **server)
    good = backup(target, tmp_path / "b")
    change(db, **server)
    before = state(db, **server)
    folder = tmp_path / "f"
    folder.mkdir()
    child = start_child(target, good, folder, in_place=in_place)
    like = db if in_place else f"{db}__opskit_restore_%"
    wait_for(lambda: opskit_sessions(like, "COPY%", **server) != "0", "the load to start", 60)
    private.restart()
    _, err = child.communicate(timeout=120)
    assert child.returncode == 3, err
    assert "truncated or corrupt" not in err
    assert "server closed the connection" in err or "terminating connection" in err, err
    left = journals.load(folder)
    if left is not None:
        PostgreSQL().recover(target, left)
        left.finish()
    assert state(db, **server) == before
    assert databases(db, **server) == [db]


@pytest.mark.postgresql  # a private server of its own
def test_a_failed_swap_rename_is_undone_at_once(tmp_path: Path) -> None:
    """A database the rename cannot take (a prepared transaction holds it) is refused with
    the server's reason; the live database accepts connections again, unchanged."""
    cluster = PrivatePostgres("max_prepared_transactions=5").start()
    try:
        server = cluster.server
        db = "shop"
        sql(f"CREATE DATABASE {db}", **server)
        fill(db, 1000, **server)
        good = backup(params(db, **server), tmp_path / "b")
        change(db, **server)
        before = state(db, **server)
        sql("BEGIN; CREATE TABLE held (id int); PREPARE TRANSACTION 'held';", db, **server)
        folder = tmp_path / "f"
        folder.mkdir()
        with pytest.raises(CommandFailed) as failed:
            restore(params(db, **server), good, folder)
        assert "being accessed by other users" in failed.value.line()
        sql("ROLLBACK PREPARED 'held'", db, **server)
        assert allowed(db, **server) == "t"
        assert state(db, **server) == before
        assert databases(db, **server) == [db]
        assert journals.load(folder) is None
    finally:
        cluster.stop()


def test_killed_after_the_in_place_commit_the_next_run_says_it_is_whole(
    live: tuple[str, Path], config: Config, tmp_path: Path
) -> None:
    db, folder = live
    expected = state(db)
    good = backup(params(db), tmp_path / "b")
    change(db)
    child = start_child(params(db), good, folder, kill_at="committed", in_place=True)
    child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL
    found = check_restores(config, params(db))
    assert any(r.status == FAIL and "is whole" in r.found for r in found), found
    assert journals.load(folder) is None
    assert state(db) == expected


def test_a_backup_after_a_killed_swap_dumps_the_database_whole_never_half(
    live: tuple[str, Path], config: Config, tmp_path: Path
) -> None:
    """Killed with the live database refusing connections: the next backup first undoes
    the swap (connections allowed again), then dumps the database as it was."""
    db, folder = live
    good = backup(params(db), tmp_path / "b")
    change(db)
    before = state(db)
    child = start_child(params(db), good, folder, kill_at="connections-off")
    child.communicate(timeout=120)
    assert allowed(db) == "f"
    assert journals.load(folder) is not None
    report = run_backup(config, {"default": params(db)}, ["default"], SUNDAY)
    assert report.exit_code == 0
    assert journals.load(folder) is None
    assert allowed(db) == "t"
    assert state(db) == before
    latest = next(folder.glob("latest.*")).resolve()
    with archive.open_content(latest) as reader:
        dumped = reader.read(-1)
    assert b"CREATE TABLE public.after_backup" in dumped  # the database as it was, whole


def test_the_real_opskit_killed_mid_swap_is_reported_and_cleared_by_the_next_command(
    live: tuple[str, Path], tmp_path: Path
) -> None:
    """`opskit restore` killed (SIGKILL at a kill point) with the live database refusing
    connections; `opskit check` FAILs saying what it undid; the next check is clear."""
    db, _ = live
    site = write_project(tmp_path / "site", {"default": params(db)})
    assert run_opskit("backup", cwd=site).returncode == 0
    change(db)
    before = state(db)
    killed = run_opskit(
        "restore", "--yes", cwd=site, env={"OPSKIT_TEST_KILL_AT": "postgresql:connections-off"}
    )
    assert killed.returncode == -signal.SIGKILL
    assert allowed(db) == "f"
    found = run_opskit("check", "--only", "restore", cwd=site)
    assert found.returncode != 0
    assert "FAIL" in found.stdout, found.stdout
    assert "undid the stopped restore" in found.stdout, found.stdout
    assert allowed(db) == "t"
    assert state(db) == before
    again = run_opskit("check", "--only", "restore", cwd=site)
    assert again.returncode == 0, again.stdout
