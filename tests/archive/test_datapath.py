"""The data path: compressor programs on OS pipes, their in-process fallback, directory archives."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from dbdata import adapter_for
from support.project import SUNDAY, run_opskit, write_project
from support.services import need_tools
from test_roundtrip import backup, restore

from opskit.archive import codec, pipes
from opskit.archive import stream as archive
from opskit.config import Config, build_config
from opskit.engines import DbParams
from opskit.engines.sqlite import SQLite
from opskit.errors import ArchiveError, CommandFailed, ConfigError
from opskit.report import Report, StepFailed
from opskit.restore import restore_archive

DUMP_TOOLS = ("pg_dump", "psql", "pg_restore", "mariadb-dump", "mariadb", "mysqldump", "mysql")


def path_without_compressors(tmp_path: Path) -> str:
    """Return a PATH holding only the database client tools: no zstd, pigz or gzip."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in DUMP_TOOLS:
        found = shutil.which(tool)
        if found:
            (folder / tool).symlink_to(found)
    return str(folder)


def test_each_compression_uses_its_program_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert codec.find("zstd").program == shutil.which("zstd")
    gzip = codec.find("gzip").program
    assert gzip == (shutil.which("pigz") or shutil.which("gzip"))
    assert codec.find("none").program is None
    monkeypatch.setenv("PATH", "/nonexistent")
    assert codec.find("zstd") == codec.Codec("zstd", None)
    assert codec.find("zstd").label == "in-process zstandard"


@pytest.mark.parametrize("compress", ["zstd", "gzip", "none"])
def test_a_piped_archive_decompresses_to_the_dump_and_records_its_sizes(
    tmp_path: Path, compress: str
) -> None:
    content = b"".join(b"row %d: %s\n" % (i, os.urandom(8).hex().encode()) for i in range(50000))
    source = tmp_path / "dump.sql"
    source.write_bytes(content)
    final = tmp_path / f"0-Sunday.sql{codec.CODECS[compress].extension}"
    seen: list[int] = []
    with source.open("rb") as stream:
        written = pipes.compress_to_temp(
            stream, final, compress, 3, lambda _l, done, _t, _f: seen.append(done), "dump"
        )
    assert written.raw_size == len(content)
    assert written.size == written.path.stat().st_size
    assert written.sha256 == archive.sha256_file(written.path)
    assert oct(written.path.stat().st_mode & 0o777) == "0o600"
    assert seen[-1] == len(content)  # progress counts the dump's bytes, not the archive's
    with pipes.decompressed(written.path, compress) as out:
        assert b"".join(iter(lambda: out.read(1 << 16), b"")) == content


def test_a_compressor_that_fails_is_named_and_leaves_no_temp_file(tmp_path: Path) -> None:
    source = tmp_path / "dump.sql"
    source.write_bytes(b"x" * 100000)
    final = tmp_path / "0-Sunday.sql.zst"
    failing = ["sh", "-c", "head -c 10 >/dev/null; echo 'out of memory' >&2; exit 3"]
    with (
        source.open("rb") as stream,
        pytest.raises(CommandFailed, match="a compressor exited with status 3: out of memory"),
        pipes.through(stream, failing, what="a compressor") as out,
    ):
        archive.write_verified(out, final, "zstd")
    assert list(tmp_path.iterdir()) == [source]


def test_a_cut_stream_is_refused_when_loaded(tmp_path: Path) -> None:
    source = tmp_path / "dump.sql"
    source.write_bytes(os.urandom(300000))
    with source.open("rb") as stream:
        written = pipes.compress_to_temp(stream, tmp_path / "a.sql.zst", "zstd", 3)
    cut = tmp_path / "cut.sql.zst"
    cut.write_bytes(written.path.read_bytes()[:-1000])
    with pytest.raises(ArchiveError, match="truncated or corrupt"), pipes.decompressed(cut) as out:
        _read_to_the_end(out)


def test_content_that_differs_from_its_manifest_is_refused_at_the_end(tmp_path: Path) -> None:
    """A loader's proof of the end fails when the bytes read are not the manifest's."""
    source = tmp_path / "dump.sql"
    source.write_bytes(b"SELECT 1;\n" * 1000)
    with source.open("rb") as stream:
        written = pipes.compress_to_temp(stream, tmp_path / "a.sql.zst", "zstd", 3)
    wrong = pipes.Expect(written.size, "0" * 64)
    with (
        pytest.raises(ArchiveError, match="changed while it was read"),
        pipes.decompressed(written.path, "zstd", expect=wrong) as out,
    ):
        _read_to_the_end(out)
    right = pipes.Expect(written.size, written.sha256)
    with pipes.decompressed(written.path, "zstd", expect=right) as out:
        assert b"".join(iter(lambda: out.read(1 << 16), b"")) == source.read_bytes()
        out.check_end()


def _read_to_the_end(out: pipes.ArchiveContent) -> None:
    """Read a content as a loader does, then ask for the proof of its end."""
    while out.read(1 << 16):
        pass
    out.check_end()


def test_without_compressor_programs_backup_and_restore_still_work(
    pg_db: DbParams, tmp_path: Path
) -> None:
    data = adapter_for(pg_db)
    data.populate()
    before = data.snapshot()
    site = write_project(tmp_path / "site", {"default": pg_db}, "{'COMPRESS': 'gzip'}")
    env = {"PATH": path_without_compressors(tmp_path)}
    done = run_opskit("backup", cwd=site, env=env)
    assert done.returncode == 0, done.stderr
    assert "in-process zlib" in done.stderr
    assert "gzip_on_one_core" in done.stderr
    data.mutate()
    done = run_opskit("restore", "--yes", "--drop-old", cwd=site, env=env)
    assert done.returncode == 0, done.stderr
    assert data.snapshot() == {**before, "sessions": 0}


def test_gzip_uses_pigz_and_says_so(sqlite_db: DbParams, tmp_path: Path) -> None:
    need_tools("pigz")
    adapter_for(sqlite_db).populate()
    site = write_project(tmp_path / "site", {"default": sqlite_db}, "{'COMPRESS': 'gzip'}")
    done = run_opskit("backup", cwd=site)
    assert done.returncode == 0, done.stderr
    assert "compressor=" in done.stderr
    assert "pigz" in done.stderr
    assert "gzip_on_one_core" not in done.stderr


def directory_config(config: Config) -> Config:
    return dataclasses.replace(config, format="directory")


def test_directory_archives_round_trip_with_a_manifest_of_every_file(
    pg_db: DbParams, config: Config
) -> None:
    data = adapter_for(pg_db)
    data.populate()
    before = data.snapshot()
    cfg = directory_config(config)
    assert backup(cfg, pg_db).exit_code == 0
    folder = cfg.backup_dir / "0-Sunday.pgdir"
    assert (folder / "toc.dat").is_file()
    assert (cfg.backup_dir / "latest.pgdir").resolve() == folder
    manifest = json.loads((cfg.backup_dir / "0-Sunday.pgdir.json").read_text())
    assert manifest["archive_format"] == "directory"
    assert sorted(manifest["files"]) == sorted(p.name for p in folder.iterdir())
    for name, (size, sha) in manifest["files"].items():
        assert (folder / name).stat().st_size == size
        assert archive.sha256_file(folder / name) == sha
        assert oct((folder / name).stat().st_mode & 0o777) == "0o600"
    assert manifest["size"] == archive.size_of(folder)

    site = write_project(
        cfg.backup_dir.parent / "site", {"default": pg_db}, f"{{'BACKUP_DIR': '{cfg.backup_dir}'}}"
    )
    done = run_opskit("verify", cwd=site)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK")
    assert "0-Sunday.pgdir" in done.stdout
    assert f"bytes={manifest['size']} " in done.stderr

    data.mutate()
    assert restore(cfg, pg_db).exit_code == 0
    assert data.snapshot() == {**before, "sessions": 0}


def test_switching_format_replaces_the_slot_and_sweeps_a_killed_runs_folder(
    pg_db: DbParams, config: Config
) -> None:
    adapter_for(pg_db).populate()
    assert backup(config, pg_db).exit_code == 0
    leftover = config.backup_dir / ".0-Sunday.pgdir.tmp-999999"
    leftover.mkdir()
    (leftover / "toc.dat").write_bytes(b"half")
    assert backup(directory_config(config), pg_db).exit_code == 0
    names = sorted(p.name for p in config.backup_dir.iterdir() if not p.name.startswith(".op"))
    assert names == ["0-Sunday.pgdir", "0-Sunday.pgdir.json", "latest.pgdir"]
    assert backup(config, pg_db).exit_code == 0  # and back: the folder goes
    names = sorted(p.name for p in config.backup_dir.iterdir() if not p.name.startswith(".op"))
    assert names == ["0-Sunday.sql.zst", "0-Sunday.sql.zst.json", "latest.sql.zst"]


def test_a_changed_file_in_a_directory_archive_is_named_and_nothing_is_touched(
    pg_db: DbParams, config: Config, tmp_path: Path
) -> None:
    data = adapter_for(pg_db)
    data.populate()
    cfg = directory_config(config)
    assert backup(cfg, pg_db).exit_code == 0
    folder = cfg.backup_dir / "0-Sunday.pgdir"
    biggest = max(folder.iterdir(), key=lambda p: p.stat().st_size)
    raw = bytearray(biggest.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    biggest.write_bytes(bytes(raw))
    data.mutate()
    changed = data.snapshot()

    report = Report("restore")
    with pytest.raises(StepFailed):
        restore_archive(cfg, {pg_db.alias: pg_db}, pg_db.alias, "latest", SUNDAY, report)
    (failure,) = report.failed(pg_db.alias)
    assert failure.name == "verify"
    assert biggest.name in failure.reason
    assert data.snapshot() == changed

    site = write_project(
        tmp_path / "site", {"default": pg_db}, f"{{'BACKUP_DIR': '{cfg.backup_dir}'}}"
    )
    done = run_opskit("verify", cwd=site)
    assert done.returncode == 1
    assert done.stdout.startswith("FAIL")
    assert "0-Sunday.pgdir" in done.stdout


def test_directory_format_applies_to_postgresql_only(sqlite_db: DbParams, config: Config) -> None:
    adapter_for(sqlite_db).populate()
    report = backup(directory_config(config), sqlite_db)
    assert report.exit_code == 0
    assert (config.backup_dir / "0-Sunday.sqlite3.zst").is_file()
    assert not list(config.backup_dir.glob("*.pgdir"))


def test_a_directory_archive_restore_test_counts_its_rows(pg_db: DbParams, config: Config) -> None:
    data = adapter_for(pg_db)
    data.populate()
    cfg = dataclasses.replace(directory_config(config), verify_restore=True)
    report = backup(cfg, pg_db, SUNDAY)
    assert report.exit_code == 0, report.failed()
    manifest = json.loads((cfg.backup_dir / "0-Sunday.pgdir.json").read_text())
    # Counted in the live database, then found again in the scratch copy of the folder.
    assert manifest["tables"]["django_session"] == 1
    assert all(isinstance(n, int) for n in manifest["tables"].values())


def write_during(db: DbParams) -> str:
    """Try one write with a short wait; return "" if it went through, else SQLite's error."""
    conn = sqlite3.connect(db.name, timeout=0.2)
    try:
        conn.execute("INSERT INTO extra_writes VALUES (1)")
        conn.commit()
        return ""
    except sqlite3.OperationalError as exc:
        return str(exc)
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("journal", "sessions", "locked"),
    [("delete", 0, True), ("delete", 1, False), ("wal", 0, False)],
    ids=["file-under-read-lock", "snapshot-when-excluded-rows", "snapshot-in-wal-mode"],
)
def test_sqlite_streams_the_live_file_only_while_writers_are_held_off(
    sqlite_db: DbParams, journal: str, sessions: int, locked: bool
) -> None:
    data = adapter_for(sqlite_db)
    data.populate()
    data.execute(f"PRAGMA journal_mode={journal}", "CREATE TABLE extra_writes (n INTEGER)")
    if not sessions:
        data.execute("DELETE FROM django_session")
    engine = SQLite(work_dir=Path(sqlite_db.name).parent)
    with engine.dump(sqlite_db, ("django_session",)) as stream:
        error = write_during(sqlite_db)
        copy = Path(sqlite_db.name).with_name("copy.sqlite3")
        copy.write_bytes(stream.read())
    assert ("locked" in error) is locked, error
    assert write_during(sqlite_db) == ""  # and writers go on once the dump is done
    with contextlib.closing(sqlite3.connect(copy)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*) FROM django_session").fetchone() == (0,)
        # A write that went through during the dump is not in it: the copy is of one moment.
        assert conn.execute("SELECT count(*) FROM extra_writes").fetchone() == (0,)


@pytest.mark.parametrize(
    ("settings", "level"),
    [({}, 1), ({"COMPRESS": "gzip"}, 1), ({"COMPRESS": "gzip", "GZIP_LEVEL": 6}, 6)],
)
def test_compression_levels_default_to_the_fastest(
    tmp_path: Path, settings: dict[str, object], level: int
) -> None:
    config = build_config(
        project_dir=tmp_path, settings_module="s", settings_opskit=settings, environ={}
    )
    assert config.level == level


@pytest.mark.parametrize("value", ["0", "10", "fast"])
def test_a_bad_gzip_level_is_one_line_naming_the_range(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="GZIP_LEVEL") as caught:
        build_config(
            project_dir=tmp_path,
            settings_module="s",
            settings_opskit={},
            environ={"OPSKIT_GZIP_LEVEL": value},
        )
    assert "1" in caught.value.line()
    assert "\n" not in caught.value.line()
