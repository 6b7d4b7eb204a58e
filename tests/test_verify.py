"""opskit verify: re-read archives against their manifests, and restore-test them in scratch."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dbdata import adapter_for
from support.project import SUNDAY, run_opskit, write_project
from support.services import mysql, psql

from opskit import files
from opskit.archive import manifest as manifests
from opskit.archive import stream as archive
from opskit.backup import run_backup
from opskit.config import Config
from opskit.engines import DbParams, Tools, engine_for
from opskit.errors import OpsError
from opskit.restoretest import compare_counts, expected_counts, restore_test
from opskit.verify import Verdict, plan, run_verify

EXPECTED = {"item": 4, "django_session": 0}  # dbdata's rows; session data is excluded
KEYS = ("test-only",)  # the conftest config's signing key


def backed_up(config: Config, db: DbParams, when: Any = SUNDAY) -> Path:
    """Back up ``db`` and make sure the manifest holds its row counts; return the archive."""
    assert run_backup(config, {db.alias: db}, [db.alias], when).exit_code == 0
    path = next(config.backup_dir.glob("latest.*")).resolve()
    manifest = manifests.read(path)
    if "tables" not in manifest:  # until backup.py records them itself
        manifest["tables"] = engine_for(db, Tools()).table_counts(db)
        manifests.write(manifests.sign(manifest, KEYS), manifests.path_of(path))
    return path


def verify(config: Config, db: DbParams, *sources: str, **kw: Any) -> tuple[int, list[Verdict]]:
    every = kw.pop("every", False)
    targets = plan(config, {db.alias: db}, [db.alias], sources, every=every)
    report, verdicts = run_verify(config, {db.alias: db}, targets, **kw)
    assert report.exit_code == sum(not v.ok for v in verdicts)
    return report.exit_code, verdicts


def scratch_left(db: DbParams) -> list[str]:
    """Return scratch databases (or files) a restore test left behind."""
    if "postgresql" in db.django_engine:
        sql = f"SELECT datname FROM pg_database WHERE datname LIKE '{db.name}\\_\\_opskit%'"
        return psql(sql).split()
    if "mysql" in db.django_engine:
        return mysql(f"SHOW DATABASES LIKE '{db.name}\\_\\_opskit%'").split()
    return [p.name for p in Path(db.name).parent.parent.rglob("*.tmp-*")]


# --- re-reading archives ------------------------------------------------------------------------


def test_the_latest_backup_of_each_engine_verifies(any_db: DbParams, config: Config) -> None:
    adapter_for(any_db).populate()
    path = backed_up(config, any_db)
    code, (verdict,) = verify(config, any_db)
    assert code == 0
    assert (verdict.ok, verdict.archive, verdict.latest) == (True, path, True)
    assert "sha256 matches" in verdict.found
    assert "as recorded" in verdict.found
    assert verdict.line().startswith("OK    default  0-Sunday.")


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit_manifest(path: Path, **changes: Any) -> None:
    """Change the manifest and sign it again, as a bug or bad memory at backup time could."""
    manifest = manifests.read(path)
    manifest.update(changes)
    manifests.write(manifests.sign(manifest, KEYS), manifests.path_of(path))


def _forge_manifest(path: Path) -> None:
    """Change the manifest without the project's key."""
    manifest = manifests.read(path)
    manifest["raw_size"] = 12
    manifests.path_of(path).write_text(json.dumps(manifest))


def _cut_stream(path: Path) -> None:
    """Truncate the archive and make the manifest agree: only decompression can tell."""
    _truncate(path)
    _edit_manifest(path, size=path.stat().st_size, sha256=archive.sha256_file(path))


@pytest.mark.parametrize(
    ("damage", "found"),
    [
        (_flip, "its sha256 does not match the manifest"),
        (_truncate, "but its manifest says"),
        (lambda p: manifests.path_of(p).unlink(), "has no manifest"),
        (lambda p: _edit_manifest(p, raw_size=12), "bytes but 12 were written"),
        (_cut_stream, "it does not decompress"),
        (lambda p: _edit_manifest(p, engine="mysql"), "it is a mysql backup, not sqlite"),
        (_forge_manifest, "has a bad signature"),
    ],
)
def test_a_damaged_archive_fails_with_what_was_found_and_a_fix(
    sqlite_db: DbParams, config: Config, damage: Any, found: str
) -> None:
    adapter_for(sqlite_db).populate()
    damage(backed_up(config, sqlite_db))
    code, (verdict,) = verify(config, sqlite_db, "latest")
    assert code == 1
    assert not verdict.ok
    assert found in verdict.found
    assert "opskit backup --database default" in verdict.fix
    assert verdict.line().startswith("FAIL  default  0-Sunday.sqlite3.zst: ")


def test_all_checks_every_slot_and_safety_copy_and_counts_the_bad_ones(
    sqlite_db: DbParams, config: Config
) -> None:
    adapter_for(sqlite_db).populate()
    sunday = backed_up(config, sqlite_db)
    monday = backed_up(config, sqlite_db, SUNDAY + timedelta(days=1))
    backed_up(config, sqlite_db, SUNDAY + timedelta(days=2))
    safety = config.backup_dir / "pre-restore-20261122020000.sqlite3.zst"
    shutil.copy(sunday, safety)
    shutil.copy(manifests.path_of(sunday), manifests.path_of(safety))
    _flip(sunday)
    _truncate(monday)
    code, verdicts = verify(config, sqlite_db, every=True)
    assert code == 2
    assert [(v.label, v.ok) for v in verdicts] == [
        ("0-Sunday.sqlite3.zst", False),
        ("1-Monday.sqlite3.zst", False),
        ("2-Tuesday.sqlite3.zst", True),
        ("pre-restore-20261122020000.sqlite3.zst", True),
    ]
    assert "wait for the next Sunday" in verdicts[0].fix
    assert "check the disk" in verdicts[0].fix  # a changed checksum means the disk changed it


def test_weekdays_and_paths_can_be_named_and_are_checked_once(
    sqlite_db: DbParams, config: Config, tmp_path: Path
) -> None:
    adapter_for(sqlite_db).populate()
    path = backed_up(config, sqlite_db)
    code, verdicts = verify(config, sqlite_db, "latest", "0-Sunday", "sun", str(path))
    assert code == 0
    assert len(verdicts) == 1


@pytest.mark.parametrize(
    ("source", "found"),
    [("latest", "no latest backup"), ("Tuesday", "no 2-Tuesday backup"), ("Funday", "weekday")],
)
def test_a_missing_backup_is_a_failure(
    sqlite_db: DbParams, config: Config, source: str, found: str
) -> None:
    code, (verdict,) = verify(config, sqlite_db, source)
    assert code == 1
    assert found in verdict.found
    assert verdict.fix


# --- restore test -------------------------------------------------------------------------------


def test_restore_test_counts_every_table_and_drops_the_scratch_database(
    any_db: DbParams, config: Config
) -> None:
    data = adapter_for(any_db)
    data.populate()
    backed_up(config, any_db)
    data.mutate()  # the live database differs now; the test must not read or touch it
    before = data.snapshot()
    code, (verdict,) = verify(config, any_db, restore_at=SUNDAY)
    assert code == 0, verdict.line()
    assert verdict.restore is not None
    assert verdict.restore.tables == EXPECTED == verdict.restore.expected
    assert "restore test: 2 tables, 4 rows, as at backup time" in verdict.found
    scratch = verdict.restore.scratch
    assert scratch.endswith("__opskit_verify_20261122020000") or ".verify." in scratch
    assert scratch_left(any_db) == []
    assert data.snapshot() == before


def test_a_restore_that_differs_from_the_recorded_counts_fails(
    any_db: DbParams, config: Config
) -> None:
    adapter_for(any_db).populate()
    path = backed_up(config, any_db)
    _edit_manifest(path, tables={"item": 99, "django_session": 1, "gone": 3})
    code, (verdict,) = verify(config, any_db, restore_at=SUNDAY)
    assert code == 1
    assert "item has 4 rows, 99 expected" in verdict.found
    assert "table gone is missing" in verdict.found
    assert "django_session" not in verdict.found  # excluded data: 0 rows is right
    assert scratch_left(any_db) == []


def test_excluded_tables_are_expected_empty_by_name_or_pattern() -> None:
    manifest = {
        "tables": {"django_session": 3, "item": 2, "audit.log_2026": 5},
        "excluded_table_data": ["public.django_session", "log_*"],
    }
    assert expected_counts(manifest) == {"django_session": 0, "item": 2, "audit.log_2026": 0}
    assert expected_counts({"tables": None}) is None


def test_count_differences_are_named_table_by_table() -> None:
    restored = {"item": 3, "extra": 0, "same": 1}
    expected = {"item": 4, "gone": 1, "same": 1}
    assert compare_counts(restored, expected) == [
        "table gone is missing",
        "item has 3 rows, 4 expected",
        "table extra was not in the backup",
    ]


def test_a_manifest_without_counts_still_restore_tests(sqlite_db: DbParams, config: Config) -> None:
    adapter_for(sqlite_db).populate()
    path = backed_up(config, sqlite_db)
    manifest = manifests.read(path)
    del manifest["tables"]
    result = restore_test(config, sqlite_db, path, SUNDAY, manifest)
    assert result.tables == EXPECTED
    assert result.expected is None
    assert "no row counts" in result.summary()


def test_restore_test_runs_on_a_temp_file_with_its_manifest_in_memory(
    any_db: DbParams, config: Config
) -> None:
    """How backup --verify-restore uses it: before the archive is renamed into its slot."""
    adapter_for(any_db).populate()
    path = backed_up(config, any_db)
    temp = path.with_name(f".{path.name}.tmp-12345")
    shutil.copy(path, temp)
    manifest = manifests.read(path)
    manifests.path_of(path).unlink()
    result = restore_test(config, any_db, temp, SUNDAY, manifest)
    assert result.tables == EXPECTED == result.expected
    temp.unlink()
    assert scratch_left(any_db) == []


def _consistent(like: Path, content: bytes) -> Path:
    """Rewrite an archive with new content and a manifest that matches it."""
    written = archive.write_stream(io.BytesIO(content), like, "zstd")
    files.commit(written.path, like)
    _edit_manifest(like, size=written.size, sha256=written.sha256, raw_size=written.raw_size)
    return like


@pytest.mark.parametrize("fixture", ["pg_db", "mysql_db"])
def test_a_load_that_fails_drops_the_scratch_database(
    fixture: str, config: Config, request: pytest.FixtureRequest
) -> None:
    db: DbParams = request.getfixturevalue(fixture)
    adapter_for(db).populate()
    path = backed_up(config, db)
    with archive.open_content(path) as reader:
        content = reader.read(-1)
    _consistent(path, content + b"\nTHIS IS NOT SQL;\n")
    code, (verdict,) = verify(config, db, restore_at=SUNDAY)
    assert code == 1
    assert "restore test failed" in verdict.found
    assert scratch_left(db) == []


class _Interrupting:
    """An archive reader that is interrupted (as by Ctrl-C) after its first chunk."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.reads = inner, 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self.reads > 1:
            raise KeyboardInterrupt
        data: bytes = self.inner.read(min(size, 4096) if size > 0 else 4096)
        return data


@pytest.mark.parametrize("fixture", ["pg_db", "mysql_db", "sqlite_db"])
def test_ctrl_c_during_the_load_still_drops_the_scratch_database(
    fixture: str, config: Config, request: pytest.FixtureRequest
) -> None:
    db: DbParams = request.getfixturevalue(fixture)
    adapter_for(db).populate()
    path = backed_up(config, db)

    @contextlib.contextmanager
    def interrupted() -> Iterator[Any]:
        with archive.open_content(path) as reader:
            yield _Interrupting(reader)

    engine = engine_for(db, Tools())
    with (
        pytest.raises(KeyboardInterrupt),
        engine.scratch_copy(db, interrupted, SUNDAY, config.backup_dir),
    ):
        pytest.fail("the load cannot have finished")
    assert scratch_left(db) == []


@pytest.mark.parametrize(
    ("fixture", "create", "drop", "server", "hints"),
    [
        pytest.param(
            "pg_db",
            "CREATE ROLE {user} LOGIN NOCREATEDB",
            "DROP ROLE {user}",
            "127.0.0.1:5432",
            ["CREATEDB"],
            id="postgresql",
            marks=pytest.mark.postgresql,
        ),
        pytest.param(
            "mysql_db",
            "CREATE USER '{user}'@'%'; GRANT SELECT ON `{db}`.* TO '{user}'@'%'",
            "DROP USER '{user}'@'%'",
            "127.0.0.1:3306",
            [],
            id="mysql",
            marks=pytest.mark.mysql,
        ),
    ],
)
def test_an_account_that_may_not_create_databases_fails_the_restore_test_clearly(
    fixture: str,
    create: str,
    drop: str,
    server: str,
    hints: list[str],
    config: Config,
    request: pytest.FixtureRequest,
) -> None:
    db: DbParams = request.getfixturevalue(fixture)
    run_sql = psql if fixture == "pg_db" else mysql
    adapter_for(db).populate()
    path = backed_up(config, db)
    user = f"opskit_r_{secrets.token_hex(4)}"
    run_sql(create.format(user=user, db=db.name))
    try:
        weak = dataclasses.replace(db, user=user)
        with pytest.raises(OpsError) as caught:
            restore_test(config, weak, path, SUNDAY)
    finally:
        run_sql(drop.format(user=user))
    assert f"{user} may not create databases on {server}" in caught.value.line()
    for hint in hints:
        assert hint in caught.value.line()
    assert scratch_left(db) == []


# --- the command --------------------------------------------------------------------------------


def opskit_verify(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``opskit verify`` in a real process."""
    return run_opskit("verify", *args, cwd=site)


@pytest.fixture
def site(sqlite_db: DbParams, tmp_path: Path) -> Path:
    adapter_for(sqlite_db).populate()
    project = write_project(tmp_path / "project", {"default": sqlite_db})
    assert run_opskit("backup", cwd=project).returncode == 0
    return project


def test_verify_prints_one_line_per_archive_and_exits_with_the_bad_count(site: Path) -> None:
    good = opskit_verify(site, "--restore-test")
    assert good.returncode == 0, good.stderr
    (line,) = good.stdout.splitlines()
    assert line.startswith("OK    default  ")
    assert "restore test: 2 tables, 4 rows" in line
    assert "opskit verify: 0 errors, 1 database(s)" in good.stderr

    latest = next((site / "db_backups").glob("latest.*")).resolve()
    _flip(latest)
    bad = opskit_verify(site, "--json")
    assert bad.returncode == 1
    (row,) = json.loads(bad.stdout)
    assert row["ok"] is False
    assert "sha256 does not match" in row["found"]
    assert row["fix"]


def test_verify_refuses_sources_together_with_all(site: Path) -> None:
    result = opskit_verify(site, "latest", "--all")
    assert result.returncode == 64
    assert "not both" in result.stderr


def test_backup_with_verify_restore_tests_each_new_archive_before_it_is_kept(
    site: Path,
) -> None:
    done = run_opskit("backup", "--verify-restore", cwd=site)
    assert done.returncode == 0, done.stderr
    assert "event=restore_tested" in done.stderr
    assert "tables=2" in done.stderr
    manifest = json.loads(next((site / "db_backups").glob("*.zst.json")).read_text())
    assert manifest["tables"] == {"django_session": 1, "item": 4}
