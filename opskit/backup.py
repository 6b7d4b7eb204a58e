"""The backup job: per database dump → compress → verify → commit → link latest."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import socket
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opskit import __version__, logs
from opskit.archive import formats, locks, manifest, rotation, space
from opskit.archive import stream as archive
from opskit.config import Config
from opskit.engines import DbParams, Engine, Tools, engine_for
from opskit.errors import ConfigError, OpsError
from opskit.progress import ProgressFn
from opskit.report import Report, StepFailed
from opskit.restoretest import restore_test

if TYPE_CHECKING:
    from opskit.offsite.push import OffsitePush

log = logs.get("backup")


def select(config: Config, databases: Mapping[str, DbParams], wanted: tuple[str, ...]) -> list[str]:
    """Return the aliases to work on: the flags', else OPSKIT DATABASES, else all."""
    chosen = wanted or config.databases or tuple(databases)
    unknown = [a for a in chosen if a not in databases]
    if unknown:
        raise ConfigError(
            f"no database {', '.join(map(repr, unknown))} in settings.DATABASES",
            f"use one of {', '.join(databases)}",
        )
    return list(chosen)


def run_backup(
    config: Config,
    databases: Mapping[str, DbParams],
    aliases: list[str],
    now: datetime,
    progress: ProgressFn | None = None,
) -> Report:
    """Back up each database into its weekday slot; a failed database never stops the next."""
    report = Report("backup")
    pusher = None
    if config.offsite:
        from opskit.offsite.push import OffsitePush

        pusher = OffsitePush(config.offsite, report, now)
    for alias in aliases:
        start = time.monotonic()
        db = databases[alias]
        with contextlib.suppress(StepFailed):
            written = backup_one(config, db, now, report, progress, pusher)
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
    for live in config.media_snapshots:
        from opskit.offsite import media

        with contextlib.suppress(StepFailed), report.step("media", None):
            media.take(config.backup_dir, live, now)
    if pusher is not None:
        pusher.finish()
    return report


@contextlib.contextmanager
def locked_folder(
    config: Config, db: DbParams, report: Report, jobs: tuple[str, ...], what: str
) -> Iterator[Path]:
    """Create the database's backup folder if needed and hold the jobs' locks in it."""
    folder = rotation.db_dir(config.backup_dir, db.alias)
    with contextlib.ExitStack() as stack:
        with report.step("lock", db.alias):
            rotation.ensure_dir(folder)
            for job in jobs:
                path = locks.lock_path(folder, job)
                stack.enter_context(locks.hold(path, what=what, wait=config.lock_wait))
        yield folder


def backup_one(
    config: Config,
    db: DbParams,
    now: datetime,
    report: Report,
    progress: ProgressFn | None = None,
    pusher: OffsitePush | None = None,
) -> int:
    """Back up one database under its lock; a failed step raises StepFailed and ends it.

    With ``pusher``, the committed archive is pushed off-site while the lock is still held.
    """
    what = f"opskit backup of {db.alias!r}"
    with locked_folder(config, db, report, ("backup",), what) as folder:
        with report.step("engine", db.alias):
            # SQLite's snapshot goes beside the archives, where stale temp files are swept.
            engine = engine_for(db, Tools.of(config), work_dir=folder)
        with report.step("recover", db.alias):
            recover_folder(config, db, engine, folder)
        job = _Backup(config, db, engine, folder, now, report, progress)
        size = job.run()
        if pusher is not None:
            final = Path(report.details[db.alias]["archive"])
            pusher.database(db.alias, engine.suffix, final, manifest.read(final))
        return size
    raise AssertionError("unreachable")  # pragma: no cover - the with block returns


def recover_folder(config: Config, db: DbParams, engine: Engine, folder: Path) -> list[str]:
    """Finish what killed runs left in a folder (a commit, a restore); say what was done."""
    from opskit.engines import journal

    done = []
    for line in rotation.recover_commits(folder):
        log.warning("interrupted_commit", database=db.alias, action=line)
        done.append(line)
    for stale in rotation.remove_stale_tmp(folder):
        log.info("removed_stale_temp_file", database=db.alias, path=str(stale))
    left = journal.load(folder)
    if left is None:
        _release_maintenance(config, db)  # of a restore killed after its journal was removed
    else:
        what = left.describe()
        try:
            if left.phase in ("started", "done"):
                action = (
                    "nothing had been changed yet" if left.phase == "started" else "it was done"
                )
            else:
                action = engine.recover(db, left)
        except OpsError as exc:
            raise OpsError(
                f"{what}, and it cannot be finished or undone now: {exc.message}",
                exc.hint or f"run opskit restore --recover --database {db.alias}",
            ) from None
        left.finish()
        log.warning("restore_recovered", database=db.alias, found=what, action=action)
        done.append(f"{what}: {action}")
        _release_maintenance(config, db)
    return done


def _release_maintenance(config: Config, db: DbParams) -> None:
    """The journal is resolved: drop the maintenance a killed restore of ``db`` left on."""
    from opskit import maintenance

    try:
        if maintenance.release(config.state_dir, db.alias):
            log.warning("maintenance_off_after_recovery", database=db.alias)
    except OpsError as exc:
        log.error("maintenance_not_turned_off", database=db.alias, reason=exc.line())


@dataclasses.dataclass
class _Backup:
    """One database's backup, step by step, inside its locked folder."""

    config: Config
    db: DbParams
    engine: Engine
    folder: Path
    now: datetime
    report: Report
    progress: ProgressFn | None

    @property
    def alias(self) -> str:
        return self.db.alias

    @functools.cached_property
    def format(self) -> formats.ArchiveFormat:
        return formats.for_backup(self.config, self.engine, self.db)

    def run(self) -> int:
        final = self._final()
        with self.report.step("space", self.alias):
            self._check_space(final)
        with self.report.step("dump", self.alias):
            written, facts = self._dump(final)
        try:
            with self.report.step("verify", self.alias):
                # Checked as it was written: it decompressed to its end and fsync found it whole.
                archive.check_size(written)
            record = self._manifest(final, written, facts)
            if self.config.verify_restore:
                # On the temp file: a failed restore test leaves the slot and latest untouched.
                with self.report.step("verify-restore", self.alias):
                    result = restore_test(self.config, self.db, written.path, self.now, record)
                log.info(
                    "restore_tested",
                    database=self.alias,
                    tables=len(result.tables),
                    rows=result.rows,
                )
            with self.report.step("rotate", self.alias):
                # Checked last, so that a wrong NAME says what the server says, not this.
                rotation.claim(self.folder, record["identity"])
                rotation.commit_archive(written.path, final, record)
                for old in rotation.drop_other_formats(final):
                    log.info("removed_other_format", database=self.alias, path=str(old))
        finally:
            archive.remove(written.path)
        with self.report.step("link-latest", self.alias):
            try:
                link = rotation.link_latest(final)
            except OSError as exc:
                msg = f"cannot update latest in {self.folder}: {exc}"
                raise OpsError(msg, "check the folder") from None
        self.report.details[self.alias] = {
            "archive": str(final),
            "bytes": written.size,
            "raw_bytes": written.raw_size,
            "ratio": record["ratio"],
        }
        from opskit.monitoring import anomaly

        # Rows (when counted) and a warning when the dump is much smaller than the usual ones.
        ratio = self.config.size_drop_ratio
        self.report.details[self.alias].update(
            anomaly.after_backup(self.folder, self.alias, record, ratio)
        )
        log.info("latest_linked", database=self.alias, link=str(link), target=final.name)
        return written.size

    def _final(self) -> Path:
        slot = rotation.slot_for(self.now)
        return self.format.final(self.folder, slot, self.engine.suffix, self.config.compress)

    def _check_space(self, final: Path) -> None:
        previous = space.expected_size(self.folder, final)
        if previous:
            space.check(self.folder, previous, "the previous archive")
            return
        # No archive yet: the size of the tables is the only (generous) yardstick. A server
        # that cannot say is the dump step's to report, with its own message.
        try:
            size = self.engine.size(self.db)
        except OpsError:
            size = 0
        space.check(self.folder, size, "the database's size, as no archive exists yet")

    def _dump(self, final: Path) -> tuple[archive.Written, dict[str, Any]]:
        config, db, engine = self.config, self.db, self.engine
        log.info(
            "dump_started",
            database=self.alias,
            target=str(final),
            engine=engine.vendor,
            compressor=self.format.compressor(config),
        )
        facts: dict[str, Any] = {"started": time.time(), "versions": engine.versions(db)}
        facts["properties"] = engine.properties(db)
        # Exact counts scan every table (and wait on locked ones): only when asked for.
        if config.count_rows or config.verify_restore:
            facts["tables"] = engine.table_counts(db)
        dumped = self.format.dump(engine, db, final, config, self.progress)
        facts["properties"].update(dumped.observed)
        if dumped.files is not None:
            facts["files"] = dumped.files
        return dumped.written, facts

    def _manifest(
        self, final: Path, written: archive.Written, facts: dict[str, Any]
    ) -> dict[str, Any]:
        config, db = self.config, self.db
        started = facts["started"]
        finished = time.time()
        versions = facts["versions"]
        record: dict[str, Any] = {
            "format": manifest.FORMAT,
            "opskit_version": __version__,
            "engine": self.engine.vendor,
            "django_engine": db.django_engine,
            "alias": db.alias,
            "database": db.name,
            "host": db.host,
            "port": db.port,
            "user": db.user,
            "identity": manifest.identity(db, config.settings_module, config.project_dir),
            "file": final.name,
            "archive_format": self.format.name,
            "compression": self.format.compression(config.compress),
            "size": written.size,
            "raw_size": written.raw_size,
            "ratio": round(written.raw_size / written.size, 2) if written.size else None,
            "sha256": written.sha256,
            "excluded_table_data": list(config.exclude_table_data),
            "tools": versions,
            "server_version": versions.get("server", ""),
            "properties": facts["properties"],
            "started_at": _iso(started),
            "finished_at": _iso(finished),
            "duration": round(finished - started, 3),
            "verified": True,
            "hostname": socket.gethostname(),
        }
        for key in ("files", "tables"):
            if key in facts:
                record[key] = facts[key]
        if not config.signing_keys:
            log.warning(
                "manifest_unsigned",
                database=db.alias,
                fix="set SECRET_KEY (or OPSKIT['SIGNING_KEY']) so restores can trust archives",
            )
        return manifest.sign(record, config.signing_keys)


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp).astimezone().isoformat()
