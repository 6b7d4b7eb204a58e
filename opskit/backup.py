"""The backup job: per database dump → compress → verify → rotate → link latest."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from opskit import __version__, archive, codec, files, locks, logs, pgdir, pipes, rotation, space
from opskit.config import Config
from opskit.engines import DbParams, Engine, Tools, engine_for
from opskit.errors import OpsError
from opskit.progress import ProgressFn
from opskit.report import Report, StepFailed
from opskit.restoretest import restore_test

log = logs.get("backup")


def select(config: Config, databases: Mapping[str, DbParams], wanted: tuple[str, ...]) -> list[str]:
    """Return the aliases to work on: the flags', else OPSKIT DATABASES, else all."""
    from opskit.errors import ConfigError

    chosen = wanted or config.databases or tuple(databases)
    unknown = [a for a in chosen if a not in databases]
    if unknown:
        raise ConfigError(
            f"no database {', '.join(map(repr, unknown))} in settings.DATABASES",
            f"use one of {', '.join(databases)}",
        )
    return list(chosen)


def tools_of(config: Config) -> Tools:
    return Tools(pg_bin_dir=config.pg_bin_dir, mysql_bin_dir=config.mysql_bin_dir)


def run_backup(
    config: Config,
    databases: Mapping[str, DbParams],
    aliases: list[str],
    now: datetime,
    progress: ProgressFn | None = None,
) -> Report:
    """Back up each database into its weekday slot; a failed database never stops the next."""
    report = Report("backup")
    for alias in aliases:
        start = time.monotonic()
        db = databases[alias]
        with contextlib.suppress(StepFailed):
            written = backup_one(config, db, now, report, progress)
            report.bytes += written
        failed = report.failed(alias)
        event = log.error if failed else log.info
        event(
            "database_done",
            job="backup",
            database=alias,
            errors=len(failed),
            duration=round(time.monotonic() - start, 3),
            **report.details.get(alias, {}),
        )
    return report


def backup_one(
    config: Config,
    db: DbParams,
    now: datetime,
    report: Report,
    progress: ProgressFn | None = None,
) -> int:
    """Back up one database under its lock; a failed step raises StepFailed and ends it."""
    folder = rotation.db_dir(config.backup_dir, db.alias)
    with contextlib.ExitStack() as stack:
        with report.step("lock", db.alias):
            try:
                rotation.ensure_dir(folder)
            except OSError as exc:
                msg = f"cannot create {folder}: {exc.strerror}"
                raise OpsError(msg, "check --backup-dir") from None
            stack.enter_context(
                locks.hold(
                    locks.lock_path(folder, "backup"),
                    what=f"opskit backup of {db.alias!r}",
                    wait=config.lock_wait,
                )
            )
        return _backup_locked(config, db, now, report, folder, progress)
    raise AssertionError("unreachable")  # pragma: no cover - ExitStack never swallows


def _backup_locked(
    config: Config,
    db: DbParams,
    now: datetime,
    report: Report,
    folder: Path,
    progress: ProgressFn | None,
) -> int:
    alias = db.alias
    for stale in rotation.remove_stale_tmp(folder):
        log.info("removed_stale_temp_file", database=alias, path=str(stale))
    with report.step("engine", alias):
        # SQLite's snapshot goes beside the archives, where stale temp files are swept.
        engine = engine_for(db, tools_of(config), work_dir=folder)
    slot = rotation.slot_for(now)
    directory = config.format == "directory" and engine.vendor == "postgresql"
    if directory:
        final = folder / f"{slot}.{pgdir.SUFFIX}"
    else:
        final = folder / rotation.archive_name(slot, engine.suffix, config.compress)
        if config.format == "directory":
            log.info("format_plain", database=alias, reason="the directory format is PostgreSQL's")
    with report.step("space", alias):
        previous = space.expected_size(folder, final)
        if previous:
            space.check(folder, previous, "the previous archive")
        else:
            # No archive yet: the size of the tables is the only (generous) yardstick. A
            # server that cannot say is the dump step's to report, with its own message.
            try:
                size = engine.size(db)
            except OpsError:
                size = 0
            space.check(folder, size, "the database's size, as no archive exists yet")
    with report.step("dump", alias):
        log.info(
            "dump_started",
            database=alias,
            target=str(final),
            engine=engine.vendor,
            compressor=_compressor(config, directory),
        )
        if not directory and config.compress == "gzip" and codec.find("gzip").tool != "pigz":
            log.warning("gzip_on_one_core", hint="install pigz to compress on every core")
        started = time.time()
        versions = engine.versions(db)
        # Exact counts scan every table (and wait on locked ones): only when asked for.
        want_counts = config.count_rows or config.verify_restore
        tables = engine.table_counts(db) if want_counts else None
        listing = None
        if directory:
            written, listing = pgdir.dump_to_temp(
                engine,
                db,
                final,
                config.exclude_table_data,
                pgdir.level(config.compress, config.gzip_level),
            )
        else:
            written = dump_to_temp(
                engine,
                db,
                final,
                config.exclude_table_data,
                config.compress,
                config.level,
                progress,
            )
    try:
        with report.step("verify", alias):
            # Checked as it was written: it decompressed to its end and fsync found it whole.
            archive.check_size(written)
        manifest = _manifest(db, engine, config, final, written, versions, started)
        if listing is not None:
            manifest["archive_format"] = "directory"
            manifest["compression"] = pgdir.COMPRESSION[config.compress]
            manifest["files"] = listing
        if tables is not None:
            manifest["tables"] = tables
        if config.verify_restore:
            # On the temp file: a failed restore test leaves the slot and latest untouched.
            with report.step("verify-restore", alias):
                result = restore_test(config, db, written.path, now, manifest)
            log.info("restore_tested", database=alias, tables=len(result.tables), rows=result.rows)
        with report.step("rotate", alias):
            try:
                if directory:
                    pgdir.commit(written.path, final)
                else:
                    files.commit(written.path, final)
                archive.write_json(manifest, archive.manifest_path(final))
            except OSError as exc:
                msg = f"cannot rename into {final}: {exc.strerror}"
                raise OpsError(msg, "check the disk") from None
            for old in rotation.drop_other_formats(final):
                log.info("removed_other_format", database=alias, path=str(old))
    finally:
        archive.remove(written.path)
    with report.step("link-latest", alias):
        try:
            link = rotation.link_latest(final)
        except OSError as exc:
            raise OpsError(f"cannot update latest in {folder}: {exc}", "check the folder") from None
    report.details[alias] = {
        "archive": str(final),
        "bytes": written.size,
        "raw_bytes": written.raw_size,
        "ratio": manifest["ratio"],
    }
    log.info("latest_linked", database=alias, link=str(link), target=final.name)
    return written.size


def _compressor(config: Config, directory: bool) -> str:
    """Say what compresses: the program (or library), or pg_dump's own for a directory."""
    if directory:
        level = pgdir.level(config.compress, config.gzip_level)
        return f"pg_dump (gzip level {level}, {pgdir.jobs()} jobs)" if level else "none"
    return codec.find(config.compress).label


def dump_to_temp(
    engine: Engine,
    db: DbParams,
    final: Path,
    exclude: tuple[str, ...],
    compress: str,
    level: int,
    progress: ProgressFn | None = None,
) -> archive.Written:
    """Stream a dump into a verified temp file beside ``final``; the dump's exit is checked last."""
    written = None
    try:
        with engine.dump(db, exclude) as stream:
            written = pipes.compress_to_temp(
                stream, final, compress, level, progress, f"dump {db.alias}"
            )
    except BaseException:
        if written is not None:
            written.path.unlink(missing_ok=True)
        raise
    return written


def _manifest(
    db: DbParams,
    engine: Engine,
    config: Config,
    final: Path,
    written: archive.Written,
    versions: dict[str, str],
    started: float,
) -> dict[str, Any]:
    finished = time.time()
    return {
        "format": 1,
        "opskit_version": __version__,
        "engine": engine.vendor,
        "django_engine": db.django_engine,
        "alias": db.alias,
        "database": db.name,
        "host": db.host,
        "port": db.port,
        "user": db.user,
        "file": final.name,
        "compression": config.compress,
        "size": written.size,
        "raw_size": written.raw_size,
        "ratio": round(written.raw_size / written.size, 2) if written.size else None,
        "sha256": written.sha256,
        "excluded_table_data": list(config.exclude_table_data),
        "tools": versions,
        "server_version": versions.get("server", ""),
        "started_at": datetime.fromtimestamp(started).astimezone().isoformat(),
        "finished_at": datetime.fromtimestamp(finished).astimezone().isoformat(),
        "duration": round(finished - started, 3),
        "verified": True,
        "hostname": socket.gethostname(),
    }
