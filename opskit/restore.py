"""The restore job: check the archive, then replace the database or leave it as it was."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from opskit import archive, files, locks, logs, pipes, rotation
from opskit.backup import dump_to_temp, tools_of
from opskit.config import Config
from opskit.engines import DbParams, Engine, engine_for, vendor_of
from opskit.engines.base import RestoreContext
from opskit.errors import RestoreRefused
from opskit.progress import ProgressFn
from opskit.report import Report

log = logs.get("restore")


@dataclasses.dataclass
class RestorePlan:
    """A checked archive and the database it will replace."""

    db: DbParams
    engine: Engine
    archive: Path
    manifest: dict[str, Any]

    def describe(self) -> str:
        m = self.manifest
        return (
            f"replace {self.engine.vendor} {self.db.describe()} (alias {self.db.alias!r})"
            f" with {self.archive} ({m.get('database', '?')} backed up {m.get('finished_at', '?')},"
            f" {m.get('raw_size', 0):,} bytes of dump)"
        )


def resolve_source(config: Config, alias: str, source: str) -> Path:
    """Turn ``latest``, a weekday or a path into an archive path."""
    folder = rotation.db_dir(config.backup_dir, alias)
    as_path = Path(source).expanduser()
    ends = (".zst", ".gz", ".sql", ".sqlite3", ".pgdir")
    looks_like_path = "/" in source or source.rstrip("/").endswith(ends)
    if looks_like_path or (as_path.exists() and source != "latest"):
        if not (as_path.is_file() or (as_path / "toc.dat").is_file()):
            raise RestoreRefused(f"{source} is not an archive", "run opskit list")
        return as_path.resolve()
    return rotation.find_archive(folder, source)


def plan_restore(
    config: Config, databases: Mapping[str, DbParams], alias: str, source: str, report: Report
) -> RestorePlan:
    """Check everything that can be checked before the database is touched."""
    with report.step("verify", alias):
        if alias not in databases:
            raise RestoreRefused(
                f"no database {alias!r} in settings.DATABASES", f"use one of {', '.join(databases)}"
            )
        db = databases[alias]
        path = resolve_source(config, alias, source)
        manifest = archive.read_manifest(path)
        archive.check_checksum(path, manifest)
        target_vendor = vendor_of(db.django_engine)
        if manifest["engine"] != target_vendor:
            raise RestoreRefused(
                f"{path.name} is a {manifest['engine']} backup but {alias!r} is {target_vendor}",
                "pick an archive of the same engine",
            )
        engine = engine_for(db, tools_of(config))
    log.info("restore_checked", database=alias, archive=str(path), sha256=manifest["sha256"])
    return RestorePlan(db, engine, path, manifest)


def run_restore(
    config: Config,
    plan: RestorePlan,
    now: datetime,
    report: Report,
    *,
    drop_old: bool = False,
    progress: ProgressFn | None = None,
) -> list[str]:
    """Load the planned archive; on any failure the database is left as it was."""
    db = plan.db
    ctx = RestoreContext(
        work_dir=rotation.db_dir(config.backup_dir, db.alias),
        now=now,
        drop_old=drop_old,
        save_safety_copy=lambda target: _safety_copy(config, plan.engine, target, now),
    )
    folder = rotation.db_dir(config.backup_dir, db.alias)
    with contextlib.ExitStack() as stack:
        with report.step("lock", db.alias):
            rotation.ensure_dir(folder)
            what = f"opskit restore of {db.alias!r}"
            # The backup lock too: a backup of a half-loaded database must never become latest.
            for job in ("restore", "backup"):
                path = locks.lock_path(folder, job)
                stack.enter_context(locks.hold(path, what=what, wait=config.lock_wait))
        log.info("restore_started", database=db.alias, archive=str(plan.archive))
        with report.step("load", db.alias):
            load = pipes.opener(plan.archive, None, progress, f"restore {db.alias}")
            plan.engine.restore(db, load, ctx)
    for note in ctx.notes:
        log.info("restore_note", database=db.alias, note=note)
    report.bytes += plan.manifest.get("raw_size", 0)
    return ctx.notes


def _safety_copy(config: Config, engine: Engine, db: DbParams, now: datetime) -> Path:
    """Dump the current database to a verified archive beside the backups."""
    folder = rotation.db_dir(config.backup_dir, db.alias)
    rotation.ensure_dir(folder)
    final = folder / f"pre-restore-{now:%Y%m%d%H%M%S}.{engine.suffix}.zst"
    written = dump_to_temp(engine, db, final, (), "zstd", config.zstd_level)  # always .zst
    try:
        archive.check_size(written)
        files.commit(written.path, final)
    except BaseException:
        written.path.unlink(missing_ok=True)
        raise
    archive.write_json(
        {
            "engine": engine.vendor,
            "database": db.name,
            "alias": db.alias,
            "file": final.name,
            "compression": "zstd",
            "size": written.size,
            "raw_size": written.raw_size,
            "sha256": written.sha256,
            "finished_at": now.isoformat(),
            "safety_copy": True,
        },
        archive.manifest_path(final),
    )
    log.info("safety_copy_written", database=db.alias, path=str(final))
    return final
