"""Bad archives given to a real ``opskit restore`` and ``opskit verify``: refused in one line.

One PostgreSQL database (changed since its backup, so a restore that happened would show) and
one good archive serve every case; each case damages a copy of the archive.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dbdata import adapter_for
from support.faultkit import (
    archive_of,
    clean_env,
    state,
    step_failures,
    temp_files,
)
from support.project import run_opskit, write_project
from support.services import psql, random_name
from support.shared_pg import drop_pg_databases, shared_pg

from opskit.archive import manifest as manifests
from opskit.engines import DbParams


class Site:
    """A project whose PostgreSQL database differs from its one good archive."""

    def __init__(self, folder: Path, db: DbParams) -> None:
        self.folder = folder
        self.db = db
        self.backups = folder / "db_backups"

    def snapshot(self) -> object:
        return adapter_for(self.db).snapshot()

    def opskit(self, *args: str | Path) -> tuple[int, str, str]:
        done = run_opskit(*args, cwd=self.folder, env=clean_env())
        return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def site(pg_server: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    name = random_name()
    psql(f'CREATE DATABASE "{name}"')
    try:
        db = shared_pg(name)
        adapter_for(db).populate()
        made = Site(
            write_project(tmp_path_factory.mktemp("archives") / "site", {"default": db}), db
        )
        code, _, stderr = made.opskit("backup")
        assert code == 0, stderr
        adapter_for(db).mutate()
        yield made
    finally:
        drop_pg_databases(name)


def copy_of(archive: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / archive.name
    shutil.copy(archive, copy)
    shutil.copy(f"{archive}.json", f"{copy}.json")
    return copy


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def no_manifest(path: Path) -> None:
    Path(f"{path}.json").unlink()


def garbled_manifest(path: Path) -> None:
    Path(f"{path}.json").write_text('{"engine": "postgresql", "sha2')


def other_engine(path: Path) -> None:
    """Replace it by a real SQLite backup (archive and manifest written by opskit)."""
    folder = path.parent / "sqlite-site"
    db_file = folder / "db.sqlite3"
    folder.mkdir()
    with sqlite3.connect(db_file) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    sqlite = DbParams(
        alias="default", django_engine="django.db.backends.sqlite3", name=str(db_file)
    )
    done = run_opskit("backup", cwd=write_project(folder, {"default": sqlite}), env=clean_env())
    assert done.returncode == 0, done.stderr
    made = archive_of(folder / "db_backups")
    shutil.copy(made, path)
    shutil.copy(f"{made}.json", f"{path}.json")


def forged_manifest(path: Path) -> None:
    """Someone without the project's key makes the manifest agree with other bytes."""
    flip_byte(path)
    rewrite_manifest(path, sign=False)


DAMAGES: dict[str, tuple[Callable[[Path], None], str, str, str]] = {
    # name: (damage, restore's failed step, restore's reason, verify's reason). A stream's
    # sha256 is checked as it loads: a flipped byte fails the load, and nothing is committed.
    "flipped-byte": (flip_byte, "load", "truncated or corrupt", "sha256"),
    "truncated": (truncate, "verify", "but its manifest says", "truncated or replaced"),
    "empty": (empty, "verify", "is 0 bytes but its manifest says", "truncated or replaced"),
    "no-manifest": (no_manifest, "verify", "has no manifest", "has no manifest"),
    "garbled-manifest": (garbled_manifest, "verify", "is unreadable", "unreadable"),
    "forged-manifest": (forged_manifest, "verify", "has a bad signature", "bad signature"),
    "other-engine": (
        other_engine,
        "verify",
        "is a sqlite backup but 'default' is postgresql",
        "sqlite",
    ),
}


def damaged(site: Site, tmp_path: Path, name: str) -> Path:
    bad = copy_of(archive_of(site.backups), tmp_path / "bad")
    DAMAGES[name][0](bad)
    return bad


@pytest.mark.parametrize("name", DAMAGES)
def test_restore_refuses_a_bad_archive_in_one_line_and_touches_nothing(
    site: Site, tmp_path: Path, name: str
) -> None:
    bad = damaged(site, tmp_path, name)
    before, archives = site.snapshot(), state(site.backups)

    code, _, stderr = site.opskit("restore", bad, "--yes")

    assert code == 1, stderr
    (line,) = step_failures(stderr)
    assert f"step={DAMAGES[name][1]}" in line
    assert DAMAGES[name][2] in line
    assert bad.name in line
    assert "Traceback" not in stderr
    assert stderr.rstrip().splitlines()[-1].startswith("opskit restore: 1 error,")
    assert site.snapshot() == before
    assert state(site.backups) == archives
    assert temp_files(site.backups) == []
    assert psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{site.db.name}_%'") == ""


def rewrite_manifest(path: Path, sign: bool = True) -> None:
    """Make the manifest agree with the archive's bytes again (size and sha256).

    Signed with the project's key (as a bug at backup time could), unless ``sign`` is False.
    """
    manifest = json.loads(Path(f"{path}.json").read_text())
    data = path.read_bytes()
    manifest.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    if sign:
        manifests.sign(manifest, ("test-only",))
    Path(f"{path}.json").write_text(json.dumps(manifest))


def test_a_cut_archive_with_a_matching_manifest_fails_the_load_and_changes_nothing(
    site: Site, tmp_path: Path
) -> None:
    # The checksum cannot catch this one: only reading the stream to its end can.
    bad = copy_of(archive_of(site.backups), tmp_path / "bad")
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) * 3 // 4])
    rewrite_manifest(bad)
    before, archives = site.snapshot(), state(site.backups)

    code, _, stderr = site.opskit("restore", bad, "--yes")

    assert code == 1, stderr
    (line,) = step_failures(stderr)
    assert "step=load" in line
    assert "truncated" in line
    assert site.snapshot() == before
    assert psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{site.db.name}_%'") == ""
    assert state(site.backups) == archives
    assert temp_files(site.backups) == []


@pytest.mark.parametrize("name", DAMAGES)
def test_verify_reports_a_bad_archive_and_exits_1(site: Site, tmp_path: Path, name: str) -> None:
    bad = damaged(site, tmp_path, name)
    archives = state(site.backups)

    code, stdout, stderr = site.opskit("verify", bad)

    assert code == 1, stderr
    (line,) = [line for line in stdout.splitlines() if line.strip()]
    assert line.startswith("FAIL")
    assert str(bad) in line
    assert DAMAGES[name][3] in line
    assert "Traceback" not in stderr
    assert state(site.backups) == archives


def test_verify_catches_a_cut_stream_whose_manifest_matches(site: Site, tmp_path: Path) -> None:
    bad = copy_of(archive_of(site.backups), tmp_path / "bad")
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) * 3 // 4])
    rewrite_manifest(bad)
    code, stdout, stderr = site.opskit("verify", bad)
    assert code == 1, stderr
    assert stdout.startswith("FAIL")
    assert "decompress" in stdout


def test_verify_passes_good_archives_and_counts_each_bad_one(site: Site, tmp_path: Path) -> None:
    good = archive_of(site.backups)
    one, two = damaged(site, tmp_path / "1", "flipped-byte"), damaged(site, tmp_path / "2", "empty")
    code, stdout, stderr = site.opskit("verify", good, one, two)
    assert code == 2, stderr
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert [line.split()[0] for line in lines] == ["OK", "FAIL", "FAIL"]
    code, stdout, stderr = site.opskit("verify")
    assert code == 0, stderr
    assert stdout.startswith("OK")
