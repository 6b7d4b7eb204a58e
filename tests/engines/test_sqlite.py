"""SQLite: one moment under load, any path, nothing followed or created, safe restores."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dbdata import Adapter, adapter_for
from support.project import OPSKIT, SUNDAY, run_opskit, write_project
from support.waiting import wait_for
from test_roundtrip import backup

from opskit import files
from opskit.archive import formats
from opskit.archive import manifest as manifests
from opskit.archive import stream as archive
from opskit.backup import run_backup
from opskit.config import Config
from opskit.engines import DbParams
from opskit.engines.base import RestoreContext
from opskit.engines.journal import Journal
from opskit.engines.sqlite import SQLite
from opskit.killpoints import ENV as KILL_AT
from opskit.report import Report, StepFailed
from opskit.restore import RestoreOptions, restore_archive

KEYS = ("test-only",)  # the conftest config's signing key
TEXT: dict[str, Any] = {"capture_output": True, "text": True, "check": False}
QUIET: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}

# A site under load: each transaction moves the counter and the ledger together (one row,
# one amount, a random tag under a unique index), rewrites an old row somewhere in the file,
# and either adds a session row or deletes them all, so sessions come and go all the time.
WRITER = r"""
import os, random, sqlite3, sys
path, journal, stop = sys.argv[1:4]
conn = sqlite3.connect(path, timeout=60, isolation_level=None)
conn.execute(f"PRAGMA journal_mode={journal}")
conn.execute("PRAGMA synchronous=OFF")
rows = conn.execute("SELECT max(id) FROM ledger").fetchone()[0]
i = 0
while not os.path.exists(stop):
    i += 1
    amount = random.randint(1, 9)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE counter SET n = n + 1, total = total + ?", (amount,))
    conn.execute(
        "INSERT INTO ledger (tag, amount, note) VALUES (?, ?, ?)",
        (os.urandom(8).hex(), amount, os.urandom(32).hex()),
    )
    conn.execute(
        "UPDATE ledger SET note = ? WHERE id = ?", (os.urandom(300).hex(), random.randint(1, rows))
    )
    if i % 2:
        conn.execute(
            "INSERT INTO django_session VALUES (?, 'secret', '2999-01-01')", (os.urandom(8).hex(),)
        )
    else:
        conn.execute("DELETE FROM django_session")
    conn.execute("COMMIT")
    if i == 1:
        open(stop + "-started", "w").close()
print(i)
"""


def db_at(path: Path) -> DbParams:
    return DbParams(alias="default", django_engine="django.db.backends.sqlite3", name=str(path))


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def make_ledger(path: Path, journal: str, rows: int = 20000) -> None:
    """Create the counter, the ledger (with a unique index) and the session table, filled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA journal_mode={journal}")
        conn.executescript(
            "CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL,"
            " total INTEGER NOT NULL);"
            "CREATE TABLE ledger (id INTEGER PRIMARY KEY, tag TEXT NOT NULL,"
            " amount INTEGER NOT NULL, note TEXT NOT NULL);"
            "CREATE UNIQUE INDEX ledger_tag ON ledger (tag);"
            "CREATE TABLE django_session (session_key varchar(40) PRIMARY KEY,"
            " session_data TEXT NOT NULL, expire_date TEXT NOT NULL);"
        )
        conn.execute(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?)"
            " INSERT INTO ledger (tag, amount, note)"
            " SELECT lower(hex(randomblob(8))), 1 + i % 9, lower(hex(randomblob(300))) FROM s",
            (rows,),
        )
        conn.execute("INSERT INTO counter SELECT 1, count(*), sum(amount) FROM ledger")
        conn.commit()


@contextlib.contextmanager
def busy_site(path: Path, journal: str) -> Iterator[None]:
    """Keep a writer process busy on ``path`` for the duration of the block."""
    stop = path.with_name("stop-writer")
    started = path.with_name("stop-writer-started")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), journal, str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(started.exists, "the writer's first commit")
        yield
    finally:
        stop.touch()
        out, _ = writer.communicate(timeout=60)
        stop.unlink()
        started.unlink(missing_ok=True)
    assert writer.returncode == 0
    assert int(out) > 50, "the writer hardly wrote: the test proves nothing"


def problems_of(copy: Path) -> list[str]:
    """Say what is wrong with a backed-up database: torn, inconsistent, or holding sessions."""
    with contextlib.closing(sqlite3.connect(f"file:{copy}?mode=ro", uri=True)) as conn:
        try:
            check = conn.execute("PRAGMA integrity_check").fetchall()
            counter = conn.execute("SELECT n, total FROM counter").fetchone()
            ledger = conn.execute("SELECT count(*), sum(amount) FROM ledger").fetchone()
            sessions = conn.execute("SELECT count(*) FROM django_session").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            return [f"unreadable: {exc}"]
    found = []
    if check != [("ok",)]:
        found.append(f"integrity_check: {check[:2]}")
    if counter != ledger:
        found.append(f"counter {counter} but ledger {ledger}")
    if sessions:
        found.append(f"{sessions} session rows")
    return found


def decompressed_copy(config: Config, folder: Path, n: int) -> Path:
    """Decompress the latest archive into a file of its own."""
    latest = next(config.backup_dir.glob("latest.*")).resolve()
    copy = folder / f"copy-{n}.sqlite3"
    with archive.open_content(latest) as content, copy.open("wb") as out:
        while chunk := content.read(1 << 20):
            out.write(chunk)
    return copy


@pytest.mark.parametrize(
    ("journal", "folder"),
    [("delete", "site"), ("wal", "site"), ("wal", "site/odd ?#%41")],
    ids=["rollback-journal", "wal", "wal-in-an-odd-folder"],
)
def test_every_backup_under_a_busy_writer_is_one_consistent_moment_without_sessions(
    config: Config, tmp_path: Path, journal: str, folder: str
) -> None:
    """Backups taken while another process writes restore to a whole, consistent database."""
    path = tmp_path / folder / "db.sqlite3"
    sqlite_db = db_at(path)
    make_ledger(path, journal)
    copies = tmp_path / "copies"
    copies.mkdir()
    bad = {}
    with busy_site(path, journal):
        for n in range(20):
            report = run_backup(config, {"default": sqlite_db}, ["default"], SUNDAY)
            assert report.exit_code == 0, report.failed()
            copy = decompressed_copy(config, copies, n)
            if found := problems_of(copy):
                bad[n] = found
            copy.unlink()
    assert not bad, f"{len(bad)} of 20 backups are not one moment: {bad}"


def backed_up_then_changed(config: Config, db: DbParams) -> tuple[Adapter, dict[str, Any]]:
    """The test rows in ``db``, backed up, then changed: the adapter, and what the backup holds."""
    data = adapter_for(db)
    data.populate()
    before = data.snapshot()
    assert backup(config, db).exit_code == 0
    data.mutate()
    return data, before


def restore(config: Config, db: DbParams, source: str = "latest") -> Report:
    """Restore ``source`` as ``opskit restore --yes`` does; a failed step is in the report."""
    report = Report("restore")
    with contextlib.suppress(StepFailed):
        restore_archive(config, {db.alias: db}, db.alias, source, SUNDAY, report)
    return report


# --- any path ---------------------------------------------------------------------------------

ODD = "-odd ?#%41 x"


def roundtrip(config: Config, db: DbParams, journal: str, sessions: bool) -> None:
    """Back up, change everything, restore: every row comes back, in the file NAME names."""
    data = adapter_for(db)
    data.populate()
    data.execute(f"PRAGMA journal_mode={journal}")
    if not sessions:
        data.execute("DELETE FROM django_session")
    before = data.snapshot()
    folder = Path(db.name).parent
    files_before = entries(folder)
    assert backup(config, db).exit_code == 0
    data.mutate()
    report = restore(config, db)
    assert report.exit_code == 0, report.failed()
    assert data.snapshot() == {**before, "sessions": 0}
    assert data.query("PRAGMA journal_mode") == [(journal,)]
    assert entries(folder) == files_before  # the file NAME names was replaced, nothing else made


@pytest.mark.parametrize(
    ("journal", "sessions"),
    [("delete", False), ("delete", True), ("wal", True)],
    ids=["live-file", "snapshot", "wal-snapshot"],
)
@pytest.mark.parametrize(
    "where", ["file", "folder", "both"], ids=["odd-file", "odd-folder", "odd-both"]
)
def test_a_path_with_uri_characters_round_trips_every_row_in_that_very_file(
    config: Config, tmp_path: Path, journal: str, sessions: bool, where: str
) -> None:
    """``?``, ``#``, ``%41``, spaces and a leading ``-`` in the path name the file itself."""
    folder = tmp_path / "site" / (ODD if where != "file" else "data")
    folder.mkdir(parents=True)
    db = db_at(folder / (f"{ODD}.sqlite3" if where != "folder" else "db.sqlite3"))
    roundtrip(config, db, journal, sessions)
    # SQLite decoding the URI would have made "-odd " or "-odd A x.sqlite3" somewhere.
    assert sorted(p.name for p in tmp_path.rglob("*odd*")) == sorted(
        {folder.name, Path(db.name).name} - {"data", "db.sqlite3"}
    )


def test_a_name_that_is_a_symlink_restores_into_the_file_it_points_to(
    config: Config, tmp_path: Path
) -> None:
    """NAME may be a symlink to the real file (as for SQLite itself): the link stays a link."""
    real = tmp_path / "data" / "real.sqlite3"
    real.parent.mkdir()
    link = tmp_path / "site" / "app" / "db.sqlite3"
    link.parent.mkdir(parents=True)
    link.symlink_to(real)
    real.touch()  # an empty file is an empty SQLite database
    roundtrip(config, db_at(link), "delete", False)
    assert link.is_symlink()
    assert link.resolve() == real
    assert entries(real.parent) == ["real.sqlite3"]


def test_the_cli_backs_up_and_restores_a_project_in_an_odd_folder(tmp_path: Path) -> None:
    """A real opskit process in a project folder named with URI characters round-trips."""
    site = tmp_path / f"{ODD} site"
    db = db_at(site / f"{ODD}.sqlite3")
    write_project(site, {"default": db})
    data = adapter_for(db)
    data.populate()
    data.execute("PRAGMA journal_mode=wal")
    before = data.snapshot()
    done = run_opskit("backup", cwd=site)
    assert done.returncode == 0, done.stderr
    data.mutate()
    done = run_opskit("restore", "--yes", cwd=site)
    assert done.returncode == 0, done.stderr
    assert data.snapshot() == {**before, "sessions": 0}
    leftovers = [p.name for p in site.iterdir() if ".tmp-" in p.name or p.name.endswith("-wal")]
    assert leftovers == []


# --- nothing followed, nothing left -------------------------------------------------------------


def victim(tmp_path: Path) -> tuple[Path, bytes, int]:
    target = tmp_path / "outside" / "victim.conf"
    target.parent.mkdir()
    target.write_bytes(b"precious\n")
    target.chmod(0o644)
    return target, target.read_bytes(), target.stat().st_mode


def plant(folder: Path, names: list[str], target: Path) -> None:
    for name in names:
        for suffix in ("", "-journal", "-wal", "-shm"):
            link = folder / (name + suffix)
            if not link.exists() and not link.is_symlink():
                link.symlink_to(target)


def test_symlinks_at_the_names_opskit_used_to_write_are_never_followed(
    sqlite_db: DbParams, config: Config, tmp_path: Path
) -> None:
    """Symlinks planted at every predictable scratch and snapshot name leave their target be."""
    target, content, mode = victim(tmp_path)
    pid = os.getpid()
    folder = Path(sqlite_db.name).parent
    data = adapter_for(sqlite_db)
    data.populate()  # a session row: the backup goes through a snapshot
    plant(folder, [f".db.sqlite3.tmp-{pid}", f".default.sqlite3.tmp-{pid}"], target)
    backups = config.backup_dir
    backups.mkdir()
    plant(backups, [f".default.sqlite3.tmp-{pid}", f".default.verify.sqlite3.tmp-{pid}"], target)
    cfg = dataclasses.replace(config, verify_restore=True)
    assert backup(cfg, sqlite_db).exit_code == 0
    plant(backups, [f".default.sqlite3.tmp-{pid}", f".default.verify.sqlite3.tmp-{pid}"], target)
    assert restore(config, sqlite_db).exit_code == 0
    assert (target.read_bytes(), target.stat().st_mode) == (content, mode)


class Attacker(threading.Thread):
    """Another user of the folders: plants symlinks beside every temp file it sees appear,
    and (with ``swap``) replaces the temp file itself by a symlink."""

    def __init__(self, folders: list[Path], target: Path, swap: bool) -> None:
        super().__init__(daemon=True)
        self.folders, self.target, self.swap = folders, target, swap
        self.stop = threading.Event()
        self.hits = 0

    def run(self) -> None:
        seen: set[Path] = set()
        while not self.stop.is_set():
            for folder in self.folders:
                with contextlib.suppress(OSError):
                    for entry in os.scandir(folder):
                        path = Path(entry.path)
                        if ".tmp-" not in entry.name or path in seen or entry.is_symlink():
                            continue
                        seen.add(path)
                        self.attack(path)

    def attack(self, path: Path) -> None:
        for suffix in ("-journal", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                path.with_name(path.name + suffix).symlink_to(self.target)
                self.hits += 1
        if self.swap:
            link = path.with_name(path.name + ".planted")
            with contextlib.suppress(OSError):
                link.symlink_to(self.target)
                os.rename(link, path)
                self.hits += 1


@pytest.mark.parametrize(
    ("where", "swap"),
    [("site", False), ("site", True), ("backups", True)],
    ids=["beside-the-database", "in-place-of-the-scratch", "in-the-backup-folder"],
)
def test_symlinks_planted_while_opskit_works_are_never_followed(
    sqlite_db: DbParams, config: Config, tmp_path: Path, where: str, swap: bool
) -> None:
    """A racing attacker's symlinks never let a backup, a verify or a restore write outside."""
    target, content, mode = victim(tmp_path)
    data = adapter_for(sqlite_db)
    data.populate()
    data.execute("PRAGMA journal_mode=wal")
    before = data.snapshot()
    config.backup_dir.mkdir()
    folder = Path(sqlite_db.name).parent if where == "site" else config.backup_dir
    attacker = Attacker([folder], target, swap)
    attacker.start()
    cfg = dataclasses.replace(config, verify_restore=True)
    outcomes = []
    try:
        for _ in range(5):
            outcomes.append(backup(cfg, sqlite_db).exit_code)
            data.execute("UPDATE item SET note = 'changed'")
            outcomes.append(restore(config, sqlite_db).exit_code)
            assert data.query("PRAGMA integrity_check") == [("ok",)]
    finally:
        attacker.stop.set()
        attacker.join()
    assert attacker.hits
    assert (target.read_bytes(), target.stat().st_mode) == (content, mode)
    if not swap:
        # Beside the database opskit opens no journal of its files: the symlinks change nothing.
        assert outcomes == [0] * 10
        assert data.snapshot() == {**before, "sessions": 0}


def test_stale_scratch_files_beside_the_database_are_swept_when_their_process_is_gone(
    sqlite_db: DbParams, config: Config
) -> None:
    """Only opskit's own names, of dead processes, and only plain files are deleted."""
    adapter_for(sqlite_db).populate()
    folder = Path(sqlite_db.name).parent
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **TEXT)
    dead = int(gone.stdout)
    stale = [f".db.sqlite3.tmp-{dead}-0123abcd", f".db.sqlite3.tmp-{dead}-0123abcd-journal"]
    kept = [
        ".db.sqlite3.tmp-1-0123abcd",  # pid 1 is alive
        f".other.sqlite3.tmp-{dead}-0123abcd",  # another database's
        f"db.sqlite3.tmp-{dead}-0123abcd",  # not a name opskit makes
    ]
    for name in stale + kept:
        (folder / name).write_bytes(b"x")
    (folder / f".db.sqlite3.tmp-{dead}-feed").symlink_to(folder / "db.sqlite3")
    kept.append(f".db.sqlite3.tmp-{dead}-feed")  # a symlink: not a file of ours
    assert backup(config, sqlite_db).exit_code == 0
    names = set(entries(folder))
    assert not names & set(stale)
    assert set(kept) <= names


# --- restores ---------------------------------------------------------------------------------


def archive_holding(like: Path, folder: Path, content: bytes, cut: int = 0) -> Path:
    """An archive of ``content`` whose manifest matches it; ``cut`` bytes chopped off its end."""
    folder.mkdir(exist_ok=True)
    final = folder / like.name
    written = archive.write_stream(io.BytesIO(content), final, "zstd")
    if cut:
        with written.path.open("r+b") as fh:
            fh.truncate(written.size - cut)
    files.commit(written.path, final)
    manifest = manifests.read(like)
    manifest.update(size=final.stat().st_size, sha256=archive.sha256_file(final))
    manifests.write(manifests.sign(manifest, KEYS), manifests.path_of(final))
    return final


def whole_file(path: Path) -> bytes:
    return b"".join(
        p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")) if p.is_file()
    )


@pytest.mark.parametrize(
    "damage",
    ["truncated-archive", "truncated-database", "damaged-pages"],
)
def test_a_bad_archive_leaves_the_live_file_byte_for_byte_as_it_was(
    sqlite_db: DbParams, config: Config, tmp_path: Path, damage: str
) -> None:
    """A cut stream, a cut database or broken pages fail the load before the live file moves."""
    data = adapter_for(sqlite_db)
    data.populate()
    assert backup(config, sqlite_db).exit_code == 0
    latest = next(config.backup_dir.glob("latest.*")).resolve()
    with archive.open_content(latest) as reader:
        content = bytearray(reader.read(-1))
    cut = 0
    if damage == "truncated-archive":
        cut = 1000
    elif damage == "truncated-database":
        content = content[: len(content) // 2]
    else:
        content[4096:8192] = b"\xde\xad" * 2048
    bad = archive_holding(latest, tmp_path / "bad", bytes(content), cut)
    data.mutate()
    path = Path(sqlite_db.name)
    folder_before, bytes_before, ino = entries(path.parent), whole_file(path), path.stat().st_ino
    report = restore(config, sqlite_db, str(bad))
    assert report.exit_code == 1
    assert report.failed()[0].name == "load"
    assert (entries(path.parent), whole_file(path)) == (folder_before, bytes_before)
    assert path.stat().st_ino == ino


def test_a_restore_while_the_site_holds_the_file_open_copies_in_place_and_the_site_sees_it(
    sqlite_db: DbParams, config: Config, tmp_path: Path
) -> None:
    """A connection open during the restore reads the restored data, not a renamed-away file."""
    data, before = backed_up_then_changed(config, sqlite_db)
    path = Path(sqlite_db.name)
    ino = path.stat().st_ino
    latest = next(config.backup_dir.glob("latest.*")).resolve()
    ctx = RestoreContext(work_dir=tmp_path, now=SUNDAY)
    with contextlib.closing(sqlite3.connect(path)) as site:
        assert site.execute("SELECT count(*) FROM item").fetchone() != (len(before["items"]),)
        SQLite(swap_wait=0.2).restore(sqlite_db, formats.opener(latest), ctx)
        assert site.execute("SELECT count(*) FROM item").fetchone() == (len(before["items"]),)
    assert path.stat().st_ino == ino
    assert data.snapshot() == {**before, "sessions": 0}


def test_a_restore_of_a_closed_file_renames_it_into_place_with_its_owner_and_mode(
    sqlite_db: DbParams, config: Config
) -> None:
    """Nobody has the file open: the checked copy takes its place, same owner and mode."""
    data, before = backed_up_then_changed(config, sqlite_db)
    path = Path(sqlite_db.name)
    path.chmod(0o640)
    old = path.stat()
    assert restore(config, sqlite_db).exit_code == 0
    new = path.stat()
    assert new.st_ino != old.st_ino
    assert (new.st_mode, new.st_uid, new.st_gid) == (old.st_mode, old.st_uid, old.st_gid)
    assert data.snapshot() == {**before, "sessions": 0}


def test_in_place_copies_into_the_live_file_even_when_nobody_has_it_open(
    sqlite_db: DbParams, config: Config
) -> None:
    """``--in-place``: the backup API writes the restored data into the same inode."""
    data, before = backed_up_then_changed(config, sqlite_db)
    inode = Path(sqlite_db.name).stat().st_ino
    report = Report("restore")
    dbs = {"default": sqlite_db}
    restore_archive(config, dbs, "default", "latest", SUNDAY, report, RestoreOptions(in_place=True))
    assert report.exit_code == 0, report.failed()
    assert Path(sqlite_db.name).stat().st_ino == inode
    assert data.snapshot() == {**before, "sessions": 0}


CRASH = r"""
import os, signal, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] == "wal":
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("INSERT INTO item (name) VALUES ('from the crashed writer')")
else:
    conn.execute("PRAGMA cache_size=2")  # spill: pages written to the file mid-transaction
    conn.execute("BEGIN")
    for _ in range(200):
        conn.execute("INSERT INTO item (name, note) VALUES ('half-written', ?)", ("x" * 3000,))
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_a_journal_left_by_a_killed_writer_is_never_applied_to_the_restored_file(
    sqlite_db: DbParams, config: Config, journal: str
) -> None:
    """A hot journal or a WAL with frames beside the file belongs to the old one, not the new."""
    data = adapter_for(sqlite_db)
    data.populate()
    data.execute(f"PRAGMA journal_mode={journal}")
    before = data.snapshot()
    assert backup(config, sqlite_db).exit_code == 0
    data.mutate()
    path = Path(sqlite_db.name)
    crashed = subprocess.run([sys.executable, "-c", CRASH, str(path), journal], **TEXT)
    assert crashed.returncode == -9, crashed.stderr
    leftover = path.with_name(path.name + ("-wal" if journal == "wal" else "-journal"))
    assert leftover.stat().st_size > 0
    assert restore(config, sqlite_db).exit_code == 0
    assert data.query("PRAGMA integrity_check") == [("ok",)]
    assert data.snapshot() == {**before, "sessions": 0}


def test_the_restore_benchmark_prints_each_time_its_ratio_and_the_goal(tmp_path: Path) -> None:
    """bench/sqlite_restore.py runs on a small dataset (its times are never asserted)."""
    script = Path(__file__).resolve().parents[2] / "bench" / "sqlite_restore.py"
    done = subprocess.run(
        [sys.executable, script, "--size", "10m", "--runs", "1", "--work", tmp_path], **TEXT
    )
    assert done.returncode == 0, done.stderr + done.stdout
    for label in ("limit: zstd -q -dc archive > file", "renamed in", "in place", "goal:"):
        assert label in done.stdout
    assert "PRAGMA integrity_check" in done.stdout


def test_a_restore_killed_half_way_leaves_the_live_file_and_its_scratch_is_cleared_after(
    tmp_path: Path,
) -> None:
    """kill -9 while the checked copy is made: the live file is as it was, and the leftover
    is listed, then removed by the recovery (or swept by the next run)."""
    site = tmp_path / "site"
    path = site / "db.sqlite3"
    make_ledger(path, "delete", rows=60000)
    write_project(site, {"default": db_at(path)})
    assert run_opskit("backup", cwd=site).returncode == 0
    adapter_for(db_at(path)).execute("UPDATE counter SET n = n + 1")
    live = path.read_bytes()
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    scratch: list[str] = []
    for _ in range(5):
        restore_run = subprocess.Popen([OPSKIT, "restore", "--yes"], cwd=site, env=env, **QUIET)
        while restore_run.poll() is None and not scratch:
            scratch = [e.name for e in os.scandir(site) if e.name.startswith(".db.sqlite3.tmp-")]
        restore_run.kill()
        restore_run.wait()
        if scratch:
            break
        path.write_bytes(live)  # it finished first: put the changed file back, try again
    assert scratch, "the restore was never caught half-way"
    assert path.read_bytes() == live
    engine = SQLite()
    assert [Path(left.name).name for left in engine.leftovers(db_at(path))] == scratch
    said = engine.recover(db_at(path), Journal(tmp_path / "journal", {"engine": "sqlite"}))
    assert "removed 1 scratch file" in said
    assert not [e for e in os.scandir(site) if e.name.startswith(".db.sqlite3.tmp-")]
    assert path.read_bytes() == live


@pytest.mark.parametrize("point", ["loaded", "replaced"])
def test_a_restore_killed_at_each_step_of_the_swap_is_old_or_new_and_recovered(
    tmp_path: Path, point: str
) -> None:
    """SIGKILL at a kill point: the file is the old one (loaded) or the new one (replaced),
    whole, and the next run's recovery says so and clears what was left."""
    site = tmp_path / "site"
    db = db_at(site / "db.sqlite3")
    write_project(site, {"default": db})
    data = adapter_for(db)
    data.populate()
    restored = data.snapshot()
    assert run_opskit("backup", cwd=site).returncode == 0
    data.mutate()
    changed = data.snapshot()
    killed = run_opskit("restore", "--yes", cwd=site, env={KILL_AT: f"sqlite:{point}"})
    assert killed.returncode == -9, killed.stderr
    assert data.snapshot() == (changed if point == "loaded" else {**restored, "sessions": 0})
    recovered = run_opskit("restore", "--recover", cwd=site)
    assert recovered.returncode == 0, recovered.stderr
    said = "nothing had been changed yet" if point == "loaded" else "it was done"
    assert said in recovered.stdout + recovered.stderr
    assert run_opskit("backup", cwd=site).returncode == 0  # sweeps the scratch file
    assert [p.name for p in site.iterdir() if ".tmp-" in p.name] == []


# --- no file created ----------------------------------------------------------------------------


def test_check_and_clear_sessions_fail_on_a_missing_file_and_never_create_it(
    tmp_path: Path,
) -> None:
    """A NAME that does not exist is one FAIL line naming it, and stays missing."""
    site = tmp_path / "site"
    missing = site / "data" / "typo.sqlite3"
    missing.parent.mkdir(parents=True)
    write_project(site, {"default": db_at(missing)})
    checked = run_opskit("check", cwd=site)
    assert checked.returncode != 0
    lines = [line for line in checked.stdout.splitlines() if str(missing) in line]
    assert [line.split(":")[0] for line in lines] == ["FAIL  database", "FAIL  sessions"]
    assert all("does not exist" in line and "fix:" in line for line in lines)
    cleared = run_opskit("clear-sessions", cwd=site)
    assert cleared.returncode == 1
    failed = [line for line in cleared.stderr.splitlines() if "step_failed" in line]
    assert len(failed) == 1
    assert str(missing) in failed[0]
    assert "does not exist" in failed[0]
    assert entries(missing.parent) == []
