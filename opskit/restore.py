"""The restore job: lock, finish what a killed run left, check the archive, then replace.

Order matters: the locks come first (no backup can replace the archive meanwhile), then the
journal of a killed restore is finished or undone, then the manifest is checked (fields,
signature, which database it is of), and the archive is loaded from the one descriptor
that is hashed as it streams; nothing is committed or swapped unless the hash matched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from opskit import files, logs, maintenance
from opskit.archive import codec, directory, formats, pipes, rotation
from opskit.archive import manifest as manifests
from opskit.archive import stream as archive
from opskit.backup import locked_folder, recover_folder
from opskit.config import Config
from opskit.engines import DbParams, Engine, Tools, engine_for, vendor_of
from opskit.engines.base import OpenArchive, RestoreContext
from opskit.engines.journal import Journal
from opskit.errors import RestoreRefused
from opskit.progress import ProgressFn
from opskit.report import Report

log = logs.get("restore")
# What a SOURCE that is a file name ends with (as opposed to a weekday or "latest").
_ENDINGS = (
    *(c.extension for c in codec.CODECS.values() if c.extension),
    ".sql",
    ".sqlite3",
    f".{directory.SUFFIX}",
)


@dataclasses.dataclass(frozen=True)
class RestoreOptions:
    """What the user asked for beyond the archive (all off by default)."""

    drop_old: bool = False
    in_place: bool = False
    no_owner: bool = False
    no_privileges: bool = False
    definer: str = ""
    trust_unsigned: bool = False
    from_other_database: bool = False


@dataclasses.dataclass
class Session:
    """A database whose restore and backup locks are held, with nothing left unfinished."""

    db: DbParams
    engine: Engine
    folder: Path
    recovered: list[str]


@dataclasses.dataclass
class RestorePlan:
    """A checked archive and the database it will replace."""

    db: DbParams
    engine: Engine
    archive: Path
    manifest: dict[str, Any]
    folder: Path

    def describe(self) -> str:
        m = self.manifest
        return (
            f"replace {self.engine.vendor} {self.db.describe()} (alias {self.db.alias!r})"
            f" with {self.archive} ({m.get('database', '?')} backed up {m.get('finished_at', '?')},"
            f" {m.get('raw_size', 0):,} bytes of dump)"
        )


def looks_like_path(source: str) -> bool:
    """Whether SOURCE names a file rather than ``latest`` or a weekday."""
    return "/" in source or source.rstrip("/").endswith(_ENDINGS)


def resolve_source(config: Config, alias: str, source: str) -> Path:
    """Turn ``latest``, a weekday or a path into an archive path."""
    folder = rotation.db_dir(config.backup_dir, alias)
    as_path = Path(source).expanduser()
    if looks_like_path(source) or (as_path.exists() and source != "latest"):
        if not as_path.exists():
            raise RestoreRefused(f"{source} does not exist", "run opskit list to see the archives")
        if not (as_path.is_file() or (as_path / "toc.dat").is_file()):
            raise RestoreRefused(f"{source} is not an archive", "run opskit list")
        return as_path.resolve()
    return rotation.find_archive(folder, source)


@contextlib.contextmanager
def locked(
    config: Config, databases: Mapping[str, DbParams], alias: str, report: Report
) -> Iterator[Session]:
    """Hold the database's restore and backup locks; first finish what a killed run left."""
    if alias not in databases:
        with report.step("lock", alias):
            raise RestoreRefused(
                f"no database {alias!r} in settings.DATABASES", f"use one of {', '.join(databases)}"
            )
    db = databases[alias]
    what = f"opskit restore of {alias!r}"
    # The backup lock too: a backup of a half-loaded database must never become latest.
    with locked_folder(config, db, report, ("restore", "backup"), what) as folder:
        with report.step("engine", alias):
            engine = engine_for(db, Tools.of(config), work_dir=folder)
        with report.step("recover", alias):
            recovered = recover_folder(config, db, engine, folder)
        yield Session(db, engine, folder, recovered)


def plan_restore(
    config: Config, session: Session, source: str, report: Report, options: RestoreOptions
) -> RestorePlan:
    """Check everything that can be checked before the database is touched."""
    db = session.db
    with report.step("verify", db.alias):
        path = resolve_source(config, db.alias, source)
        record = manifests.read(path)
        check_record(config, db, path, record, options)
        _check_size(path, record, whole=options.in_place)
    log.info("restore_checked", database=db.alias, archive=str(path), sha256=record["sha256"])
    return RestorePlan(db, session.engine, path, record, session.folder)


def check_record(
    config: Config, db: DbParams, path: Path, record: dict[str, Any], options: RestoreOptions
) -> None:
    """Refuse a manifest that is unsigned (unless trusted), of another engine or database."""
    if not options.trust_unsigned:
        manifests.check_signature(path, record, config.signing_keys)
    target_vendor = vendor_of(db.django_engine)
    if record["engine"] != target_vendor:
        raise RestoreRefused(
            f"{path.name} is a {record['engine']} backup but {db.alias!r} is {target_vendor}",
            "pick an archive of the same engine",
        )
    if not options.from_other_database:
        ident = manifests.identity(db, config.settings_module, config.project_dir)
        other = manifests.other_database(record, ident)
        if other:
            raise RestoreRefused(
                f"{path.name}: {other}",
                f"pass --from-other-database to restore it into {db.alias!r} anyway",
            )


def _check_size(path: Path, record: Mapping[str, Any], whole: bool) -> None:
    """The archive is its manifest's size; a folder archive (or an in-place load) is hashed now.

    A stream archive's sha256 is checked as it is loaded, from the descriptor that is read.
    """
    size = archive.size_of(path)
    if size != record["size"]:
        raise RestoreRefused(
            f"{path.name} is {size:,} bytes but its manifest says {record['size']:,}"
            " (truncated or replaced)",
            "use another backup",
        )
    kind = formats.of(path)
    if whole or not kind.hashed_as_loaded:
        kind.check_checksum(path, dict(record))


def run_restore(
    config: Config,
    plan: RestorePlan,
    now: datetime,
    report: Report,
    options: RestoreOptions,
    progress: ProgressFn | None = None,
    opener: OpenArchive | None = None,
) -> list[str]:
    """Load the planned archive; on any failure the database is left as it was.

    ``opener`` replaces the local archive's (an off-site snapshot's stream, say): its
    content must prove itself in ``check_end`` as a local archive's does.
    """
    db = plan.db
    journal = Journal.begin(
        plan.folder,
        alias=db.alias,
        engine=plan.engine.vendor,
        database=db.name,
        archive=str(plan.archive),
    )
    ctx = _context(config, plan, now, options, journal)
    log.info("restore_started", database=db.alias, archive=str(plan.archive))
    expect = pipes.Expect(plan.manifest["size"], plan.manifest["sha256"])
    compress = str(plan.manifest.get("compression") or "") or None
    switch = _maintenance(config, db.alias, journal, options)
    try:
        with report.step("load", db.alias):
            load = opener or formats.opener(
                plan.archive, compress, progress, f"restore {db.alias}", expect
            )
            plan.engine.restore(db, load, ctx)
    except BaseException:
        _close_or_keep(journal, db.alias)
        switch.end()  # off, unless the journal was kept: then --recover turns it off
        raise
    journal.finish()
    switch.end()
    for note in ctx.notes:
        log.info("restore_note", database=db.alias, note=note)
    report.bytes += int(plan.manifest.get("raw_size") or 0)
    return ctx.notes


def _context(
    config: Config, plan: RestorePlan, now: datetime, options: RestoreOptions, journal: Journal
) -> RestoreContext:
    return RestoreContext(
        work_dir=plan.folder,
        now=now,
        drop_old=options.drop_old,
        save_safety_copy=lambda target: _safety_copy(config, plan.engine, target, now),
        journal=journal,
        manifest=plan.manifest,
        in_place=options.in_place,
        no_owner=options.no_owner,
        no_privileges=options.no_privileges,
        definer=options.definer,
    )


def _close_or_keep(journal: Journal, alias: str) -> None:
    """After a failed load: close the journal if nothing had changed yet (or all was undone);
    else keep it for --recover and say so."""
    if journal.phase in ("started", "done"):
        journal.finish()
    else:
        log.error(
            "restore_unfinished",
            database=alias,
            journal=str(journal.path),
            found=journal.describe(),
            fix=f"run opskit restore --recover --database {alias}",
        )


def _maintenance(
    config: Config, alias: str, journal: Journal, options: RestoreOptions
) -> maintenance.RestoreSwitch:
    """Hold maintenance while the live database changes: from the swap's first step (as the
    engine records it in the journal), or for the whole load when it goes into the live
    database itself (--in-place)."""
    switch = maintenance.RestoreSwitch(
        config.state_dir, alias, journal.path, config.maintenance_during_restore
    )
    if options.in_place:
        switch.on()
    journal.listeners.append(lambda j: switch.on() if _touches_live(j) else None)
    return switch


def _touches_live(journal: Journal) -> bool:
    """Whether the journal says the live database is about to change, or is changing."""
    loaded = journal.has("loaded")  # the scratch copy is complete: the swap comes next
    swapping = journal.phase not in ("started", "loading", "done")
    return loaded or swapping or bool(journal.get("in_place"))


def restore_archive(
    config: Config,
    databases: Mapping[str, DbParams],
    alias: str,
    source: str,
    now: datetime,
    report: Report,
    options: RestoreOptions = RestoreOptions(),
    *,
    confirm: Callable[[RestorePlan], None] | None = None,
    recover_only: bool = False,
    progress: ProgressFn | None = None,
) -> list[str]:
    """The whole restore job: lock, recover, check, ``confirm`` (it may end the run), load.

    A failed step raises StepFailed (recorded in ``report``); returns the notes for the user.
    """
    with locked(config, databases, alias, report) as session:
        notes = list(session.recovered)
        if recover_only:
            return notes or [f"nothing to recover for {alias!r}"]
        plan = plan_restore(config, session, source, report, options)
        if confirm is not None:
            confirm(plan)
        return notes + run_restore(config, plan, now, report, options, progress)


def _safety_copy(config: Config, engine: Engine, db: DbParams, now: datetime) -> Path:
    """Dump the current database to a verified archive beside the backups (a new name)."""
    folder = rotation.db_dir(config.backup_dir, db.alias)
    rotation.ensure_dir(folder)
    stem = f"pre-restore-{now:%Y%m%d%H%M%S}"
    final = folder / f"{stem}.{engine.suffix}.zst"
    written = formats.dump_stream(engine, db, final, (), "zstd", config.zstd_level)  # always .zst
    try:
        archive.check_size(written)
        final = _commit_new(written.path, folder, stem, f".{engine.suffix}.zst")
    except BaseException:
        written.path.unlink(missing_ok=True)
        raise
    record = {
        "format": manifests.FORMAT,
        "engine": engine.vendor,
        "database": db.name,
        "alias": db.alias,
        "identity": manifests.identity(db, config.settings_module, config.project_dir),
        "file": final.name,
        "compression": "zstd",
        "size": written.size,
        "raw_size": written.raw_size,
        "sha256": written.sha256,
        "finished_at": datetime.now().astimezone().isoformat(),
        "safety_copy": True,
        "verified": True,
    }
    manifests.write(manifests.sign(record, config.signing_keys), manifests.path_of(final))
    log.info("safety_copy_written", database=db.alias, path=str(final))
    return final


def _commit_new(tmp: Path, folder: Path, stem: str, suffix: str) -> Path:
    """Give ``tmp`` the first free name ``<stem>[-N]<suffix>``; never replace a file."""
    for n in range(1, 1000):
        final = folder / f"{stem}{'' if n == 1 else f'-{n}'}{suffix}"
        try:
            os.link(tmp, final)  # fails if the name is taken, where a rename would replace
        except FileExistsError:
            continue
        tmp.unlink()
        files.fsync(folder)
        return final
    raise RestoreRefused(f"no free name for a safety copy in {folder}", "clean up old copies")
