"""Local media snapshots: each media folder copied per weekday, unchanged files hard-linked.

``db_backups/media/<folder>/<N>-<Weekday>/`` is a plain copy of the folder as it was that
night: a file whose size and modification time are those of the previous snapshot's copy
is a hard link to it (it costs no space), any other file is copied. The live folder never
shares an inode with a snapshot, so the site writing a file in place never changes one.
A snapshot is built under a temp name and renamed into its slot; ``latest`` points at
the newest. By hand: ``cp -a db_backups/media/media/latest/. /srv/site/media.new/``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
from datetime import datetime
from pathlib import Path
from typing import Any

from opskit import logs, proc
from opskit.archive import rotation
from opskit.errors import ArchiveError, OpsError, RestoreRefused

log = logs.get("media")


def snapshots_dir(backup_dir: Path, live: Path) -> Path:
    return backup_dir / "media" / live.name


def take(backup_dir: Path, live: Path, now: datetime) -> dict[str, Any]:
    """Snapshot ``live`` into its weekday slot; return what was linked and copied."""
    if not live.is_dir():
        raise OpsError(f"the media folder {live} does not exist", "create it or fix the setting")
    folder = snapshots_dir(backup_dir, live)
    rotation.ensure_dir(folder)
    slot = rotation.slot_for(now)
    target = folder / slot
    tmp = folder / f".{slot}.tmp-{os.getpid()}"
    previous = _latest(folder)
    _sweep(folder)
    facts = {"linked": 0, "copied": 0, "copied_bytes": 0}
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _copy_tree(live, tmp, previous, facts)
        old = folder / f".{slot}.old-{os.getpid()}"
        if target.exists():
            os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
        link = folder / "latest"
        new_link = folder / f".latest.tmp-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            new_link.unlink()
        os.symlink(slot, new_link)
        os.replace(new_link, link)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OpsError(f"cannot snapshot {live} into {folder}: {exc}", "check the disk") from None
    log.info("media_snapshot", folder=str(live), snapshot=str(target), **facts)
    return {"snapshot": str(target), **facts}


def _sweep(folder: Path) -> None:
    """Remove what killed runs left: ``.<slot>.tmp-<pid>`` and ``.<slot>.old-<pid>``."""
    for path in folder.glob(".*-*"):
        match = re.fullmatch(r"\.\d-[A-Za-z]+\.(?:tmp|old)-(\d+)", path.name)
        if match and path.is_dir() and not proc.pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            log.info("removed_stale_media_snapshot", path=str(path))


def _latest(folder: Path) -> Path | None:
    link = folder / "latest"
    return link.resolve() if link.is_symlink() and link.resolve().is_dir() else None


def _copy_tree(src: Path, dst: Path, previous: Path | None, facts: dict[str, int]) -> None:
    os.mkdir(dst, 0o700)
    for entry in os.scandir(src):
        source, target = Path(entry.path), dst / entry.name
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            _copy_tree(source, target, previous / entry.name if previous else None, facts)
        elif stat.S_ISLNK(info.st_mode):
            os.symlink(os.readlink(source), target)
        elif stat.S_ISREG(info.st_mode):
            old = previous / entry.name if previous else None
            if old is not None and _same(old, info):
                os.link(old, target)
                facts["linked"] += 1
            else:
                shutil.copy2(source, target, follow_symlinks=False)
                facts["copied"] += 1
                facts["copied_bytes"] += info.st_size
    shutil.copystat(src, dst, follow_symlinks=False)


def _same(old: Path, info: os.stat_result) -> bool:
    try:
        mine = old.lstat()
    except OSError:
        return False
    return (
        stat.S_ISREG(mine.st_mode)
        and mine.st_size == info.st_size
        and mine.st_mtime_ns == info.st_mtime_ns
    )


def find(backup_dir: Path, live: Path, source: str) -> Path:
    """The snapshot ``source`` names: ``latest`` or a weekday."""
    folder = snapshots_dir(backup_dir, live)
    if source in ("", "latest"):
        found = _latest(folder)
    else:
        slot = rotation.parse_slot(source)
        found = folder / slot if (folder / slot).is_dir() else None
    if found is None:
        raise ArchiveError(
            f"no local media snapshot {source or 'latest'} of {live.name} in {folder}",
            "set OPSKIT['MEDIA_SNAPSHOTS'] and run opskit backup, or use --from offsite",
        )
    return found


def copy_beside(snapshot: Path, live: Path, now: datetime) -> Path:
    """A full copy (no hard links into the snapshot) of ``snapshot``, beside ``live``."""
    fresh = live.parent / f".{live.name}.restored-{now:%Y%m%d%H%M%S}"
    if fresh.exists():
        raise RestoreRefused(f"{fresh} already exists", "remove it first")
    try:
        shutil.copytree(snapshot, fresh, symlinks=True)
    except OSError as exc:
        shutil.rmtree(fresh, ignore_errors=True)
        raise OpsError(f"cannot copy {snapshot} beside {live}: {exc}", "check the disk") from None
    return fresh
