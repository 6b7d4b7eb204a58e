"""Killed and stopped runs: SIGKILL of the dump tool or of opskit, SIGTERM during a restore.

Each case checks the exit status and the message, and that nothing was lost: every earlier
archive, manifest and ``latest`` byte for byte, the live database's content, no temp file, no
scratch database and no credential folder left behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import NamedTuple

import psycopg
import pymysql
import pytest
from dbdata import adapter_for
from support.faultkit import (
    ProcInfo,
    Run,
    add_big_sqlite_table,
    archive_of,
    assert_archives_verify,
    children,
    clean_env,
    running,
    sigkill,
    size_of,
    state,
    temp_files,
)
from support.mysql_lock import table_locked
from support.project import run_opskit, write_project
from support.services import mysql, psql, random_name
from support.shared_pg import drop_pg_databases, shared_pg
from support.waiting import wait_for

from opskit.engines import DbParams

PASSWORD = "pw-Fq7xT2mK9s"  # the shared server trusts everyone; opskit still writes a passfile


def backup_ok(site: Path, env: dict[str, str]) -> None:
    done = run_opskit("backup", cwd=site, env=env)
    assert done.returncode == 0, done.stderr


def private_tmp(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A TMPDIR of the test's own, so opskit's credential folders can be seen and counted."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    return tmpdir, clean_env(TMPDIR=str(tmpdir))


class Project(NamedTuple):
    site: Path
    tmpdir: Path
    env: dict[str, str]
    backups: Path


def backed_up(db: DbParams, tmp_path: Path) -> Project:
    """A project on ``db`` that runs with a TMPDIR of its own (``private_tmp``), backed up once."""
    site = write_project(tmp_path / "site", {"default": db})
    tmpdir, env = private_tmp(tmp_path)
    backup_ok(site, env)
    return Project(site, tmpdir, env, site / "db_backups")


# --- a PostgreSQL database big enough that a dump or a load takes a while -----------------------


@pytest.fixture(scope="module")
def big_pg_template(pg_server: None) -> Iterator[str]:
    """A ~100 MB database (the test rows plus a big table) to clone with CREATE DATABASE."""
    name = random_name("opskit_t_tpl")
    psql(f'CREATE DATABASE "{name}"')
    try:
        adapter_for(shared_pg(name)).populate()
        psql(
            "CREATE TABLE big AS SELECT g AS id, repeat(md5(g::text), 4) AS t"
            " FROM generate_series(1, 700000) g",
            name,
        )
        psql("VACUUM ANALYZE", name)
        # No connections from now on (not even autovacuum), so it can always be cloned.
        psql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        yield name
    finally:
        psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def big_pg(big_pg_template: str) -> Iterator[DbParams]:
    name = random_name()
    psql(f'CREATE DATABASE "{name}" TEMPLATE "{big_pg_template}"')
    psql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    yield shared_pg(name)
    drop_pg_databases(name)


# --- SIGKILL of the dump tool ---------------------------------------------------------------------


def grown_in_a_slice(run: Run, backups: Path) -> bool:
    """Let a frozen opskit run for 20 ms; True once its temp archive holds data."""
    run.signal(signal.SIGCONT)
    time.sleep(0.02)
    run.signal(signal.SIGSTOP)
    return any(size_of(p) for p in temp_files(backups))


def test_pg_dump_killed_mid_stream_fails_the_dump_and_damages_nothing(
    big_pg: DbParams, tmp_path: Path
) -> None:
    site = write_project(tmp_path / "site", {"default": big_pg})
    env = clean_env()
    backup_ok(site, env)
    backups = site / "db_backups"
    before = state(backups)

    run = Run("backup", cwd=site, env=env)
    try:
        (dump,) = wait_for(
            lambda: [p for p in children(run.pid, "pg_dump") if "--format=plain" in p.argv],
            "pg_dump to start",
        )
        # Let opskit run in short slices until its temp archive has grown. While opskit is
        # frozen, pg_dump fills the pipe and blocks, so it cannot finish behind our back.
        run.signal(signal.SIGSTOP)
        try:
            wait_for(lambda: grown_in_a_slice(run, backups), "the temp archive to grow")
            assert running(dump.pid), "pg_dump ended before it could be killed: make `big` bigger"
            sigkill(dump.pid)
        finally:
            run.signal(signal.SIGCONT)
        done = run.finish()
    finally:
        run.stop()

    assert done.returncode == 1, done.stderr
    assert "event=step_failed step=dump" in done.stderr
    assert f"pg_dump of database {big_pg.name} (user postgres at 127.0.0.1:5432)" in done.stderr
    assert "was killed by signal 9" in done.stderr
    assert "opskit backup: 1 error," in done.stderr
    assert temp_files(backups) == []
    assert state(backups) == before
    assert assert_archives_verify(backups) == 1


# --- SIGKILL of opskit itself ---------------------------------------------------------------------


@dataclasses.dataclass
class Killed:
    site: Path
    backups: Path
    tmpdir: Path
    env: dict[str, str]
    before: dict[str, str]
    dead_temp: list[Path]
    credential_dirs: list[Path]


def kill_opskit_mid_backup(pg_db: DbParams, tmp_path: Path) -> Killed:
    """Back up once; then SIGKILL a second backup while pg_dump streams (held on a lock)."""
    data = adapter_for(pg_db)
    data.populate()
    data.execute("CREATE TABLE zz_locked (id int)")
    db = dataclasses.replace(pg_db, password=PASSWORD)
    site, tmpdir, env, backups = backed_up(db, tmp_path)
    before = state(backups)

    # pg_dump locks every table first; with one table held it waits, its temp file open.
    locker = psycopg.connect(host=db.host, port=db.port, user=db.user, dbname=db.name)
    try:
        locker.execute("LOCK TABLE zz_locked IN ACCESS EXCLUSIVE MODE")
        run = Run("backup", cwd=site, env=env)
        try:
            (dump,) = wait_for(
                lambda: [p for p in children(run.pid, "pg_dump") if "--format=plain" in p.argv],
                "pg_dump to start",
            )
            dead_temp = wait_for(lambda: temp_files(backups), "the temp archive")
            credential_dirs = sorted(tmpdir.glob("opskit-*"))
            assert credential_dirs, "pg_dump runs with a passfile in TMPDIR"
            run.signal(signal.SIGKILL)
            assert run.finish().returncode == -signal.SIGKILL
        finally:
            run.stop()
    finally:
        locker.close()  # pg_dump goes on, writes into a pipe nobody reads, and dies of SIGPIPE
    wait_for(lambda: not running(dump.pid), "the orphaned pg_dump to end")
    return Killed(site, backups, tmpdir, env, before, dead_temp, credential_dirs)


def test_sigkill_of_opskit_mid_backup_damages_nothing_and_the_next_run_cleans_up(
    pg_db: DbParams, tmp_path: Path
) -> None:
    killed = kill_opskit_mid_backup(pg_db, tmp_path)
    # Nothing could clean up after SIGKILL: the temp file and the passfile stay; nothing changed.
    assert temp_files(killed.backups) == killed.dead_temp
    assert all(p.is_dir() for p in killed.credential_dirs)
    assert state(killed.backups) == killed.before
    assert assert_archives_verify(killed.backups) == 1

    done = run_opskit("backup", cwd=killed.site, env=killed.env)
    assert done.returncode == 0, done.stderr
    assert "event=removed_stale_temp_file" in done.stderr
    assert str(killed.dead_temp[0]) in done.stderr
    assert temp_files(killed.backups) == []
    assert assert_archives_verify(killed.backups) == 1
    assert archive_of(killed.backups).name in killed.before  # the same slot, rewritten
    # The dead run's credential folder (its pid is in the name) is swept; the new run's removed.
    assert list(killed.tmpdir.iterdir()) == []


# --- SIGTERM during a restore -------------------------------------------------------------------


def restore_interrupted(
    site: Path,
    env: dict[str, str],
    loading: Callable[[int], bool],
    check_mid: Callable[[int], None] | None = None,
    then: Callable[[int], None] | None = None,
    flags: tuple[str, ...] = (),
) -> tuple[int, str]:
    """Start ``opskit restore --yes``; once ``loading()`` is true, send SIGTERM; return the end.

    ``check_mid`` runs while opskit is frozen, just before the signal; ``then`` after it resumed.
    """
    run = Run("restore", "--yes", *flags, cwd=site, env=env)
    try:
        wait_for(lambda: loading(run.pid) or run.proc.poll() is not None, "the load to start")
        assert run.proc.poll() is None, "the restore ended before it could be stopped"
        run.signal(signal.SIGSTOP)
        try:
            if check_mid is not None:
                check_mid(run.pid)
            run.signal(signal.SIGTERM)  # delivered when it continues, in the middle of the load
        finally:
            run.signal(signal.SIGCONT)
        if then is not None:
            then(run.pid)
        done = run.finish(timeout=120)
    finally:
        run.stop()
    return done.returncode, done.stderr


def assert_stopped_by_sigterm(code: int, stderr: str) -> None:
    assert code == 128 + signal.SIGTERM, stderr
    assert "SIGTERM" in stderr


def test_sigterm_during_a_postgresql_restore_exits_143_and_changes_nothing(
    big_pg: DbParams, tmp_path: Path
) -> None:
    site, tmpdir, env, backups = backed_up(big_pg, tmp_path)
    data = adapter_for(big_pg)
    data.mutate()
    psql("DELETE FROM big WHERE id <= 1000", big_pg.name)
    before = (data.snapshot(), psql("SELECT count(*), sum(hashtext(t)) FROM big", big_pg.name))
    archives = state(backups)
    scratch = f"{big_pg.name}__opskit_restore_%"

    def loading(pid: int) -> bool:
        # psql streams COPY data into the scratch database.
        return (
            psql(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'opskit'"
                f" AND datname LIKE '{scratch}' AND query LIKE 'COPY%'"
            )
            != "0"
        )

    code, stderr = restore_interrupted(site, env, loading)
    assert_stopped_by_sigterm(code, stderr)
    after = (data.snapshot(), psql("SELECT count(*), sum(hashtext(t)) FROM big", big_pg.name))
    assert after == before
    assert psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{big_pg.name}_%'") == ""
    assert temp_files(backups) == []
    assert state(backups) == archives
    assert list(tmpdir.iterdir()) == []


def mysql_loading(db: DbParams) -> bool:
    """True while a client runs the INSERTs of a dump in ``db``."""
    conn = pymysql.connect(host=db.host, port=int(db.port), user=db.user)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT COUNT(*) FROM information_schema.processlist"
                " WHERE db = %s AND info LIKE 'INSERT INTO%%'",
                (db.name,),
            )
            row = cur.fetchone()
            return bool(row and row[0])
    finally:
        conn.close()


@pytest.fixture
def big_mysql(mysql_db: DbParams) -> DbParams:
    adapter_for(mysql_db).populate()
    mysql(
        "CREATE TABLE big (id INT PRIMARY KEY, t TEXT NOT NULL);"
        " INSERT INTO big SELECT seq, REPEAT(MD5(seq), 3) FROM seq_1_to_250000;",
        mysql_db.name,
    )
    return mysql_db


def dump_tools(pid: int) -> list[ProcInfo]:
    """The children of ``pid`` that stream a dump (not its ``--version`` probes)."""
    return [p for p in children(pid) if "--single-transaction" in p.argv]


def loaders(pid: int) -> list[int]:
    """The mariadb clients of ``pid`` that load a dump (not short ``--batch`` queries)."""
    return [p.pid for p in children(pid, "mariadb") if "--batch" not in p.argv]


@pytest.mark.parametrize("again", [False, True], ids=["sigterm", "more-signals-during-put-back"])
def test_sigterm_during_a_mariadb_restore_puts_the_database_back_and_exits_143(
    big_mysql: DbParams, tmp_path: Path, again: bool
) -> None:
    db = big_mysql
    site, tmpdir, env, backups = backed_up(db, tmp_path)
    data = adapter_for(db)
    data.mutate()
    mysql("DELETE FROM big WHERE id <= 1000", db.name)
    fingerprint = "SELECT COUNT(*), SUM(CRC32(t)) FROM big"
    before = (data.snapshot(), mysql(fingerprint, db.name))
    archives = state(backups)

    def loading(pid: int) -> bool:
        # The safety copy is written, the tables are wiped, and the archive is being loaded.
        return bool(list(backups.glob("pre-restore-*.sql.zst.json"))) and mysql_loading(db)

    first_loader: list[int] = []

    def signal_the_put_back(pid: int) -> None:
        # Once the safety copy is being loaded back, signals must not cut that short.
        wait_for(lambda: set(loaders(pid)) - set(first_loader), "the put-back to start")
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            os.kill(pid, signum)

    code, stderr = restore_interrupted(
        site,
        env,
        loading,
        check_mid=lambda pid: first_loader.extend(loaders(pid)),
        then=signal_the_put_back if again else None,
        flags=("--in-place",),  # the safety-copy path; the default swap is tests/test_mysql_*
    )
    assert_stopped_by_sigterm(code, stderr)
    assert (data.snapshot(), mysql(fingerprint, db.name)) == before
    assert temp_files(backups) == []
    # Earlier archives are untouched; the verified safety copy stays beside them.
    extra = {k: v for k, v in state(backups).items() if k not in archives}
    assert {k: v for k, v in state(backups).items() if k in archives} == archives
    assert sorted(extra)
    assert all(name.startswith("pre-restore-") for name in extra)
    assert_archives_verify(backups)
    assert list(tmpdir.iterdir()) == []


@pytest.fixture
def big_sqlite(sqlite_db: DbParams) -> DbParams:
    adapter_for(sqlite_db).populate()
    add_big_sqlite_table(sqlite_db.name)
    return sqlite_db


def test_sigterm_during_an_sqlite_restore_exits_143_and_changes_nothing(
    big_sqlite: DbParams, tmp_path: Path
) -> None:
    db = big_sqlite
    site, tmpdir, env, backups = backed_up(db, tmp_path)
    raw_size = json.loads(Path(f"{archive_of(backups)}.json").read_text())["raw_size"]
    data = adapter_for(db)
    data.mutate()
    data.execute("DELETE FROM big WHERE id <= 1000")
    fingerprint = "SELECT COUNT(*), SUM(length(t)) FROM big"
    before = (data.snapshot(), data.query(fingerprint))
    archives = state(backups)
    target = Path(db.name)

    def scratch(pid: int) -> Path:
        made = sorted(target.parent.glob(f".{target.name}.tmp-{pid}-*"))  # -<random hex>
        return made[0] if made else target.with_name(f".{target.name}.tmp-{pid}")

    def mid_copy(pid: int) -> None:
        size = size_of(scratch(pid))
        assert size < raw_size, f"the copy was already complete ({size} of {raw_size})"

    # The scratch file exists from the start of the copy: stop opskit as early as that.
    code, stderr = restore_interrupted(
        site, env, lambda pid: scratch(pid).exists(), check_mid=mid_copy
    )
    assert_stopped_by_sigterm(code, stderr)
    assert (data.snapshot(), data.query(fingerprint)) == before
    assert list(target.parent.glob(f".{target.name}.tmp-*")) == []
    assert temp_files(backups) == []
    assert state(backups) == archives
    assert list(tmpdir.iterdir()) == []


def test_after_sigkill_mid_mariadb_restore_the_safety_copy_brings_the_database_back(
    big_mysql: DbParams, tmp_path: Path
) -> None:
    # SIGKILL cannot be caught: the tables are half loaded. What must hold is that the verified
    # safety copy written before anything was dropped is there, and restores the database.
    db = big_mysql
    site, tmpdir, env, backups = backed_up(db, tmp_path)
    data = adapter_for(db)
    data.mutate()
    fingerprint = "SELECT COUNT(*), SUM(CRC32(t)) FROM big"
    before = (data.snapshot(), mysql(fingerprint, db.name))

    run = Run("restore", "--yes", "--in-place", cwd=site, env=env)
    try:
        wait_for(lambda: list(backups.glob("pre-restore-*.sql.zst.json")), "the safety copy")
        wait_for(lambda: mysql_loading(db), "the load to start (after the wipe)")
        # The loader, not a short `mariadb --batch` query client.
        (client,) = [p for p in children(run.pid, "mariadb") if "--batch" not in p.argv]
        run.signal(signal.SIGKILL)
        assert run.finish().returncode == -signal.SIGKILL
    finally:
        run.stop()
    wait_for(lambda: not running(client.pid), "the orphaned client to end")
    assert "extra" not in data.tables()  # wiped and partly loaded: the live data is gone
    (safety,) = backups.glob("pre-restore-*.sql.zst")
    assert_archives_verify(backups)

    done = run_opskit("restore", safety, "--yes", cwd=site, env=env)

    assert done.returncode == 0, done.stderr
    assert (data.snapshot(), mysql(fingerprint, db.name)) == before
    assert temp_files(backups) == []
    assert list(tmpdir.iterdir()) == []  # the killed run's option file was swept too


def test_a_signal_is_never_lost_while_the_dump_waits(mysql_db: DbParams, tmp_path: Path) -> None:
    # A signal that lands while the compressor runs native code only sets Python's flag; if the
    # next read of the dump's pipe then blocks (a dump waiting on a lock), nothing would run the
    # handler. This race showed in about one attempt in seven before proc.streams._Interruptible.
    data = adapter_for(mysql_db)
    data.populate()
    data.execute("CREATE TABLE zz_locked (id int)")
    site = write_project(tmp_path / "site", {"default": mysql_db})
    env = clean_env()
    backup_ok(site, env)
    backups = site / "db_backups"
    before = state(backups)
    lost, codes = [], set()
    with table_locked(mysql_db):  # every dump waits on it
        for attempt in range(10):
            run = Run("backup", cwd=site, env=env)
            try:
                wait_for(partial(dump_tools, run.pid), "the dump tool to start")
                wait_for(lambda: temp_files(backups), "the temp archive")
                run.signal(signal.SIGTERM)  # at once: opskit may still be busy compressing
                try:
                    codes.add(run.proc.wait(5))
                except subprocess.TimeoutExpired:
                    lost.append(attempt)
                    break  # one is proof enough
            finally:
                run.stop()
                run.finish()
    assert lost == [], f"SIGTERM was lost (opskit kept waiting) in attempts {lost}"
    assert codes == {128 + signal.SIGTERM}
    assert temp_files(backups) == []
    assert state(backups) == before
