"""Bringing off-site copies back: a database through the safe restore path, media by swap.

A database snapshot is streamed by ``restic dump`` into the same scratch-load, swap and
journal as a local archive, after its sidecar's manifest passed the same checks (signature,
engine, which database); the loader commits only once the stream's sha256 and size are
the ones recorded when it was pushed. Media come back into a new folder beside the live one,
which is then swapped in by rename; the previous folder is kept.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from opskit import logs
from opskit.archive import formats
from opskit.archive import manifest as manifests
from opskit.config import Config
from opskit.engines import DbParams
from opskit.engines.base import Content
from opskit.errors import RestoreRefused
from opskit.offsite import catalog
from opskit.offsite.restic import OffsiteError, Restic, SnapshotContent
from opskit.offsite.settings import Destination
from opskit.progress import ProgressFn
from opskit.report import Report
from opskit.restore import (
    RestoreOptions,
    RestorePlan,
    check_record,
    locked,
    run_restore,
)

log = logs.get("offsite")


def destination(config: Config, name: str | None) -> Destination:
    """The destination to read from: the named one, else the first."""
    if not config.offsite:
        raise RestoreRefused(
            "no off-site repository is configured", "set OPSKIT['OFFSITE'] (docs/offsite.md)"
        )
    if name is None:
        return config.offsite[0]
    for dest in config.offsite:
        if dest.name == name:
            return dest
    names = ", ".join(d.name for d in config.offsite)
    raise RestoreRefused(f"no off-site destination {name!r}", f"use one of {names}")


def restore_database(
    config: Config,
    databases: Mapping[str, DbParams],
    alias: str,
    source: str,
    now: datetime,
    report: Report,
    options: RestoreOptions | None = None,
    *,
    dest_name: str | None = None,
    confirm: Callable[[RestorePlan], None] | None = None,
    progress: ProgressFn | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """Restore ``alias`` from an off-site snapshot (``latest``, a day or an id)."""
    options = options or RestoreOptions()
    with locked(config, databases, alias, report) as session:
        notes = list(session.recovered)
        db = session.db
        with report.step("fetch", alias):
            restic = Restic(destination(config, dest_name), environ)
            snap, side, record = _checked_snapshot(config, db, alias, restic, source, options)
        log.info(
            "offsite_restore_checked",
            database=alias,
            snapshot=snap.id,
            destination=restic.dest.name,
            sha256=side["sha256"],
        )
        shown = Path(f"off-site snapshot {snap.short} of {snap.time:%Y-%m-%d %H:%M}")
        with contextlib.ExitStack() as stack:
            if side.get("archive_format") == "directory":
                with report.step("fetch", alias):
                    folder = stack.enter_context(_restored_dir(restic, snap, side, session.folder))
                    formats.of(folder).check_checksum(folder, record)
                plan = RestorePlan(db, session.engine, folder, record, session.folder)
                if confirm is not None:
                    confirm(plan)
                return notes + run_restore(config, plan, now, report, options, progress)
            plan = RestorePlan(db, session.engine, shown, record, session.folder)
            if confirm is not None:
                confirm(plan)
            opener = _snapshot_opener(restic, snap, side)
            return notes + run_restore(config, plan, now, report, options, progress, opener)
    raise AssertionError("unreachable")  # pragma: no cover


def _checked_snapshot(
    config: Config,
    db: DbParams,
    alias: str,
    restic: Restic,
    source: str,
    options: RestoreOptions,
) -> tuple[catalog.Snap, dict[str, Any], dict[str, Any]]:
    """The snapshot ``source`` names, its sidecar, and the manifest in it, checked as a local
    archive's is (signature, engine, which database)."""
    snaps = catalog.snapshots(restic, kind="dump", db=alias)
    snap = catalog.pick(snaps, source, repr(alias))
    side = catalog.sidecar(restic, snap, alias)
    where = Path(f"manifest of snapshot {snap.short}")
    record = manifests.validate(where, side["manifest"])
    check_record(config, db, Path(f"snapshot {snap.short}"), record, options)
    return snap, side, record


def _snapshot_opener(
    restic: Restic, snap: catalog.Snap, side: Mapping[str, Any]
) -> Callable[[], contextlib.AbstractContextManager[Content]]:
    """Opens the snapshot's stream (``restic dump``) as an archive's content."""

    @contextlib.contextmanager
    def opener() -> Iterator[Content]:
        with restic.dump(snap.id, str(side["file"])) as child:
            name = f"snapshot {snap.short} ({side['file']})"
            content = SnapshotContent(restic, child, name, int(side["size"]), str(side["sha256"]))
            yield content

    return opener


@contextlib.contextmanager
def _restored_dir(
    restic: Restic, snap: catalog.Snap, side: dict[str, Any], work: Path
) -> Iterator[Path]:
    """A directory archive's snapshot restored into a temp folder of the backup folder."""
    target = work / f".offsite-{snap.short}.tmp-{os.getpid()}"
    try:
        restic.run("restore", snap.id, "--target", str(target))
        folder = target / str(side["file"]).lstrip("/")
        if not (folder / "toc.dat").is_file():
            raise OffsiteError(f"snapshot {snap.short} holds no directory archive")
        yield folder
    finally:
        shutil.rmtree(target, ignore_errors=True)


# --- media -----------------------------------------------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (renameat2 RENAME_EXCHANGE); False where not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    done = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return bool(done == 0)


def restore_media(
    config: Config,
    source: str,
    now: datetime,
    report: Report,
    *,
    dest_name: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """Bring each media folder back from its off-site snapshot and swap it in by rename."""
    notes: list[str] = []
    dest = destination(config, dest_name)
    if not dest.media_dirs:
        with report.step("media", None):
            raise RestoreRefused(
                f"off-site {dest.name} keeps no media", "set 'media': True in OPSKIT['OFFSITE']"
            )
    restic = Restic(dest, environ)
    for live in dest.media_dirs:
        with report.step("media", None):
            snaps = catalog.snapshots(restic, kind="media", media=live.name)
            snap = catalog.pick(snaps, source, f"media {live.name!r}")
            notes.append(_swap_in(restic, snap, live, now))
    return notes


def restore_local_media(config: Config, source: str, now: datetime, report: Report) -> list[str]:
    """Bring each media folder back from its local weekday snapshot (a full copy, swapped in)."""
    from opskit.offsite import media

    notes: list[str] = []
    if not config.media_snapshots:
        with report.step("media", None):
            raise RestoreRefused(
                "no local media snapshots are configured",
                "set OPSKIT['MEDIA_SNAPSHOTS'], or restore with --media --from offsite",
            )
    for live in config.media_snapshots:
        with report.step("media", None):
            snapshot = media.find(config.backup_dir, live, source)
            fresh = media.copy_beside(snapshot, live, now)
            notes.append(swap_in(fresh, live, now, f"the local snapshot {snapshot}"))
    return notes


def _swap_in(restic: Restic, snap: catalog.Snap, live: Path, now: datetime) -> str:
    parent = live.parent
    stamp = f"{now:%Y%m%d%H%M%S}"
    work = parent / f".{live.name}.opskit-restore-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        restic.run("restore", snap.id, "--target", str(work))
        source = snap.paths[0] if snap.paths else ""
        got = work / source.lstrip("/")
        if not got.is_dir():
            raise OffsiteError(f"snapshot {snap.short} holds no folder {source}")
        fresh = parent / f".{live.name}.restored-{stamp}"
        os.rename(got, fresh)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return swap_in(fresh, live, now, f"snapshot {snap.short} of {snap.time:%Y-%m-%d %H:%M}")


def swap_in(fresh: Path, live: Path, now: datetime, what: str) -> str:
    """Put ``fresh`` in the place of ``live`` by rename; keep and name the previous folder."""
    previous = live.parent / f"{live.name}.before-restore-{now:%Y%m%d%H%M%S}"
    if previous.exists():
        shutil.rmtree(fresh, ignore_errors=True)
        raise RestoreRefused(f"{previous} already exists", "move it away first")
    if not live.exists():
        os.rename(fresh, live)
        log.info("media_restored", folder=str(live), source=what)
        return f"media {live} restored from {what} (there was no folder before)"
    if _exchange(fresh, live):
        os.rename(fresh, previous)  # ``fresh`` now names the previous folder
    else:
        os.rename(live, previous)
        os.rename(fresh, live)
    log.info("media_restored", folder=str(live), source=what, previous=str(previous))
    return (
        f"media {live} restored from {what}; the previous folder is {previous}"
        f" (remove it with: rm -rf -- '{previous}')"
    )
