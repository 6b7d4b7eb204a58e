"""MariaDB restores that fail, are killed or stopped at any point leave the live schema as
it was, or (killed after the swap's point of no return) are finished by the next run."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.mysql_site import backed_up_then_changed, build, built_site, change, derived
from support.mysql_state import (
    App,
    Backup,
    app_user,
    archive_with,
    backup,
    content_of,
    drop_schemas,
    params,
    q,
    restore,
    run,
    schemas,
    state,
)
from support.services import random_name
from support.waiting import wait_for

from opskit.engines import DbParams
from opskit.engines import journal as journals
from opskit.engines.mysql import MySQL
from opskit.errors import ArchiveError, CommandFailed, RestoreRefused

CHILD = Path(__file__).parents[1] / "support" / "restore_child.py"


@pytest.fixture
def small(mysql_server: None) -> Iterator[tuple[str, App]]:
    """The site of ``built_site`` without its big row."""
    with built_site(big=False) as made:
        yield made


def with_bulk(name: str, rows: int = 150_000, **server: Any) -> None:
    """A table big enough that loading it takes a while (a few seconds)."""
    run(
        f"CREATE TABLE {q(name)}.bulk (id INT PRIMARY KEY, t VARCHAR(120));\n"
        f"INSERT INTO {q(name)}.bulk SELECT seq, REPEAT(MD5(seq), 3) FROM seq_1_to_{rows}",
        name,
        **server,
    )


# --- archives that cannot load -----------------------------------------------------------------


def test_bad_sql_near_the_end_fails_with_the_loaders_own_error_and_changes_nothing(
    small: tuple[str, App], tmp_path: Path
) -> None:
    name, app = small
    db = params(name, app)
    good = backup(db, tmp_path / "b")
    content = content_of(good)
    lines = content.count(b"\n")
    bad = archive_with(content + b"INSERT INTO nowhere VALUES (1);\n", tmp_path / "bad", good)
    change(name, app)
    before = state(name)
    with pytest.raises(CommandFailed) as failed:
        restore(db, bad, tmp_path, definer="current-user")
    message = failed.value.line()
    assert f"ERROR 1146 (42S02) at line {lines + 1}" in message
    assert "nowhere" in message
    assert "truncated or corrupt" not in message
    assert state(name) == before
    assert derived(name) == []
    assert not (tmp_path / ".opskit-restore-journal.json").exists()


def test_a_cut_archive_is_the_decompressors_failure_and_changes_nothing(
    small: tuple[str, App], tmp_path: Path
) -> None:
    name, app = small
    db = params(name)
    good = backup(db, tmp_path / "b")
    cut = tmp_path / "cut.sql.zst"
    cut.write_bytes(good.path.read_bytes()[:-200])
    change(name, app)
    before = state(name)
    with pytest.raises(ArchiveError) as failed:
        restore(db, Backup(cut, good.manifest), tmp_path)
    assert "truncated or corrupt" in failed.value.line()
    assert state(name) == before
    assert derived(name) == []


@pytest.mark.parametrize("command", [b"\\! touch {}", b"system touch {}"])
@pytest.mark.parametrize("how", ["swap", "in-place", "restore-test"])
def test_an_archive_never_runs_a_shell_command(
    small: tuple[str, App], tmp_path: Path, command: bytes, how: str
) -> None:
    name, _ = small
    db = params(name)
    good = backup(db, tmp_path / "b")
    marker = tmp_path / "ran"
    # First thing after the sandbox line, then again after the data: never run.
    head, rest = content_of(good).split(b"\n", 1)
    line = command.replace(b"{}", str(marker).encode())
    crafted = archive_with(head + b"\n" + line + b"\n" + rest + line + b"\n", tmp_path / "c", good)
    before = state(name)

    def load() -> None:
        if how == "restore-test":
            with MySQL().scratch_copy(db, crafted.opener(), good_stamp(), tmp_path):
                pass
        else:
            safety = tmp_path / "safety"
            restore(
                db,
                crafted,
                tmp_path,
                in_place=how == "in-place",
                save_safety_copy=lambda target: backup(target, safety).path,
            )

    with pytest.raises(CommandFailed) as failed:
        load()
    assert not marker.exists()
    assert (
        "sandbox" in failed.value.line()
        or "Unknown command" in failed.value.line()
        or ("1064" in failed.value.line())
    )
    assert state(name) == before
    assert derived(name) == []


def good_stamp() -> Any:
    from support.mysql_state import STAMP

    return STAMP


# --- kill -9 and SIGTERM at every step ----------------------------------------------------------


def child_job(db: DbParams, b: Backup, folder: Path, **extra: Any) -> Path:
    job = folder / f"job-{time.monotonic_ns()}.json"
    job.write_text(
        json.dumps(
            {
                "db": dataclasses.asdict(db),
                "archive": str(b.path),
                "manifest": b.manifest,
                "folder": str(folder),
                **extra,
            }
        )
    )
    return job


def child_env(kill_at: str = "") -> dict[str, str]:
    """A restore child's environment: none of the caller's OPSKIT_*, the tests importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSKIT_")}
    if kill_at:
        env["OPSKIT_TEST_KILL_AT"] = f"mysql:{kill_at}"
    tests = str(Path(__file__).parents[1])
    env["PYTHONPATH"] = tests + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_child(
    job: Path, kill_at: str = "", timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHILD), str(job)],
        env=child_env(kill_at),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def child_running(job: Path) -> Iterator[subprocess.Popen[str]]:
    """The restore of ``job`` in a child process, killed on the way out if it still runs."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(job)],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def recover(db: DbParams, folder: Path) -> str:
    found = journals.load(folder)
    assert found is not None, "the killed run left no journal"
    said = MySQL().recover(db, found)
    found.finish()
    return said


BEFORE_NO_RETURN = ["loaded", "previous-created", "scratch-triggers-dropped"]
AFTER_NO_RETURN = ["renamed", "objects-replaced", "previous-filled", "scratch-dropped"]


@pytest.mark.parametrize("step", BEFORE_NO_RETURN + AFTER_NO_RETURN)
def test_kill_9_at_each_step_is_undone_or_finished_by_the_next_run(
    small: tuple[str, App], tmp_path: Path, step: str
) -> None:
    name, app = small
    db = params(name, app)
    b, restored = backed_up_then_changed(name, app, db, tmp_path / "b")
    changed = state(name)
    done = run_child(child_job(db, b, tmp_path, options={"definer": "current-user"}), kill_at=step)
    assert done.returncode == -signal.SIGKILL, done.stderr
    said = recover(db, tmp_path)
    after = state(name)
    if step in BEFORE_NO_RETURN:
        assert "it is as it was" in said or "before it changed" in said, said
        assert after == changed
        assert derived(name) == []
    else:
        assert said.startswith("finished the stopped restore"), said
        from support.mysql_state import without_definers

        assert without_definers(after) == without_definers(restored)
        assert derived(name) == [f"{name}__pre_restore_20261122020000"]
    assert journals.load(tmp_path) is None


@pytest.mark.parametrize("account", ["root", "app"])
@pytest.mark.parametrize("step", [*BEFORE_NO_RETURN, "renamed", "objects-replaced"])
def test_sigterm_during_the_swap_undoes_it_or_finishes_it_never_half(
    small: tuple[str, App], tmp_path: Path, step: str, account: str
) -> None:
    # Root may create the old objects again exactly: a SIGTERM undoes the swap. The app
    # account could not (the live trigger is root's): past the RENAME the swap is finished.
    name, app = small
    db = params(name, app if account == "app" else None)
    b, restored = backed_up_then_changed(name, app, db, tmp_path / "b")
    changed = state(name)
    job = child_job(db, b, tmp_path, options={"definer": "current-user"}, term_at=step)
    done = run_child(job)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert journals.load(tmp_path) is None
    if account == "app" and step not in BEFORE_NO_RETURN:
        from support.mysql_state import without_definers

        assert without_definers(state(name)) == without_definers(restored)
        assert derived(name) == [f"{name}__pre_restore_20261122020000"]
        assert "it was finished" in done.stdout
    else:
        assert state(name) == changed
        assert derived(name) == []


def loading_into(name: str, **server: Any) -> bool:
    rows = run(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
        f" WHERE DB LIKE '{name}\\_\\_opskit\\_restore\\_%' AND INFO LIKE 'INSERT INTO%'",
        **server,
    )
    return bool(rows[0][0])


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_signal_mid_load_leaves_the_schema_as_it_was(
    small: tuple[str, App], tmp_path: Path, signum: int
) -> None:
    name, app = small
    with_bulk(name)
    db = params(name, app)
    b = backup(db, tmp_path / "b")
    change(name, app)
    changed = state(name)
    job = child_job(db, b, tmp_path, options={"definer": "current-user"})
    with child_running(job) as child:
        wait_for(lambda: loading_into(name), "the load into the scratch schema", 60)
        child.send_signal(signum)
        child.wait(60)
    if signum == signal.SIGKILL:
        wait_for(lambda: not loading_into(name), "the orphaned loader to stop", 30)
        said = recover(db, tmp_path)
        assert "before it changed" in said, said
    else:
        assert child.returncode == 128 + signal.SIGTERM
        assert journals.load(tmp_path) is None
    assert state(name) == changed
    assert derived(name) == []


# --- the server itself ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_server() -> Iterator[Any]:
    from support.private_mariadb import private_mariadb

    with private_mariadb() as server:
        yield server


@pytest.fixture
def private(private_server: Any) -> Iterator[Any]:
    """The module's private server, left as the test found it (its databases, its settings)."""
    srv = private_server.server
    if not private_server.ready():
        private_server.start()
    had = schemas(**srv)
    packet = run("SELECT @@global.max_allowed_packet", **srv)[0][0]
    yield private_server
    for name in schemas(**srv) - had:
        run(f"DROP DATABASE IF EXISTS {q(name)}", **srv)
    run(f"SET GLOBAL max_allowed_packet = {packet}", **srv)


@pytest.mark.mysql  # a private server of its own
def test_a_server_restarted_mid_load_is_named_and_the_schema_stays_as_it_was(
    private: Any, tmp_path: Path
) -> None:
    srv = private.server
    name = random_name()
    run(f"CREATE DATABASE {q(name)} CHARACTER SET utf8mb4", **srv)
    with app_user(name, **srv) as app:
        build(name, app, big=False, **srv)
        with_bulk(name, 400_000, **srv)
        db = params(name, app, **srv)
        b = backup(db, tmp_path / "b")
        change(name, app, **srv)
        changed = state(name, **srv)
        job = child_job(db, b, tmp_path, options={"definer": "current-user"})
        with child_running(job) as child:
            wait_for(lambda: loading_into(name, **srv), "the load into the scratch schema", 60)
            private.restart()
            _, stderr = child.communicate(timeout=120)
        assert child.returncode == 3, stderr
        assert "went away during the load" in stderr or "Lost connection" in stderr, stderr
        assert "truncated or corrupt" not in stderr
        left = journals.load(tmp_path)
        if left is not None:  # the clean-up could not reach the server either
            MySQL().recover(db, left)
            left.finish()
        assert state(name, **srv) == changed
        assert derived(name, **srv) == []


@pytest.mark.mysql  # a private server of its own
@pytest.mark.parametrize("name", ["-A", "--help", "-v"])
def test_a_database_named_like_an_option_is_dumped_and_restored_alone(
    private: Any, tmp_path: Path, name: str
) -> None:
    srv = private.server
    for other in ("bystander", name):
        run(f"CREATE DATABASE {q(other)}", **srv)
        run(f"CREATE TABLE {q(other)}.{q('only_' + other)} (id INT PRIMARY KEY)", **srv)
        run(f"INSERT INTO {q(other)}.{q('only_' + other)} VALUES (1), (2)", **srv)
    db = params(name, **srv)
    b = backup(db, tmp_path / "b")
    text = content_of(b)
    assert f"only_{name}".encode() in text
    assert b"only_bystander" not in text
    assert b"mysql" not in text.lower().split(b"\n", 30)[-1]
    assert b"CREATE DATABASE" not in text
    assert b"USE `" not in text
    bystander = state("bystander", **srv)
    run(f"DELETE FROM {q(name)}.{q('only_' + name)}", **srv)
    restore(db, b, tmp_path)
    assert run(f"SELECT COUNT(*) FROM {q(name)}.{q('only_' + name)}", **srv)[0][0] == 2
    assert state("bystander", **srv) == bystander
    assert MySQL().table_counts(db) == {f"only_{name}": 2}


@pytest.mark.mysql  # a private server of its own
def test_a_statement_longer_than_the_servers_packet_is_refused_with_the_fix(
    private: Any, tmp_path: Path
) -> None:
    srv = private.server
    name = random_name()
    run("SET GLOBAL max_allowed_packet = 32 * 1024 * 1024", **srv)
    run(f"CREATE DATABASE {q(name)}", **srv)
    run(f"CREATE TABLE {q(name)}.b (id INT PRIMARY KEY, data LONGBLOB)", **srv)
    run(f"INSERT INTO {q(name)}.b VALUES (1, '')", **srv)
    for _ in range(20):
        run(f"UPDATE {q(name)}.b SET data = CONCAT(data, RANDOM_BYTES(1024))", **srv)
    run(f"UPDATE {q(name)}.b SET data = REPEAT(data, 1024)", **srv)  # 20 MiB
    db = params(name, **srv)
    b = backup(db, tmp_path / "b")
    assert b.manifest["properties"]["longest_statement"] > 20 << 20
    run("SET GLOBAL max_allowed_packet = 16 * 1024 * 1024", **srv)
    run(f"UPDATE {q(name)}.b SET data = 'changed'", **srv)
    before = state(name, **srv)
    with pytest.raises(RestoreRefused) as refused:
        restore(db, b, tmp_path)
    message = refused.value.line()
    assert "max_allowed_packet is 16,777,216" in message
    assert "SET GLOBAL max_allowed_packet = 22020096" in message
    assert state(name, **srv) == before
    assert derived(name, **srv) == []
    run("SET GLOBAL max_allowed_packet = 24 * 1024 * 1024", **srv)
    restore(db, b, tmp_path)
    assert run(f"SELECT LENGTH(data) FROM {q(name)}.b", **srv)[0][0] == 20 << 20


def test_excluded_tables_with_odd_names_keep_their_structure_and_lose_only_their_rows(
    mysql_server: None, tmp_path: Path
) -> None:
    name = random_name() + ".odd-name"
    odd = ["-x", 'we"ird.t', "--help"]
    try:
        run(f"CREATE DATABASE {q(name)}")
        for n, table in enumerate([*odd, "kept"]):
            run(f"CREATE TABLE {q(name)}.{q(table)} (id INT PRIMARY KEY)")
            run(f"INSERT INTO {q(name)}.{q(table)} VALUES ({n})")
        db = params(name)
        b = backup(db, tmp_path / "b", exclude=tuple(odd))
        run(f"DELETE FROM {q(name)}.kept")
        restore(db, b, tmp_path)
        counts = MySQL().table_counts(db)
        assert counts == {"-x": 0, 'we"ird.t': 0, "--help": 0, "kept": 1}
    finally:
        drop_schemas(name)
